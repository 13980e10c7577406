"""Finishing a TensorRT build on the device, and timing the engine there.

`edgeopt engine build BUILD_DIR_OR_PACKAGE` runs on a Jetson (or any host with the target's
TensorRT): it takes the portable half a host build left (Q/DQ ONNX, build_plan.json,
calibration cache), checks it against manifest.json, and builds with the same plan. Timing
follows trtexec: warm-up by time, a measured duration, CUDA events around H2D, compute and
D2H, percentiles and a coefficient-of-variance warning.
"""

from __future__ import annotations

import json
import math
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Protocol

import numpy as np

from edgeopt.errors import BadInput, MissingEnvironment
from edgeopt.stages import tensorrt_api
from edgeopt.stages.compile_tensorrt import (
    ENGINE_METADATA_FILE,
    PLAN_FILE,
    EngineBuilder,
    TensorRTResult,
    build_engine,
    check_engine_matches,
    host_mismatch,
    read_plan,
    sha256_file,
)
from edgeopt.stages.tensorrt_plan import BuildPlan, command_line, trtexec_args, trtexec_timing_args
from edgeopt.targets import TargetProfile

MANIFEST_FILE = "manifest.json"
CV_WARNING = 0.01  # trtexec warns above 1 %


# --- build directories and packages -----------------------------------------------------------


def safe_extract(archive: Path, dest: Path) -> None:
    """Extract a .tar.gz, refusing members that leave `dest`, links and device files."""
    dest = dest.resolve()
    try:
        with tarfile.open(archive, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise BadInput(f"{archive}: member '{member.name}' would be written outside {dest}")
                if not (member.isfile() or member.isdir()):
                    raise BadInput(f"{archive}: member '{member.name}' is a link or special file; refused")
                if not (dest / member.name).resolve().is_relative_to(dest):
                    raise BadInput(f"{archive}: member '{member.name}' would be written outside {dest}")
            dest.mkdir(parents=True, exist_ok=True)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, members=members, filter="data")
            else:  # Python < 3.11.4: the checks above are the filter
                tar.extractall(dest, members=members)
    except tarfile.TarError as exc:
        raise BadInput(f"{archive}: not a readable .tar.gz package ({exc})") from None


def open_build(path: Path, extract_to: Path | None = None) -> Path:
    """The build directory for a build directory or a package (extracted beside it by default)."""
    path = Path(path)
    if path.is_dir():
        build_dir = path
    elif path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        stem = path.name.removesuffix(".tar.gz").removesuffix(".tgz")
        build_dir = Path(extract_to) if extract_to else path.with_name(stem)
        safe_extract(path, build_dir)
    else:
        raise BadInput(f"{path}: expected a build directory or a .tar.gz package")
    if not (build_dir / MANIFEST_FILE).is_file():
        nested = [p.parent for p in build_dir.glob(f"*/{MANIFEST_FILE}")]
        if len(nested) != 1:
            raise BadInput(f"{path}: no {MANIFEST_FILE} (is this an edgeopt build directory?)")
        build_dir = nested[0]
    return build_dir


def read_manifest(build_dir: Path) -> tuple[dict, TargetProfile]:
    path = build_dir / MANIFEST_FILE
    try:
        manifest = json.loads(path.read_text())
        recorded = manifest["target"]  # the profile as built, plus keys the manifest adds (sha256)
        target = TargetProfile.model_validate({k: v for k, v in recorded.items() if k in TargetProfile.model_fields})
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not a readable manifest ({exc.__class__.__name__}: {exc})") from None
    except ValueError as exc:  # pydantic ValidationError
        raise BadInput(f"{path}: key 'target' is not a valid profile ({str(exc).splitlines()[0]})") from None
    return manifest, target


def verify_artifact(build_dir: Path, manifest: dict, name: str) -> Path:
    """The file, checked against the manifest's sha256 when the manifest lists it."""
    path = build_dir / name
    if not path.is_file():
        raise BadInput(f"{path}: missing from the build directory")
    for entry in manifest.get("artifacts", []):
        if entry.get("path") == name and entry.get("sha256") and entry["sha256"] != sha256_file(path):
            raise BadInput(f"{path}: sha256 differs from {MANIFEST_FILE} (changed or damaged in transfer)")
    return path


