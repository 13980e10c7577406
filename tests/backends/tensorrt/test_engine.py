"""`edgeopt engine build` on build directories and packages (device validation: test_validate_engine.py)."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from helpers.fake_tensorrt import FakeTensorRT

from edgeopt import targets
from edgeopt.hashing import sha256_file
from edgeopt.errors import BadInput, MissingEnvironment
from edgeopt.models.spec import InputSpec
from edgeopt.backends.tensorrt import api as tensorrt_api
from edgeopt.backends.tensorrt.builder import EngineBuilder, compile_tensorrt
from edgeopt import bench
from edgeopt.package.archive import safe_extract
from edgeopt.backends.tensorrt.device import engine_build, open_build
from edgeopt.backends.tensorrt.api import DeviceInfo

INPUTS = [InputSpec(name="x", shape=(1, 1, 8, 8))]


@pytest.fixture
def build_dir(tmp_path, qdq_model, no_tensorrt) -> Path:
    """A host build of `jetson`: Q/DQ ONNX, build_plan.json, manifest.json (no engine)."""
    folder = tmp_path / "build" / "digits" / "jetson"
    folder.mkdir(parents=True)
    onnx = folder / "model.int8.onnx"
    onnx.write_bytes(qdq_model.read_bytes())
    target = targets.resolve("jetson")
    compile_tensorrt(onnx, target, INPUTS, folder)
    names = ["model.int8.onnx", "build_plan.json"]
    manifest = {
        "schema": 1,
        "target": {**target.model_dump(mode="json"), "sha256": target.sha256()},
        "artifacts": [{"path": n, "bytes": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)}
                      for n in names],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_engine_build_without_tensorrt_says_how_to_get_it(build_dir):
    with pytest.raises(MissingEnvironment, match="JetPack") as error:
        engine_build(build_dir)
    assert error.value.exit_code == 3 and "\n" not in str(error.value)
    assert not (build_dir / "model.engine").exists()


def test_engine_build_with_the_targets_tensorrt(build_dir, tmp_path, orin):
    trt = FakeTensorRT("10", "10.3.0.30")
    folder, engine = engine_build(build_dir, builder=EngineBuilder(trt=trt, device=orin), timing_cache_dir=tmp_path / "tc")
    assert folder == build_dir and engine.status == "built" and engine.engine == "model.engine"
    assert json.loads((build_dir / "engine.json").read_text())["tensorrt_version"] == "10.3.0.30"
    assert trt.args("parse_from_file") == [str(build_dir / "model.int8.onnx")]
    assert {f.name for f in trt.args("set_flag")} == {"INT8", "FP16"}  # the stored plan, applied
    manifest = json.loads((build_dir / "manifest.json").read_text())
    assert manifest["engine"]["status"] == "built" and manifest["engine"]["engine"] == "model.engine"
    listed = {a["path"]: a["sha256"] for a in manifest["artifacts"]}
    assert listed["model.engine"] == sha256_file(build_dir / "model.engine")
    assert listed["engine.json"] == sha256_file(build_dir / "engine.json")


def test_engine_build_refuses_another_tensorrt(build_dir):
    builder = EngineBuilder(trt=FakeTensorRT("10", "10.16.0"), device=DeviceInfo("T4", "7.5"))
    with pytest.raises(MissingEnvironment, match="TensorRT 10.16.0 but the target pins 10.3"):
        engine_build(build_dir, builder=builder)


def test_engine_build_refuses_a_changed_artifact(build_dir, orin):
    with open(build_dir / "model.int8.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BadInput, match="sha256 differs"):
        engine_build(build_dir, builder=EngineBuilder(trt=FakeTensorRT("10"), device=orin))


def test_engine_build_from_a_package(build_dir, tmp_path, orin):
    package = tmp_path / "digits-jetson.tar.gz"
    with tarfile.open(package, "w:gz") as tar:
        tar.add(build_dir, arcname="digits-jetson")
    folder, engine = engine_build(package, builder=EngineBuilder(trt=FakeTensorRT("10", "10.3.0"), device=orin),
                                  timing_cache_dir=tmp_path / "tc")
    assert folder == tmp_path / "digits-jetson" / "digits-jetson"
    assert (folder / engine.engine).is_file()


def test_not_a_build(tmp_path):
    with pytest.raises(BadInput, match="no manifest.json"):
        open_build(tmp_path)
    with pytest.raises(BadInput, match="build directory or a .tar.gz"):
        open_build(tmp_path / "missing.zip")


def _tar_with(tmp_path: Path, member: tarfile.TarInfo, data: bytes = b"x") -> Path:
    archive = tmp_path / "evil.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        member.size = len(data) if member.isfile() else 0
        tar.addfile(member, io.BytesIO(data) if member.isfile() else None)
    return archive


@pytest.mark.parametrize("name", ["../escape.txt", "ok/../../escape.txt", "/etc/escape.txt"])
def test_extraction_refuses_paths_outside(tmp_path, name):
    archive = _tar_with(tmp_path, tarfile.TarInfo(name))
    with pytest.raises(BadInput, match="outside"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE])
def test_extraction_refuses_links(tmp_path, kind):
    member = tarfile.TarInfo("manifest.json")
    member.type, member.linkname = kind, "/etc/passwd"
    with pytest.raises(BadInput, match="link"):
        safe_extract(_tar_with(tmp_path, member), tmp_path / "dest")


# --- real TensorRT (on a device) ----------------------------------------------------------------


@pytest.mark.tensorrt
def test_real_engine_build_and_timing(tmp_path, qdq_model):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU: a Jetson or a GPU host)")
    from edgeopt.backends.tensorrt.session import TensorRTSession

    from helpers.fake_tensorrt import jetson_profile_for_this_host

    target = jetson_profile_for_this_host()
    result = compile_tensorrt(qdq_model, target, INPUTS, tmp_path / "out", timing_cache_dir=tmp_path / "tc")
    assert result.status == "built", result.reason
    session = TensorRTSession(result.engine_path.read_bytes(), {"x": (1, 1, 8, 8)})
    try:
        report = bench.time_engine(session, warmup_s=0.05, duration_s=0.3)
    finally:
        session.close()
    assert report.runs >= 10 and report.gpu_compute.p50 > 0
