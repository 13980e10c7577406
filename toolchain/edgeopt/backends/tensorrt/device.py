"""Finishing a TensorRT build on the device.

`edgeopt engine build BUILD_DIR_OR_PACKAGE` runs on a Jetson (or any host with the target's
TensorRT): it takes the portable half a host build left (Q/DQ ONNX, build_plan.json,
calibration cache), checks it against manifest.json, builds with the same plan and records the
engine in the manifest. `time_build` is `edgeopt engine time`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeopt import bench
from edgeopt.package.archive import safe_extract
from edgeopt.backends.tensorrt import api as tensorrt_api, timing_defaults
from edgeopt.backends.tensorrt.builder import EngineBuilder, build_engine, host_mismatch, read_plan
from edgeopt.backends.tensorrt.layers import layer_note
from edgeopt.backends.tensorrt.plan import command_line, trtexec_args, trtexec_timing_args
from edgeopt.backends.tensorrt.session import open_session, read_engine
from edgeopt.build_dir import LAYOUT, find_build, read_typed_build, update_manifest, verify_artifact
from edgeopt.errors import BadInput, MissingEnvironment
from edgeopt.hashing import sha256_file
from edgeopt.results import EngineSummary


def open_build(path: Path, extract_to: Path | None = None) -> Path:
    """The build directory for a build directory or a package (extracted beside it by default)."""
    path = Path(path)
    if path.is_dir():
        return find_build(path)
    if path.is_file() and path.name.endswith((".tar.gz", ".tgz")):
        stem = path.name.removesuffix(".tar.gz").removesuffix(".tgz")
        build_dir = Path(extract_to) if extract_to else path.with_name(stem)
        safe_extract(path, build_dir)
        return find_build(build_dir)
    raise BadInput(f"{path}: expected a build directory or a .tar.gz package")


def engine_build(
    path: Path,
    *,
    builder: EngineBuilder | None = None,
    timing_cache_dir: Path | None = None,
    extract_to: Path | None = None,
) -> tuple[Path, EngineSummary]:
    """Build the engine of a build directory or package with this host's TensorRT; returns the
    build directory and its engine summary (names relative to it), as recorded in the manifest."""
    build_dir = open_build(Path(path), extract_to)
    manifest, target = read_typed_build(build_dir)
    plan = read_plan(verify_artifact(build_dir, manifest, LAYOUT.tensorrt_plan))
    if plan.target != target.name:
        raise BadInput(f"{build_dir / LAYOUT.tensorrt_plan}: plan is for '{plan.target}' but the manifest's target is '{target.name}'")
    onnx_path = verify_artifact(build_dir, manifest, plan.onnx)
    if plan.onnx_sha256 and sha256_file(onnx_path) != plan.onnx_sha256:
        raise BadInput(f"{onnx_path}: sha256 differs from the one {LAYOUT.tensorrt_plan} was made for")
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
    summary = EngineSummary(
        status="built", reason=f"built with TensorRT {metadata['tensorrt_version']}", plan=LAYOUT.tensorrt_plan,
        trtexec=command_line(trtexec_args(plan)), trtexec_timing=command_line(trtexec_timing_args(plan)),
        engine=engine_path.name, metadata=metadata, notes=list(plan.notes) + layer_note(metadata),
    )
    record_engine(build_dir, summary)
    return build_dir, summary


def time_build(path: Path, *, warmup_s: float = timing_defaults.WARMUP_MS / 1000,
               duration_s: float = timing_defaults.DURATION_S, min_runs: int = timing_defaults.MIN_RUNS,
               trt: Any = None, cuda: tensorrt_api.Cuda | None = None) -> bench.EngineTiming:
    """`edgeopt engine time`: the engine of a build directory or package at its opt shapes, timed
    as the printed trtexec timing line does (same warm-up, duration and minimum runs)."""
    build_dir = open_build(Path(path))
    _, target = read_typed_build(build_dir)
    plan, metadata = read_engine(build_dir, target)
    session = open_session(build_dir, plan, metadata, trt=trt, cuda=cuda)
    try:
        batch = plan.inputs[0].opt[0] if plan.inputs and plan.inputs[0].opt else 1
        return bench.time_engine(session, warmup_s=warmup_s, duration_s=duration_s, min_runs=min_runs, batch=batch)
    finally:
        session.close()


def record_engine(build_dir: Path, engine: EngineSummary) -> None:
    """The manifest's `engine` block (the same model `edgeopt build` writes) and the engine files."""
    update_manifest(build_dir, {"engine": engine.model_dump(mode="json"), "deployable": engine.engine},
                    [engine.engine, LAYOUT.tensorrt_engine_json, LAYOUT.layer_report])
