"""Validate stage: accuracy and fidelity of the INT8 artifact against the FP32 reference, and
host latency of both where the host can stand in for the target (an onnxruntime CPU target of
this host's architecture). A TensorRT engine on its device is validated by validate_engine.py,
with the same `compare_outputs`. Judging (gates) is separate, in report/gates.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

from edgeopt import bench, runtime
from edgeopt.data.dataset import Dataset


class PrecisionMetrics(BaseModel):
    accuracy: float | None = None
    agreement: float | None = None
    cosine_mean: float | None = None
    cosine_min: float | None = None
    relative_l2: float | None = None
    max_abs_error: float | None = None
    latency_ms: bench.Latency | None = None


class ValidateResult(BaseModel):
    samples: int
    task: str
    fp32: PrecisionMetrics
    int8: PrecisionMetrics
    latency_measured_on: str | None = None
    latency_note: str | None = None
    engine_timing: bench.EngineTiming | None = None  # a TensorRT engine timed on the device (validate_engine)


def _cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    denominator = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.where(denominator == 0, 1.0, denominator)


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None,
                    task: str) -> tuple[PrecisionMetrics, PrecisionMetrics]:
    """FP32 and INT8 metrics from their first outputs over the same samples."""
    cosine = _cosine(reference, candidate)
    error = np.linalg.norm((candidate - reference).reshape(len(reference), -1), axis=1)
    norm = np.linalg.norm(reference.reshape(len(reference), -1), axis=1)
    fp32 = PrecisionMetrics()
    int8 = PrecisionMetrics(
        cosine_mean=round(float(cosine.mean()), 6),
        cosine_min=round(float(cosine.min()), 6),
        relative_l2=round(float((error / np.where(norm == 0, 1.0, norm)).mean()), 6),
        max_abs_error=float(np.abs(candidate - reference).max()),
    )
    if task == "classification":
        ref_top1 = reference.reshape(len(reference), -1).argmax(axis=1)
        cand_top1 = candidate.reshape(len(candidate), -1).argmax(axis=1)
        int8.agreement = round(float((ref_top1 == cand_top1).mean()), 6)
        if labels is not None:
            fp32.accuracy = round(float((ref_top1 == labels).mean()), 6)
            int8.accuracy = round(float((cand_top1 == labels).mean()), 6)
    return fp32, int8


def validate(fp32_path: Path, int8_path: Path, data: Dataset, task: str, *, latency_on_host: bool,
             threads: int, latency_seconds: float = 2.0, latency_note: str | None = None) -> ValidateResult:
    reference = runtime.run_all(runtime.session(fp32_path, threads=threads), data)[0]
    candidate = runtime.run_all(runtime.session(int8_path, threads=threads), data)[0]
    fp32, int8 = compare_outputs(reference, candidate, data.labels, task)
    measured_on = None
    if latency_on_host:
        latency = bench.measure_onnx({"fp32": fp32_path, "int8": int8_path}, data, threads,
                                     duration_s=latency_seconds)
        fp32.latency_ms, int8.latency_ms = latency["fp32"], latency["int8"]
        measured_on = "host CPU (ONNX Runtime, batch 1)"
    return ValidateResult(samples=len(data), task=task, fp32=fp32, int8=int8,
                          latency_measured_on=measured_on, latency_note=latency_note)
