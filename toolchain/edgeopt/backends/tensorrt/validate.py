"""Validation on the device: a built TensorRT engine against the FP32 reference.

A module of its own (not validate.py): it needs the engine session and build-directory handling
of engine.py, which the host-side validate stage must not import, and it runs only where the
engine does (on the device, through `edgeopt build` there or `edgeopt engine build --eval`).

The engine runs every evaluation sample through `TensorRTSession.infer`, in batches the
engine's optimization profile allows (the largest batch it takes; a last short batch is padded
up to the profile's minimum with copies of its last sample, and the padding's outputs are
dropped). ONNX Runtime runs the FP32 ONNX on the host CPU as the reference; `compare_all`
judges every output of the engine against it, as for the INT8 ONNX on CPU targets. Latency comes
from `bench.time_engine` at the profile's opt shapes, as trtexec measures it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from edgeopt import bench
from edgeopt.build_dir import LAYOUT, read_typed_build, update_manifest, verify_artifact, write_json_atomic
from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.backends.tensorrt import session as engine_session
from edgeopt.backends.tensorrt.device import open_build
from edgeopt.backends.tensorrt.plan import BuildPlan
from edgeopt.metrics.fidelity import PrecisionMetrics, ValidateResult, compare_all
from edgeopt.metrics.outputs import OutputMetrics
from edgeopt.targets import TargetProfile

FP32_NOTE = ("FP32 latency not measured: the FP32 reference runs in ONNX Runtime on the host CPU, not on "
             "the GPU; the engine's latency is under int8")


class EngineValidation(BaseModel):
    samples: int
    task: str
    precision: str  # the engine's build precision (the plan's)
    batches: list[int]  # samples fed per inference, padding included
    padded: int  # padding samples added to reach the profile's minimum batch
    fp32: PrecisionMetrics
    engine: PrecisionMetrics  # latency_ms: host latency at the opt batch
    timing: bench.EngineTiming | None
    device: str  # GPU name and TensorRT version from engine.json
    outputs: list[OutputMetrics] = []  # every output, judged as on the host (compare.py)
    drop: float | None = None
    drop_how: str | None = None
    drop_ci95: list[float] | None = None

    def summary_lines(self) -> list[str]:
        def pct(value: float | None) -> str:
            return "-" if value is None else f"{value:.2%}"

        lines = [f"validated on {self.samples} samples ({self.device}, {self.precision}; batches {self.batches})",
                 f"accuracy: FP32 {pct(self.fp32.accuracy)}, engine {pct(self.engine.accuracy)}; "
                 f"top-1 agreement with FP32 {pct(self.engine.agreement)}; cosine mean {self.engine.cosine_mean}"]
        return lines + (self.timing.summary_lines() if self.timing else [])

    def as_validate_result(self) -> ValidateResult:
        """The validate stage's result: the engine takes the `int8` place (the deliverable)."""
        where = None
        if self.timing is not None:
            where = f"{self.device} (TensorRT engine, batch {self.timing.batch}, CUDA events)"
        return ValidateResult(samples=self.samples, task=self.task, fp32=self.fp32, int8=self.engine,
                              latency_measured_on=where, latency_note=FP32_NOTE if self.timing else None,
                              engine_timing=self.timing, outputs=self.outputs, drop=self.drop, drop_how=self.drop_how,
                              drop_ci95=self.drop_ci95)


def batch_plan(count: int, lo: int, hi: int) -> list[tuple[int, int, int]]:
    """(start, stop, fed) per inference: batches of `hi` samples; a last batch shorter than `lo`
    is fed as `lo` samples (padded)."""
    if not 1 <= lo <= hi:
        raise BadInput(f"engine batch range {lo}..{hi} is not usable")
    plan = []
    for start in range(0, count, hi):
        stop = min(start + hi, count)
        plan.append((start, stop, max(stop - start, lo)))
    return plan


def _batch_range(plan: BuildPlan) -> tuple[int, int]:
    """The batch sizes every input's profile takes (axis 0, the sample axis)."""
    lo = max(s.min[0] for s in plan.inputs)
    hi = min(s.max[0] for s in plan.inputs)
    return lo, hi


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    if len(array) >= size:
        return array
    return np.concatenate([array, np.repeat(array[-1:], size - len(array), axis=0)])


def run_engine(session: Any, data: Dataset, plan: BuildPlan,
               outputs: list[str]) -> tuple[dict[str, np.ndarray], list[int], int]:
    """The engine's `outputs` for every sample, in order; also the batch sizes fed and the padding."""
    missing = [n for n in session.inputs if n not in data.inputs]
    if missing:
        raise BadInput(f"{data.source}: no array for engine input(s) {', '.join(missing)}")
    absent = [n for n in outputs if n not in session.outputs]
    if absent:
        raise BadInput(f"the engine has no output '{absent[0]}' (it has {', '.join(session.outputs)})")
    lo, hi = _batch_range(plan)
    chunks, fed, padded = [], [], 0
    for start, stop, size in batch_plan(len(data), lo, hi):
        feeds = {name: _pad(data.inputs[name][start:stop], size) for name in session.inputs}
        result = session.infer(feeds)
        chunks.append({name: result[name][: stop - start] for name in outputs})
        fed.append(size)
        padded += size - (stop - start)
    return {name: np.concatenate([c[name] for c in chunks]) for name in outputs}, fed, padded


