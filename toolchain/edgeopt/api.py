"""The Python API: what the CLI, benchmarks and release tooling call.

    import edgeopt
    result = edgeopt.build("model.pt2", target="jetson", calib="calib.npz", eval="eval.npz")
    print(result.status, result.metrics["int8"]["accuracy"], result.engine.status)

`build` takes the same options as `edgeopt build` (see `BuildOptions`) and returns a typed
`BuildResult`; errors are `edgeopt.errors.EdgeoptError` subclasses with the CLI's exit codes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgeopt import bench
from edgeopt.backends.tensorrt.device import time_build
from edgeopt.build_dir import LAYOUT
from edgeopt.errors import BadInput
from edgeopt.pipeline import BuildOptions, Pipeline, Progress, dry_run
from edgeopt.results import BuildResult
from edgeopt.targets import TargetProfile, load_all, resolve


def build(model: str | None = None, *, options: BuildOptions | None = None, progress: Progress | None = None,
          backend_options: dict | None = None, **fields) -> BuildResult:
    """Build `model` (None: the bundled example) for one target; `fields` as BuildOptions, or a
    ready `options`. `backend_options` replace the backend's seams (tests: a fake TensorRT
    `engine_builder`, `cuda`). The one public build: the CLI, release.py and the benchmarks call it."""
    if options is None:
        options = BuildOptions(model=model, **fields)
    elif model is not None or fields:
        raise TypeError("build(): pass either `options` or the model and its fields, not both")
    return Pipeline(options, progress, backend_options=backend_options).run()


def plan(model: str | None = None, **options) -> list[dict]:
    """`edgeopt build --dry-run`: each stage's cache key and whether the cache would serve it."""
    return dry_run(BuildOptions(model=model, **options))


def targets(targets_dir: str | None = None) -> dict[str, TargetProfile]:
    """Every known target profile by name (shipped and the user's)."""
    return load_all(targets_dir)


def target(name: str, targets_dir: str | None = None) -> TargetProfile:
    """A profile by name or alias; "cpu" is this host's own CPU profile."""
    return resolve(name, targets_dir)


def bench_build(build_dir: Path, *, duration_s: float = 3.0, batch: int = 1, warmup_s: float = 0.2) -> dict[str, Any]:
    """`edgeopt bench BUILD_DIR`: the build's deployable artifact, timed by the matching harness."""
    build_dir = Path(build_dir)
    if (build_dir / LAYOUT.tensorrt_engine).is_file():
        timing = time_build(build_dir, warmup_s=warmup_s, duration_s=duration_s)
        return {"model": str(build_dir / LAYOUT.tensorrt_engine), "backend": "tensorrt", **timing.model_dump(mode="json")}
    if (build_dir / LAYOUT.genai_dir).is_dir():  # a decoder-only LLM build (issue 18): its onnxruntime-genai folder
        return bench.bench_llm(build_dir / LAYOUT.genai_dir, duration_s=duration_s)
    for name in (LAYOUT.ort_deployable, LAYOUT.int8_onnx):
        if (build_dir / name).is_file():
            return bench.bench_onnx(build_dir / name, duration_s=duration_s, warmup_s=warmup_s, batch=batch)
    raise BadInput(f"{build_dir}: no {LAYOUT.ort_deployable}, {LAYOUT.int8_onnx} or {LAYOUT.tensorrt_engine} to time")


__all__ = ["BuildOptions", "BuildResult", "bench_build", "build", "plan", "target", "targets"]
