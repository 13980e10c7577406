"""The package stage on real builds of the bundled example: byte-identical repeats, the files each
target's bundle holds, and the on-device validation data checked against ONNX Runtime."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest

import edgeopt

from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.errors import BadInput
from edgeopt.hashing import sha256_file
from edgeopt.package.bundle import npz_bytes, package


def _members(archive: Path) -> dict[str, tuple[tarfile.TarInfo, bytes | None]]:
    with tarfile.open(archive, "r:gz") as tar:
        return {m.name: (m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()}


@pytest.mark.parametrize("which", ["example_build", "jetson_build"])
def test_packaging_twice_gives_identical_bytes(which, request, tmp_path):
    build = request.getfixturevalue(which)
    first = package(Path(build["build_dir"]), tmp_path / "a", version="1.2.0")
    second = package(Path(build["build_dir"]), tmp_path / "b", version="1.2.0")
    assert first.path.name == second.path.name == f"digits-cnn-{build['target']['name']}-1.2.0.tar.gz"
    assert first.path.read_bytes() == second.path.read_bytes()
    raw = first.path.read_bytes()
    assert raw[:3] == b"\x1f\x8b\x08" and raw[3] == 0  # gzip, no FNAME/FEXTRA/FCOMMENT flags
    assert raw[4:8] == b"\0\0\0\0"  # gzip MTIME 0
    members = _members(first.path)
    names = list(members)
    assert names == sorted(names) and names[0] == first.name  # the root folder first, then sorted
    for info, _ in members.values():
        assert (info.mtime, info.uid, info.gid, info.uname, info.gname) == (0, 0, 0, "", "")
        assert info.mode == (0o755 if info.isdir() or info.name.endswith(("run_on_device.sh", "run_on_device.py")) else 0o644)
        assert info.pax_headers == {}


def _sums(members: dict, root: str) -> dict[str, str]:
    text = members[f"{root}/SHA256SUMS"][1].decode()
    return {line.split("  ", 1)[1]: line.split("  ", 1)[0] for line in text.splitlines()}


def test_cpu_bundle_holds_the_onnxruntime_model_and_its_settings(example_build, tmp_path):
    build_dir = Path(example_build["build_dir"])
    result = package(build_dir, tmp_path)
    assert result.files == ["SHA256SUMS", "calib_stats.json", "field_capture.py", "field_monitor.py", "manifest.json",
                            "metrics.json", "model.deployable.onnx", "model.int8.onnx", "package.json", "provenance.json",
                            "report.md", "sbom.cdx.json", "session.json"]
    members = _members(result.path)
    root = result.name
    assert members[f"{root}/model.deployable.onnx"][1] == (build_dir / "model.deployable.onnx").read_bytes()
    sums = _sums(members, root)
    assert set(sums) == set(result.files) - {"SHA256SUMS"}
    assert sums["model.deployable.onnx"] == sha256_file(build_dir / "model.deployable.onnx")
    info = json.loads(members[f"{root}/package.json"][1])
    assert (info["backend"], info["engine"], info["layout"]) == ("onnxruntime", "not_applicable", "bundle")
    report = members[f"{root}/report.md"][1].decode()
    assert "| max_accuracy_drop |" in report and "pass" in report


def test_gpu_bundle_carries_the_portable_build_and_validation_data(jetson_build, tmp_path):
    build_dir = Path(jetson_build["build_dir"])
    result = package(build_dir, tmp_path)
    assert {"build_plan.json", "model.int8.onnx", "calibration.cache", "run_on_device.sh",
            "eval_inputs.npz", "eval_fp32_outputs.npz"} <= set(result.files)
    assert "model.fp32.onnx" not in result.files  # the runner judges against the recorded FP32 outputs
    assert "model.engine" not in result.files  # deferred: never ship an engine that was not built
    members = _members(result.path)
    root = result.name
    inputs = np.load(io.BytesIO(members[f"{root}/eval_inputs.npz"][1]))
    outputs = np.load(io.BytesIO(members[f"{root}/eval_fp32_outputs.npz"][1]))
    assert inputs["image"].shape == (500, 1, 32, 32) and inputs["labels"].shape == (500,)
    session = runtime.session(build_dir / "model.fp32.onnx", threads=1)
    expected = session.run(None, {"image": inputs["image"]})[0]
    np.testing.assert_allclose(outputs["logits"], expected, rtol=1e-5, atol=1e-5)
    # the FP32 accuracy the build reported is what these outputs give
    accuracy = float((outputs["logits"].argmax(1) == inputs["labels"]).mean())
    assert accuracy == pytest.approx(jetson_build["metrics"]["fp32"]["accuracy"])
    runner = members[f"{root}/run_on_device.sh"][1].decode()
    plan = json.loads((build_dir / "build_plan.json").read_text())
    assert runner.startswith("#!/bin/sh") and plan["trtexec"] in runner
    assert "sha256sum -c --quiet SHA256SUMS" in runner and 'exec python3 -B run_on_device.py "$@"' in runner
    commands = [line.split()[0] for line in runner.split("set -eu", 1)[1].splitlines() if line.strip()]
    assert not any("edgeopt" in command for command in commands)  # nothing on the device but JetPack
    source = Path(edgeopt.__file__).parent
    assert members[f"{root}/run_on_device.py"][1] == (source / "device_runner.py").read_bytes()
    for shipped in ("device_runtime.py", "timing.py", "compare.py"):  # the toolchain's own modules, not copies
        assert members[f"{root}/{shipped}"][1] == (source / shipped).read_bytes()
    assert members[f"{root}/run_on_device.py"][0].mode == 0o755


def test_the_extracted_gpu_package_runs_on_the_device_runner(jetson_build, tmp_path, monkeypatch):
    """The package as a device sees it: run_on_device.py builds the engine from its plan and
    validates it on the packaged data (the fake engine computes the FP32 model with ONNX Runtime)."""
    from helpers.fake_device import FakeCuda, with_engine
    from helpers.fake_tensorrt import FakeTensorRT

    from edgeopt import device_runner
    from edgeopt.package.archive import safe_extract

    result = package(Path(jetson_build["build_dir"]), tmp_path)
    folder = tmp_path / "device"
    safe_extract(result.path, folder)
    folder = folder / result.name
    session = runtime.session(Path(jetson_build["build_dir"]) / "model.fp32.onnx", threads=1)  # not shipped
    cuda = FakeCuda()
    trt = with_engine(FakeTensorRT("10", "10.3.0.30"), cuda, {"image": ((1, 1, 32, 32), (8, 1, 32, 32))}, ["logits"],
                      lambda inputs: {"logits": session.run(None, {"image": inputs["image"]})[0]})
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    results, passed = device_runner.run(str(folder), trt, cuda, warmup_s=0.0, duration_s=0.0, min_runs=3)
    assert passed and results["accuracy"]["samples"] == 500 and results["accuracy"]["top1_agreement"] == 1.0
    assert results["accuracy"]["fp32_accuracy"] == pytest.approx(jetson_build["metrics"]["fp32"]["accuracy"])
    manifest = json.loads((folder / "device_manifest.json").read_text())  # the shipped manifest.json stays as signed
    assert manifest["engine"]["status"] == "built" and (folder / "model.engine").is_file()


def test_the_packaged_runner_runs_as_a_script_and_says_what_the_host_lacks(jetson_build, tmp_path):
    """`./run_on_device.sh` / `python3 run_on_device.py` from the extracted package, as on a device
    (here without TensorRT): one line naming what is missing, exit 3, no engine claimed."""
    import importlib.util
    import subprocess
    import sys

    from edgeopt.package.archive import safe_extract

    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here: the device tests cover this host")
    result = package(Path(jetson_build["build_dir"]), tmp_path)
    safe_extract(result.path, tmp_path / "device")
    folder = tmp_path / "device" / result.name
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only what a Jetson has: numpy, python3
    run = subprocess.run([sys.executable, "run_on_device.py"], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=120)
    assert run.stderr.startswith("run_on_device: TensorRT is not importable"), run.stderr
    assert run.returncode == 3 and run.stderr.count("\n") == 1 and run.stdout == ""
    assert not (folder / "model.engine").exists()


def test_changed_evaluation_data_is_refused(jetson_build, tmp_path):
    """The recorded evaluation file no longer holds the data the build judged: say so, name it."""
    build_dir = tmp_path / "build"
    shutil.copytree(jetson_build["build_dir"], build_dir)
    fake_eval = tmp_path / "eval.npz"
    data = dict(np.load(jetson_build["data"]["evaluation"]["path"]))
    data["image"] = data["image"][:10]
    data["labels"] = data["labels"][:10]
    np.savez(fake_eval, **data)
    manifest = json.loads((build_dir / "manifest.json").read_text())
    manifest["data"]["evaluation"]["path"] = str(fake_eval)
    (build_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BadInput, match="eval.npz: the evaluation data changed since the build"):
        package(build_dir, tmp_path / "dist")
    result = package(build_dir, tmp_path / "dist", eval_path=fake_eval)  # --eval takes it as given
    assert np.load(io.BytesIO(_members(result.path)[f"{result.name}/eval_inputs.npz"][1]))["image"].shape[0] == 10


def test_npz_bytes_is_stable_and_readable():
    arrays = {"b": np.arange(6, dtype=np.int64).reshape(2, 3), "a": np.ones(3, dtype=np.float32)}
    first = npz_bytes(arrays)
    assert first == npz_bytes(dict(reversed(list(arrays.items()))))
    loaded = np.load(io.BytesIO(first))
    assert sorted(loaded.files) == ["a", "b"]
    np.testing.assert_array_equal(loaded["b"], arrays["b"])


@pytest.mark.slow
def test_a_device_build_ships_its_engine_and_serves_it_as_a_plan(jetson_build, tmp_path):
    """`edgeopt build` on the device (fake TensorRT and CUDA through the backend seam): the bundle
    holds the engine and engine.json, and the Triton layout serves model.plan with TensorRT.
    A private cache: the fake-built engine must not serve tests/test_build_device.py's build."""
    from helpers.fake_device import FakeCuda, with_engine
    from helpers.fake_tensorrt import FakeTensorRT

    from edgeopt import api
    from edgeopt.backends.tensorrt.api import DeviceInfo
    from edgeopt.backends.tensorrt.builder import EngineBuilder

    reference = runtime.session(jetson_build["artifacts"]["onnx_fp32"], threads=1)
    cuda = FakeCuda()
    trt = with_engine(FakeTensorRT("10", "10.3.0.30"), cuda, {"image": ((1, 1, 32, 32), (8, 1, 32, 32))}, ["logits"],
                      lambda inputs: {"logits": reference.run(None, {"image": inputs["image"]})[0]})
    builder = EngineBuilder(trt=trt, device=DeviceInfo("Orin (nvgpu)", "8.7"))
    built = api.build(target="jetson", out=tmp_path / "device", latency_seconds=0.1, cache_dir=tmp_path / "cache",
                      backend_options={"engine_builder": builder, "cuda": cuda})
    assert built.engine.status == "built"
    bundle = package(tmp_path / "device", tmp_path / "dist")
    assert {"model.engine", "engine.json"} <= set(bundle.files)
    members = _members(bundle.path)
    assert members[f"{bundle.name}/model.engine"][1] == (tmp_path / "device" / "model.engine").read_bytes()
    assert json.loads(members[f"{bundle.name}/package.json"][1])["engine"] == "built"
    triton = package(tmp_path / "device", tmp_path / "dist", layout="triton")
    members = _members(triton.path)
    assert members[f"{triton.name}/digits-cnn/1/model.plan"][1] == (tmp_path / "device" / "model.engine").read_bytes()
    assert 'platform: "tensorrt_plan"' in members[f"{triton.name}/digits-cnn/config.pbtxt"][1].decode()


def test_a_hugging_face_gpu_bundle_ships_tokenized_evaluation_data(hf_zoo, tmp_path):
    """Texts are tokenized with the model's tokenizer at the exported length, as the build did."""
    from conftest import FAST, build_json

    code, doc, stderr = build_json(str(hf_zoo.classifier), "--target", "jetson", "--calib", str(hf_zoo.texts),
                                   "--eval", str(hf_zoo.labeled), "--out", str(tmp_path / "hf"), *FAST)
    assert code == 0, stderr
    result = package(tmp_path / "hf", tmp_path / "dist")
    members = _members(result.path)
    inputs = np.load(io.BytesIO(members[f"{result.name}/eval_inputs.npz"][1]))
    outputs = np.load(io.BytesIO(members[f"{result.name}/eval_fp32_outputs.npz"][1]))
    assert {"input_ids", "attention_mask", "labels"} <= set(inputs.files)
    accuracy = float((outputs["logits"].argmax(1) == inputs["labels"]).mean())
    assert accuracy == pytest.approx(doc["metrics"]["fp32"]["accuracy"])
