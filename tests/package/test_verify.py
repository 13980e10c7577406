"""`edgeopt verify`: every tamper case exits 1 naming the file; unsafe archives are refused before
anything is written; the device check uses the same TensorRT/GPU rule as `engine build`."""

from __future__ import annotations

import io
import json
import tarfile
import types
from pathlib import Path

import pytest
from conftest import run_cli
from helpers.packages import extract

from edgeopt.backends.tensorrt.api import DeviceInfo
from edgeopt.backends.tensorrt.builder import EngineBuilder
from edgeopt.errors import MissingEnvironment
from edgeopt.package.verify import verify
from edgeopt.package.bundle import checksums_text, package


@pytest.fixture(scope="module")
def gpu_package(jetson_build, tmp_path_factory) -> Path:
    return package(Path(jetson_build["build_dir"]), tmp_path_factory.mktemp("dist")).path


def test_an_intact_package_verifies(gpu_package):
    result = run_cli("verify", str(gpu_package), "--json")
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["problems"] == [] and document["files"] == 19  # with run_on_device.py and the modules beside it, the field monitor (3 files), provenance, SBOM, no FP32 ONNX
    assert document["signature"] == "unsigned" and "provenance" not in document  # the statement only with --show
    assert document["device"] == {"checked": False, "note": "TensorRT is not installed here: device compatibility not checked"}


def _flip_byte(root: Path) -> str:
    data = bytearray((root / "model.int8.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (root / "model.int8.onnx").write_bytes(bytes(data))
    return "model.int8.onnx: changed"


def _add(root: Path) -> str:
    (root / "extra.onnx").write_bytes(b"not ours")
    return "extra.onnx: added"


def _remove(root: Path) -> str:
    (root / "calibration.cache").unlink()
    return "calibration.cache: removed"


def _remove_sums(root: Path) -> str:
    (root / "SHA256SUMS").unlink()
    return "SHA256SUMS: removed"


def _resum(root: Path) -> None:
    """Rewrite the provenance's subjects and SHA256SUMS so only the schema check can catch the edit
    (a careful forger; only a signature stops one, tests/package/test_signing.py)."""
    from edgeopt.package.bundle import file_digests

    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    statement = json.loads((root / "provenance.json").read_text())
    digests = file_digests({k: v for k, v in files.items() if k != "provenance.json"})
    statement["subject"] = [{"name": name, "digest": {"sha256": digests[name]}} for name in sorted(digests)]
    (root / "provenance.json").write_text(json.dumps(statement))
    (root / "SHA256SUMS").write_text(checksums_text(files))


def test_a_provenance_that_does_not_name_the_shipped_files_is_refused(gpu_package, tmp_path):
    root = extract(gpu_package, tmp_path / "x")
    _flip_byte(root)
    files = {p.relative_to(root).as_posix(): p for p in root.rglob("*") if p.is_file() and p.name != "SHA256SUMS"}
    (root / "SHA256SUMS").write_text(checksums_text(files))  # SHA256SUMS redone, the provenance not
    result = run_cli("verify", str(root))
    assert result.exit_code == 1 and "provenance.json: subject model.int8.onnx sha256 differs from the file" in result.stdout


def _bad_package_json(root: Path) -> str:
    info = json.loads((root / "package.json").read_text())
    info["backend"] = "openvino"
    (root / "package.json").write_text(json.dumps(info))
    _resum(root)
    return "package.json: key 'backend'"


def _bad_manifest(root: Path) -> str:
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["artifacts"]
    (root / "manifest.json").write_text(json.dumps(manifest))
    _resum(root)
    return "manifest.json: key 'artifacts'"


def _manifest_disagrees(root: Path) -> str:
    _flip_byte(root)
    _resum(root)
    return "model.int8.onnx: sha256 differs from manifest.json"


def _add_beside(root: Path) -> str:
    (root.parent / "README.txt").write_text("unpack me")
    return "README.txt: added (outside the package folder"


@pytest.mark.parametrize("tamper", [_flip_byte, _add, _add_beside, _remove, _remove_sums, _bad_package_json,
                                    _bad_manifest, _manifest_disagrees])
def test_every_tamper_exits_1_naming_the_file(tamper, gpu_package, tmp_path):
    root = extract(gpu_package, tmp_path / "x")
    expected = tamper(root)
    # as an extracted folder and re-archived as a .tar.gz
    repacked = tmp_path / "repacked.tar.gz"
    with tarfile.open(repacked, "w:gz") as tar:
        for entry in sorted(root.parent.iterdir()):
            tar.add(entry, arcname=entry.name)
    for target in (root.parent if tamper is _add_beside else root, repacked):
        result = run_cli("verify", str(target))
        assert result.exit_code == 1, (target, result.stdout, result.stderr)
        assert expected in result.stdout


def _archive(path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    with tarfile.open(path, "w:gz") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


@pytest.mark.parametrize("member, why", [
    (_member("../evil.sh"), "outside"),
    (_member("/etc/evil.sh"), "outside"),
    (_member("pkg/link", tarfile.SYMTYPE, "/etc/passwd"), "link"),
    (_member("pkg/hard", tarfile.LNKTYPE, "pkg/other"), "link"),
    (_member("pkg/dev", tarfile.CHRTYPE), "special"),
    (_member("pkg/fifo", tarfile.FIFOTYPE), "special"),
])
def test_unsafe_archives_are_refused_before_extraction(member, why, tmp_path):
    archive = _archive(tmp_path / "bad.tar.gz", member)
    result = run_cli("verify", str(archive))
    assert result.exit_code == 2 and member.name in result.stderr and why in result.stderr
    assert not (tmp_path / "evil.sh").exists()


def _builder(version: str, cc: str) -> EngineBuilder:
    return EngineBuilder(trt=types.SimpleNamespace(__version__=version), device=DeviceInfo("Orin (nvgpu)", cc))


def test_device_check_matches_the_targets_tensorrt_and_gpu(gpu_package):
    good = verify(gpu_package, device=True, builder=_builder("10.3.0.30", "8.7"))
    assert good.ok and good.device["checked"] and good.device["tensorrt"] == "10.3.0.30"
    wrong = verify(gpu_package, device=True, builder=_builder("10.16.0", "8.6"))
    assert wrong.problems == ["build_plan.json: this device has TensorRT 10.16.0 but the target pins 10.3",
                              "build_plan.json: this device has compute capability 8.6 but the target is 8.7"]


def test_device_check_without_tensorrt_is_a_missing_environment(gpu_package):
    with pytest.raises(MissingEnvironment):
        verify(gpu_package, device=True)
    assert run_cli("verify", "--device", str(gpu_package)).exit_code == 3


def test_device_check_of_a_cpu_package_uses_the_hosts_architecture(example_build, tmp_path):
    packaged = package(Path(example_build["build_dir"]), tmp_path / "dist").path
    here = verify(packaged, device=True)
    assert here.ok and here.device["checked"] and here.device["target"] == example_build["target"]["name"]
    root = extract(packaged, tmp_path / "x")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["target"]["device"]["arch"] = "riscv64"  # a package for another CPU, checksums redone
    (root / "manifest.json").write_text(json.dumps(manifest))
    _resum(root)
    other = verify(root, device=True)
    assert other.problems == [f"manifest.json: this host is not target '{example_build['target']['name']}' "
                              f"(the target is riscv64, this host is {here.device['arch']})"]
    assert verify(root).ok  # without --device the architecture is not this host's business