def engine_build(
    path: Path,
    *,
    builder: EngineBuilder | None = None,
    timing_cache_dir: Path | None = None,
    extract_to: Path | None = None,
) -> TensorRTResult:
    """Build the engine of a build directory or package with this host's TensorRT."""
    build_dir = open_build(Path(path), extract_to)
    manifest, target = read_manifest(build_dir)
    plan = read_plan(verify_artifact(build_dir, manifest, PLAN_FILE))
    if plan.target != target.name:
        raise BadInput(f"{build_dir / PLAN_FILE}: plan is for '{plan.target}' but the manifest's target is '{target.name}'")
    onnx_path = verify_artifact(build_dir, manifest, plan.onnx)
    if plan.onnx_sha256 and sha256_file(onnx_path) != plan.onnx_sha256:
        raise BadInput(f"{onnx_path}: sha256 differs from the one {PLAN_FILE} was made for")
    cache = verify_artifact(build_dir, manifest, plan.calibration_cache) if plan.calibration_cache else None

    if builder is None:
        tensorrt_api.module()  # MissingEnvironment with the JetPack hint
        builder = EngineBuilder()
    problems = host_mismatch(builder, plan)
    if problems:
        raise MissingEnvironment(
            f"this host has {'; '.join(problems)}: build target '{target.name}' on a device with JetPack "
            f"{target.software.jetpack or '-'} / TensorRT {target.software.tensorrt}"
        )
    engine_path, metadata = build_engine(
        plan, onnx_path, build_dir, builder, calibration_cache=cache, timing_cache_dir=timing_cache_dir
    )
    return TensorRTResult(
        status="built", reason=f"built with TensorRT {metadata['tensorrt_version']}",
        plan_path=build_dir / PLAN_FILE, plan=plan, trtexec=command_line(trtexec_args(plan)),
        trtexec_timing=command_line(trtexec_timing_args(plan)),
        engine_path=engine_path, engine_metadata=metadata,
    )


# --- timing -----------------------------------------------------------------------------------


class TimedSession(Protocol):
    """What timing needs from an engine: async copies and execution on one stream, and events."""

    def copy_inputs(self) -> None: ...
    def execute(self) -> None: ...
    def copy_outputs(self) -> None: ...
    def synchronize(self) -> None: ...
    def event(self) -> Any: ...
    def record(self, event: Any) -> None: ...
    def elapsed_ms(self, start: Any, end: Any) -> float: ...


@dataclass
class Stats:
    min: float
    max: float
    mean: float
    median: float
    p90: float
    p95: float
    p99: float
    cv: float  # standard deviation / mean


def percentile(sorted_values: list[float], p: float) -> float:
    """trtexec's rule: drop the top (100 - p) % of the sorted timings, take the largest left."""
    n = len(sorted_values)
    exclude = int((100 - p) * n / 100)  # (1 - p/100) * n, without 0.1 rounding down
    return sorted_values[max(n - 1 - exclude, 0)]


def summarize(values: list[float]) -> Stats:
    if not values:
        raise ValueError("no timings to summarize")
    ordered = sorted(values)
    n = len(ordered)
    median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
    mean = sum(ordered) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in ordered) / n)
    return Stats(
        min=ordered[0], max=ordered[-1], mean=mean, median=median,
        p90=percentile(ordered, 90), p95=percentile(ordered, 95), p99=percentile(ordered, 99),
        cv=std / mean if mean > 0 else 0.0,
    )


@dataclass
class LatencyReport:
    host_latency: Stats  # H2D + GPU compute + D2H, from CUDA events (trtexec's "Latency")
    gpu_compute: Stats
    h2d: Stats
    d2h: Stats
    enqueue: Stats  # host time spent in the execute call
    iterations: int
    duration_s: float
    throughput_qps: float
    warnings: list[str] = field(default_factory=list)

    def latency_ms(self) -> dict[str, float]:
        """The `latency_ms` block of `edgeopt build --json`."""
        return {"p50": self.host_latency.median, "p90": self.host_latency.p90, "p99": self.host_latency.p99}


