"""`edgeopt engine build` on build directories and packages, and trtexec-style timing."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from fake_tensorrt import FakeTensorRT, orin, qdq_model  # noqa: F401 (fixtures)

from edgeopt import targets
from edgeopt.artifacts import sha256_file
from edgeopt.errors import BadInput, MissingEnvironment
from edgeopt.models.spec import InputSpec
from edgeopt.stages import tensorrt_api
from edgeopt.stages.compile_tensorrt import EngineBuilder, compile_tensorrt
from edgeopt.stages.engine import (
    engine_build,
    open_build,
    percentile,
    safe_extract,
    summarize,
    time_engine,
)
from edgeopt.stages.tensorrt_api import DeviceInfo

INPUTS = [InputSpec(name="x", shape=(1, 1, 8, 8))]


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setattr(tensorrt_api, "_import", lambda: None)


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
    result = engine_build(build_dir, builder=EngineBuilder(trt=trt, device=orin), timing_cache_dir=tmp_path / "tc")
    assert result.status == "built" and result.engine_path == build_dir / "model.engine"
    assert json.loads((build_dir / "engine.json").read_text())["tensorrt_version"] == "10.3.0.30"
    assert trt.args("parse_from_file") == [str(build_dir / "model.int8.onnx")]
    assert {f.name for f in trt.args("set_flag")} == {"INT8", "FP16"}  # the stored plan, applied


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
    result = engine_build(package, builder=EngineBuilder(trt=FakeTensorRT("10", "10.3.0"), device=orin),
                          timing_cache_dir=tmp_path / "tc")
    assert result.engine_path == tmp_path / "digits-jetson" / "digits-jetson" / "model.engine"
    assert result.engine_path.is_file()


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


# --- timing -----------------------------------------------------------------------------------


class FakeClock:
    """Advances by `step` seconds on every read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class FakeSession:
    """Scripted per-iteration event timings: h2d, compute and d2h in ms."""

    def __init__(self, compute_ms: list[float], h2d: float = 0.1, d2h: float = 0.05):
        self.compute_ms, self.h2d, self.d2h = compute_ms, h2d, d2h
        self.executed = 0
        self.times: dict[int, float] = {}
        self.t = 0.0
        self.events = 0

    def event(self) -> int:
        self.events += 1
        return self.events - 1

    def copy_inputs(self):
        self.t += self.h2d

    def execute(self):
        self.t += self.compute_ms[self.executed % len(self.compute_ms)]
        self.executed += 1

    def copy_outputs(self):
        self.t += self.d2h

    def synchronize(self):
        pass

    def record(self, event: int):
        self.times[event] = self.t

    def elapsed_ms(self, start: int, end: int) -> float:
        return self.times[end] - self.times[start]


def test_percentiles_follow_trtexec():
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 99) == 99.0 and percentile(values, 90) == 90.0 and percentile(values, 50) == 50.0
    assert percentile([5.0], 99) == 5.0
    stats = summarize([1.0, 2.0, 3.0, 4.0])
    assert stats.median == 2.5 and stats.min == 1.0 and stats.max == 4.0 and stats.mean == 2.5
    assert summarize([2.0] * 10).cv == 0.0


def test_timing_warms_up_by_time_then_runs_for_the_duration():
    session = FakeSession([2.0])
    clock = FakeClock(0.01)  # 10 ms per clock read
    report = time_engine(session, warmup_ms=100, duration_s=1.0, min_iterations=5, clock=clock)
    warmup_runs = session.executed - report.iterations
    assert 3 <= warmup_runs <= 10  # ~100 ms of warm-up at one clock read per run
    assert report.duration_s >= 1.0 and report.iterations >= 5
    assert report.gpu_compute.median == pytest.approx(2.0)
    assert report.host_latency.median == pytest.approx(2.15)  # h2d + compute + d2h
    assert report.h2d.median == pytest.approx(0.1) and report.d2h.median == pytest.approx(0.05)
    assert report.throughput_qps == pytest.approx(report.iterations / report.duration_s)
    assert report.warnings == []
    assert report.latency_ms() == {"p50": pytest.approx(2.15), "p90": pytest.approx(2.15), "p99": pytest.approx(2.15)}


def test_min_iterations_win_over_a_short_duration():
    report = time_engine(FakeSession([1.0]), warmup_ms=0, duration_s=0.0, min_iterations=25, clock=FakeClock(0.001))
    assert report.iterations == 25


def test_unstable_gpu_time_is_warned_about():
    report = time_engine(FakeSession([1.0, 1.0, 1.0, 3.0]), warmup_ms=0, duration_s=0.5, min_iterations=8,
                         clock=FakeClock(0.01))
    assert report.gpu_compute.cv > 0.01
    assert any("GPU compute time is unstable" in w for w in report.warnings)
    assert report.gpu_compute.p99 == 3.0 and report.gpu_compute.median == 1.0


# --- real TensorRT (on a device) ----------------------------------------------------------------


@pytest.mark.tensorrt
def test_real_engine_build_and_timing(tmp_path, qdq_model):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU: a Jetson or a GPU host)")
    from edgeopt.stages.engine import TensorRTSession

    version, device = tensorrt_api.version(), tensorrt_api.device_info()
    base = targets.resolve("jetson")
    target = base.model_copy(update={
        "software": base.software.model_copy(update={"tensorrt": ".".join(version.split(".")[:2])}),
        "device": base.device.model_copy(update={"compute_capability": device.compute_capability}),
    })
    result = compile_tensorrt(qdq_model, target, INPUTS, tmp_path / "out", timing_cache_dir=tmp_path / "tc")
    assert result.status == "built", result.reason
    session = TensorRTSession(result.engine_path.read_bytes(), {"x": (1, 1, 8, 8)})
    try:
        report = time_engine(session, warmup_ms=50, duration_s=0.3)
    finally:
        session.close()
    assert report.iterations >= 10 and report.gpu_compute.median > 0
