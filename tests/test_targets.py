from __future__ import annotations

import json

import pytest

from edgeopt import host, targets
from edgeopt.errors import BadInput

from conftest import run_cli

SHIPPED = {"cpu-x86-avx512", "cpu-x86-avx2", "cpu-arm64", "jetson-orin-nano-8gb", "jetson-orin-nx-16gb",
           "jetson-agx-orin-64gb", "jetson-xavier-nx", "t4"}


def test_every_required_profile_ships_and_validates():
    profiles = targets.load_all()
    assert SHIPPED <= set(profiles)
    for profile in profiles.values():
        if profile.backend == "tensorrt":
            assert profile.device.kind == "gpu" and profile.software.tensorrt


def test_device_facts_from_reference():
    nano = targets.resolve("jetson")
    assert nano.name == "jetson-orin-nano-8gb"
    assert (nano.device.compute_capability, nano.device.dla_cores, nano.device.sparse_2_4) == ("8.7", 0, True)
    assert (nano.software.jetpack, nano.software.tensorrt) == ("6.2", "10.3")
    xavier = targets.resolve("jetson-xavier-nx")
    assert (xavier.device.compute_capability, xavier.device.dla_cores, xavier.device.sparse_2_4) == ("7.2", 2, False)
    assert xavier.software.tensorrt.startswith("8.5")
    assert targets.resolve("jetson-agx-orin-64gb").device.int8_tops_sparse == 275
    assert targets.resolve("t4").device.compute_capability == "7.5"


def test_cpu_resolves_to_the_most_specific_matching_profile(monkeypatch):
    profiles = targets.load_all()
    monkeypatch.setattr(host.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(host, "cpu_flags", lambda: {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni"})
    assert targets.host_profile(profiles).name == "cpu-x86-avx512"
    monkeypatch.setattr(host, "cpu_flags", lambda: {"avx2", "fma"})
    assert targets.host_profile(profiles).name == "cpu-x86-avx2"
    monkeypatch.setattr(host.platform, "machine", lambda: "aarch64")
    monkeypatch.setattr(host, "cpu_flags", lambda: {"asimd", "asimddp"})
    assert targets.host_profile(profiles).name == "cpu-arm64"


def test_cpu_is_a_profile_that_this_host_stands_for(monkeypatch):
    """One answer: `cpu` resolves only to a profile whose latency host.stands_for says is measured here."""
    profiles = targets.load_all()
    monkeypatch.setattr(host.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(host, "cpu_flags", lambda: {"avx2", "fma"})
    chosen = targets.host_profile(profiles)
    assert host.stands_for(chosen) == (True, None)
    eligible = {p.name for p in profiles.values() if host.stands_for(p)[0]}
    assert chosen.name in eligible and "cpu-x86-avx512" not in eligible
    gpu_like = chosen.model_copy(update={"device": chosen.device.model_copy(update={"kind": "gpu"})})
    assert host.stands_for(gpu_like)[0] is False


def test_user_profiles_from_env_and_dir_override_shipped(tmp_path, monkeypatch):
    body = ("description: mine\nbackend: onnxruntime\ndevice: {kind: cpu, product: box, arch: x86_64, memory_gb: 2}\n"
            "gates: {max_accuracy_drop: 0.005}\n")
    (tmp_path / "t4.yaml").write_text(body)
    monkeypatch.setenv("EDGEOPT_TARGETS", str(tmp_path))
    assert targets.resolve("t4").backend == "onnxruntime"
    assert targets.resolve("t4").gates.max_accuracy_drop == 0.005


@pytest.mark.parametrize("text, needle", [
    ("description: x\nbackend: tensorrt\ndevice: {kind: gpu, product: g, arch: ampere, memory_gb: 8}\n", "software.tensorrt"),
    ("description: x\nbackend: onnxruntime\n", "missing key 'device'"),
    ("description: x\nbackend: cuda\ndevice: {kind: cpu, product: x, arch: x86_64, memory_gb: 1}\n", "backend"),
    ("description: x\nbackend: onnxruntime\ndevice: {kind: cpu, product: x, arch: x86_64, memory_gb: 1}\n"
     "build: {sparsity: true}\n", "2:4"),
    ("- a list\n", "mapping"),
])
def test_invalid_profiles_name_file_and_key(tmp_path, text, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(BadInput) as error:
        targets.load_profile(path)
    assert str(path) in str(error.value) and needle in str(error.value)


def test_profile_hash_ignores_location_but_not_content(tmp_path):
    shipped = targets.resolve("t4")
    copy = tmp_path / "t4.yaml"
    copy.write_text(open(shipped.source).read())
    assert targets.load_profile(copy).sha256() == shipped.sha256()
    copy.write_text(open(shipped.source).read().replace("max_accuracy_drop: 0.01", "max_accuracy_drop: 0.02"))
    assert targets.load_profile(copy).sha256() != shipped.sha256()


def test_targets_list_and_show_json():
    listed = json.loads(run_cli("targets", "list", "--json").stdout)
    assert SHIPPED <= {row["name"] for row in listed["targets"]}
    assert sum(row["host"] for row in listed["targets"]) == 1
    shown = json.loads(run_cli("targets", "show", "jetson", "--json").stdout)
    assert shown["name"] == "jetson-orin-nano-8gb" and shown["backend"] == "tensorrt"
