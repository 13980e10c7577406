"""Finishing a TensorRT build on the device, and running the engine there.

`edgeopt engine build BUILD_DIR_OR_PACKAGE` runs on a Jetson (or any host with the target's
TensorRT): it takes the portable half a host build left (Q/DQ ONNX, build_plan.json,
calibration cache), checks it against manifest.json, builds with the same plan and records the
engine in the manifest. `TensorRTSession` runs an engine (inference and the stream/event calls
that `edgeopt.bench.time_engine` times, as trtexec does); `time_build` is `edgeopt engine time`.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from edgeopt import artifacts, bench
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
    result = TensorRTResult(
        status="built", reason=f"built with TensorRT {metadata['tensorrt_version']}",
        plan_path=build_dir / PLAN_FILE, plan=plan, trtexec=command_line(trtexec_args(plan)),
        trtexec_timing=command_line(trtexec_timing_args(plan)),
        engine_path=engine_path, engine_metadata=metadata,
    )
    record_engine(build_dir, result)
    return result


class TensorRTSession:
    """A deserialized engine with device buffers sized to its current input shapes (the device
    side). `set_shapes` moves to other shapes within the engine's optimization profile."""

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
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == mode_input]
        self.outputs = [n for n in self.names if n not in self.inputs]
        self.dtypes = {n: np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(n))) for n in self.names}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, int] = {}
        self.set_shapes(shapes)

    def set_shapes(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Set every input's shape and size the buffers to it (outputs follow from the inputs)."""
        missing = [n for n in self.inputs if n not in shapes]
        if missing:
            raise BadInput(f"the engine needs input(s) {', '.join(missing)}")
        for name in self.inputs:
            shape = tuple(int(d) for d in shapes[name])
            if self.context.set_input_shape(name, shape) is False:
                raise BadInput(f"input '{name}': shape {shape} is outside the engine's optimization profile")
            self.shapes[name] = shape
        for name in self.names:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if name in self.host and self.host[name].shape == shape:
                continue
            if name in self.device:
                self.cuda.free(self.device.pop(name))
            self.host[name] = np.zeros(shape, dtype=self.dtypes[name])
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

    def fill(self, feeds: dict[str, np.ndarray]) -> None:
        """Put `feeds` in the input buffers, reshaping the engine first if their shapes differ."""
        shapes = {name: tuple(feeds[name].shape) for name in self.inputs if name in feeds}
        if shapes != self.shapes:
            self.set_shapes(shapes)
        for name in self.inputs:
            self.host[name][...] = feeds[name]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One synchronous inference on `feeds` (any shapes within the optimization profile)."""
        self.fill(feeds)
        self.copy_inputs()
        self.execute()
        self.copy_outputs()
        self.synchronize()
        return {name: self.host[name].copy() for name in self.outputs}

    def close(self) -> None:
        for ptr in self.device.values():
            self.cuda.free(ptr)
        self.device.clear()
        self.host.clear()


def read_engine(folder: Path, target: TargetProfile) -> tuple[BuildPlan, dict]:
    """The plan and engine.json of a folder holding a built engine, refused (one line) when the
    engine's TensorRT version or compute capability is not the target's."""
    meta_path = folder / ENGINE_METADATA_FILE
    if not meta_path.is_file() or not (folder / PLAN_FILE).is_file():
        raise BadInput(f"{folder}: no engine was built here (run `edgeopt engine build {folder}` on the device)")
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{meta_path}: not readable ({exc})") from None
    check_engine_matches(metadata, target)
    return read_plan(folder / PLAN_FILE), metadata


def open_session(folder: Path, plan: BuildPlan, metadata: dict, *, batch: str = "opt", trt: Any = None,
                 cuda: tensorrt_api.Cuda | None = None) -> TensorRTSession:
    """A session on the folder's engine at the plan's min, opt or max shapes."""
    path = folder / plan.engine
    if not path.is_file():
        raise BadInput(f"{path}: the engine file is missing")
    data = path.read_bytes()
    if metadata.get("engine_sha256") and hashlib.sha256(data).hexdigest() != metadata["engine_sha256"]:
        raise BadInput(f"{path}: sha256 differs from {ENGINE_METADATA_FILE} (changed or damaged)")
    shapes = {s.name: getattr(s, batch) for s in plan.inputs}
    return TensorRTSession(data, shapes, dla_core=plan.dla_core, trt=trt, cuda=cuda)


def open_engine(build_dir: Path, *, batch: str = "opt", trt: Any = None,
                cuda: tensorrt_api.Cuda | None = None) -> TensorRTSession:
    """The build directory's engine, refused when it does not match the manifest's target."""
    _, target = read_manifest(build_dir)
    plan, metadata = read_engine(build_dir, target)
    return open_session(build_dir, plan, metadata, batch=batch, trt=trt, cuda=cuda)


def time_build(path: Path, *, warmup_s: float = 0.2, duration_s: float = 3.0, min_runs: int = 10,
               trt: Any = None, cuda: tensorrt_api.Cuda | None = None) -> bench.EngineTiming:
    """`edgeopt engine time`: the engine of a build directory or package at its opt shapes, timed
    as trtexec does (same defaults: 200 ms warm-up, 3 s, at least 10 runs)."""
    build_dir = open_build(Path(path))
    _, target = read_manifest(build_dir)
    plan, metadata = read_engine(build_dir, target)
    session = open_session(build_dir, plan, metadata, trt=trt, cuda=cuda)
    try:
        batch = plan.inputs[0].opt[0] if plan.inputs and plan.inputs[0].opt else 1
        return bench.time_engine(session, warmup_s=warmup_s, duration_s=duration_s, min_runs=min_runs, batch=batch)
    finally:
        session.close()


# --- recording in the manifest ----------------------------------------------------------------


def record_in_manifest(build_dir: Path, updates: dict, files: list[str]) -> dict:
    """Merge `updates` into manifest.json and refresh the artifact entries of `files`; atomic."""
    manifest, _ = read_manifest(build_dir)
    manifest.update(updates)
    entries = [e for e in manifest.get("artifacts", []) if e.get("path") not in files]
    entries += [artifacts.describe_artifact(build_dir / name, build_dir) for name in files if (build_dir / name).is_file()]
    manifest["artifacts"] = sorted(entries, key=lambda e: e["path"])
    artifacts.write_json_atomic(build_dir / MANIFEST_FILE, manifest)
    return manifest


def record_engine(build_dir: Path, result: TensorRTResult) -> None:
    """The manifest's `engine` block (as `edgeopt build` writes it on a device) and the engine files."""
    manifest, _ = read_manifest(build_dir)
    engine = {**(manifest.get("engine") or {}), **{
        "status": result.status, "reason": result.reason, "plan": str(result.plan_path.resolve()),
        "trtexec": result.trtexec, "trtexec_timing": result.trtexec_timing,
        "engine": result.engine_path.name if result.engine_path else None, "metadata": result.engine_metadata,
    }}
    record_in_manifest(build_dir, {"engine": engine}, [result.plan.engine, ENGINE_METADATA_FILE])
