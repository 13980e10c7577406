"""Accuracy and fidelity of a candidate ONNX against the FP32 reference, both run by ONNX Runtime,
and host latency of both, timed interleaved, where the host can stand in for the target. A
TensorRT engine on its device is validated by backends/tensorrt/validate.py with the same
comparisons (metrics.fidelity)."""

from __future__ import annotations

from pathlib import Path

from edgeopt import bench
from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.build_dir import LAYOUT, write_json_atomic
from edgeopt.data.dataset import Dataset
from edgeopt.metrics.fidelity import ValidateResult, compare_all


def validate(fp32_path: Path, int8_path: Path, data: Dataset, task: str, *, latency_on_host: bool,
             threads: int, latency_seconds: float = 2.0, latency_note: str | None = None,
             kinds: dict[str, str] | None = None, metric: str | None = None,
             spec_outputs: list[str] | None = None, spec=None,
             folder: Path | None = None, batch: int = 1) -> ValidateResult:
    """Every output of the candidate against FP32 (metrics.fidelity.compare_all); `spec` (a
    ModelSpec) supplies output kinds, output order and the user metric; `folder` (the stage folder)
    receives the raw latency samples as LAYOUT.latency_samples. Both models run at `batch`, the
    deployed batch: dynamic quantization computes its activation scales over the whole batch, so a
    dynamic-INT8 model judged at batch 64 is not the computation deployed at batch 1 (issue 20)."""
    if spec is not None:
        kinds, spec_outputs, metric = spec.output_kinds, spec.outputs, metric or spec.metric
    reference_session = runtime.session(fp32_path, threads=threads)
    names = [o.name for o in reference_session.get_outputs()]
    reference = runtime.run_all(reference_session, data, batch)
    candidate = runtime.run_all(runtime.session(int8_path, threads=threads), data, batch)
    fp32, int8, judgement = compare_all(names, reference, candidate, data.labels, task, kinds, metric, spec_outputs,
                                        data.source)
    measured_on = None
    if latency_on_host:
        samples: dict[str, list[float]] = {}
        latency = bench.measure_onnx({"fp32": fp32_path, "int8": int8_path}, data, threads,
                                     duration_s=latency_seconds, samples=samples)
        if folder is not None:
            write_json_atomic(Path(folder) / LAYOUT.latency_samples, {"unit": "ms", "threads": threads, **samples})
        fp32.latency_ms, int8.latency_ms = latency["fp32"], latency["int8"]
        measured_on = "host CPU (ONNX Runtime, batch 1)"
    return ValidateResult(samples=len(data), task=task, batch=batch, fp32=fp32, int8=int8,
                          latency_measured_on=measured_on, latency_note=latency_note,
                          outputs=judgement.outputs, drop=judgement.drop, drop_how=judgement.how,
                          drop_ci95=judgement.drop_ci95)