def time_engine(
    session: TimedSession,
    *,
    warmup_ms: float = 200.0,
    duration_s: float = 3.0,
    min_iterations: int = 10,
    clock: Callable[[], float] = time.perf_counter,
    cv_threshold: float = CV_WARNING,
) -> LatencyReport:
    """Warm up for `warmup_ms`, then run for at least `duration_s` and `min_iterations`."""
    marks = [session.event() for _ in range(4)]
    start = clock()
    while (clock() - start) * 1000 < warmup_ms:
        session.copy_inputs()
        session.execute()
        session.copy_outputs()
        session.synchronize()

    host, gpu, h2d, d2h, enqueue = [], [], [], [], []
    begin = clock()
    while True:
        session.record(marks[0])
        session.copy_inputs()
        session.record(marks[1])
        before = clock()
        session.execute()
        enqueue.append((clock() - before) * 1000)
        session.record(marks[2])
        session.copy_outputs()
        session.record(marks[3])
        session.synchronize()
        h2d.append(session.elapsed_ms(marks[0], marks[1]))
        gpu.append(session.elapsed_ms(marks[1], marks[2]))
        d2h.append(session.elapsed_ms(marks[2], marks[3]))
        host.append(session.elapsed_ms(marks[0], marks[3]))
        elapsed = clock() - begin
        if elapsed >= duration_s and len(host) >= min_iterations:
            break

    report = LatencyReport(
        host_latency=summarize(host), gpu_compute=summarize(gpu), h2d=summarize(h2d), d2h=summarize(d2h),
        enqueue=summarize(enqueue), iterations=len(host), duration_s=elapsed,
        throughput_qps=len(host) / elapsed if elapsed > 0 else float("inf"),
    )
    for label, stats in (("GPU compute time", report.gpu_compute), ("host latency", report.host_latency)):
        if stats.cv > cv_threshold:
            report.warnings.append(
                f"{label} is unstable, coefficient of variance {stats.cv:.1%}: lock the GPU clocks "
                "(sudo jetson_clocks on a Jetson) and close other GPU work"
            )
    return report


class TensorRTSession:
    """A deserialized engine with device buffers at fixed input shapes (the device side)."""

    def __init__(self, engine_bytes: bytes, shapes: dict[str, tuple[int, ...]], *, dla_core: int | None = None,
                 trt: Any = None, cuda: tensorrt_api.Cuda | None = None):
        self.trt = trt or tensorrt_api.module()
        self.cuda = cuda or tensorrt_api.Cuda()
        self.runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.WARNING))
        if dla_core is not None:
            self.runtime.DLA_core = dla_core
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise BadInput("TensorRT could not deserialize the engine (built by another TensorRT or GPU?)")
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.stream()
        mode_input = tensorrt_api.flag(self.trt, "TensorIOMode", "INPUT")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == mode_input]
        self.outputs = [n for n in names if n not in self.inputs]
        for name in self.inputs:
            self.context.set_input_shape(name, shapes[name])
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, int] = {}
        for name in names:
            dtype = self.trt.nptype(self.engine.get_tensor_dtype(name))
            self.host[name] = np.zeros(tuple(self.context.get_tensor_shape(name)), dtype=dtype)
            self.device[name] = self.cuda.malloc(self.host[name].nbytes)
            self.context.set_tensor_address(name, self.device[name])

    def copy_inputs(self) -> None:
        for name in self.inputs:
            self.cuda.to_device(self.device[name], self.host[name], self.stream)

    def execute(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def copy_outputs(self) -> None:
        for name in self.outputs:
            self.cuda.to_host(self.host[name], self.device[name], self.stream)

    def synchronize(self) -> None:
        self.cuda.synchronize(self.stream)

    def event(self) -> int:
        return self.cuda.event()

    def record(self, event: int) -> None:
        self.cuda.record(event, self.stream)

    def elapsed_ms(self, start: int, end: int) -> float:
        return self.cuda.elapsed_ms(start, end)

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One synchronous inference at the session's shapes, for accuracy validation."""
        for name in self.inputs:
            self.host[name][...] = feeds[name]
        self.copy_inputs()
        self.execute()
        self.copy_outputs()
        self.synchronize()
        return {name: self.host[name].copy() for name in self.outputs}

    def close(self) -> None:
        for ptr in self.device.values():
            self.cuda.free(ptr)
        self.device.clear()


def open_engine(build_dir: Path, *, batch: str = "opt") -> TensorRTSession:
    """The build directory's engine, refused when it does not match the manifest's target."""
    manifest, target = read_manifest(build_dir)
    meta_path = build_dir / ENGINE_METADATA_FILE
    if not meta_path.is_file():
        raise BadInput(f"{build_dir}: no engine was built here (run `edgeopt engine build {build_dir}` on the device)")
    check_engine_matches(json.loads(meta_path.read_text()), target)
    plan: BuildPlan = read_plan(build_dir / PLAN_FILE)
    shapes = {s.name: getattr(s, batch) for s in plan.inputs}
    return TensorRTSession((build_dir / plan.engine).read_bytes(), shapes, dla_core=plan.dla_core)