def _time(session: Any, data: Dataset, plan: BuildPlan, **timing: Any) -> bench.EngineTiming:
    """Timed at the opt shapes, on real samples (the first opt-batch of the evaluation data)."""
    opt = plan.inputs[0].opt[0] if plan.inputs else 1
    session.fill({name: _pad(data.inputs[name][:opt], opt) for name in session.inputs})
    return bench.time_engine(session, batch=opt, **timing)


def validate_engine(folder: Path, fp32_path: Path, data: Dataset, task: str, target: TargetProfile, *,
                    warmup_s: float = 0.2, duration_s: float = 3.0, min_runs: int = 10, measure_latency: bool = True,
                    threads: int | None = None, spec: Any = None, trt: Any = None, cuda: Any = None) -> EngineValidation:
    """Accuracy and latency of the engine in `folder` (engine.json, build_plan.json, the engine).

    Refused (BadInput) when the engine's TensorRT version or compute capability is not the
    target's. Every output is judged, with the spec's output kinds and --metric (compare_all, as
    ONNX Runtime validation and the device runner judge). `trt` and `cuda` default to the real
    TensorRT and CUDA runtime (tests pass fakes).
    """
    plan, metadata = engine_session.read_engine(folder, target)
    reference_session = runtime.session(fp32_path, threads=threads or os.cpu_count() or 1)
    names = [o.name for o in reference_session.get_outputs()]
    reference = runtime.run_all(reference_session, data)

    session = engine_session.open_session(folder, plan, metadata, trt=trt, cuda=cuda)
    try:
        outputs, fed, padded = run_engine(session, data, plan, names)
        timing = _time(session, data, plan, warmup_s=warmup_s, duration_s=duration_s,
                       min_runs=min_runs) if measure_latency else None
    finally:
        session.close()
    candidate = []
    for name, ref in zip(names, reference):
        if outputs[name].shape != ref.shape:
            raise BadInput(f"engine output '{name}' has shape {outputs[name].shape}, the FP32 reference {ref.shape}")
        candidate.append(outputs[name].astype(ref.dtype, copy=False))
    kinds, spec_outputs, metric = (spec.output_kinds, spec.outputs, spec.metric) if spec is not None else (None, None, None)
    fp32, engine, judgement = compare_all(names, reference, candidate, data.labels, task, kinds, metric, spec_outputs,
                                          data.source)
    if timing is not None:
        engine.latency_ms = timing.host_latency
    device = f"{metadata.get('gpu_name', 'GPU')}, TensorRT {metadata.get('tensorrt_version', '?')}"
    return EngineValidation(samples=len(data), task=task, precision=plan.precision, batches=fed, padded=padded,
                            fp32=fp32, engine=engine, timing=timing, device=device, outputs=judgement.outputs,
                            drop=judgement.drop, drop_how=judgement.how, drop_ci95=judgement.drop_ci95)


def validate_build(path: Path, data_path: Path, *, reader: Any = None, warmup_s: float = 0.2,
                   duration_s: float = 3.0, min_runs: int = 10, trt: Any = None,
                   cuda: Any = None) -> tuple[EngineValidation, list]:
    """`edgeopt engine build --eval`: validate a build directory's engine on `data_path` and record
    the metrics and re-judged gates in manifest.json and metrics.json. Returns the gate results."""
    from edgeopt.data import load_dataset
    from edgeopt.models.spec import ModelSpec
    from edgeopt.report import gates as gate_rules

    build_dir = open_build(Path(path))
    manifest, target = read_typed_build(build_dir)
    try:
        spec = ModelSpec.model_validate(manifest.model["spec"])
    except (KeyError, TypeError, ValueError):
        raise BadInput(f"{build_dir / LAYOUT.manifest}: no model spec (key 'model.spec')") from None
    fp32_path = verify_artifact(build_dir, manifest, LAYOUT.fp32_onnx)
    data = load_dataset(data_path, spec, "evaluation", reader)
    result = validate_engine(build_dir, fp32_path, data, spec.task, target, spec=spec, warmup_s=warmup_s,
                             duration_s=duration_s, min_runs=min_runs, trt=trt, cuda=cuda)
    metrics = result.as_validate_result()
    gate_config, drop = target.gates, manifest.threshold("max_accuracy_drop")
    if drop is not None:  # a --max-accuracy-drop of the original build
        gate_config = gate_config.model_copy(update={"max_accuracy_drop": drop})
    gates = gate_rules.evaluate(metrics, gate_config)
    document = metrics.model_dump(mode="json")
    write_json_atomic(build_dir / LAYOUT.metrics, document)
    updates = {"metrics": document, "gates": [g.model_dump() for g in gates],
               "device_validation": {"eval": str(Path(data_path).resolve()), "eval_sha256": data.sha256,
                                     "batches": result.batches, "padded": result.padded, "device": result.device}}
    if manifest.metrics and "host_metrics" not in (manifest.model_extra or {}):
        updates["host_metrics"] = manifest.metrics  # the INT8 ONNX on the host CPU, kept for reference
    update_manifest(build_dir, updates, [LAYOUT.metrics])
    return result, gates
