"""Fidelity of a candidate (INT8 ONNX, engine) against the FP32 reference, and the one accuracy
number the gate and the accuracy-aware fallback both read (`accuracy_drop`).

Measuring lives here and in the backends; judging (gates) lives in report/gates.py.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field

from edgeopt import compare
from edgeopt.metrics.latency import EngineTiming, Latency
from edgeopt.metrics.outputs import Judgement, OutputMetrics, judge, load_user_metric


class PrecisionMetrics(BaseModel):
    accuracy: float | None = None
    agreement: float | None = None
    cosine_mean: float | None = None
    cosine_min: float | None = None
    relative_l2: float | None = None
    max_abs_error: float | None = None
    latency_ms: Latency | None = None


class ValidateResult(BaseModel):
    samples: int
    task: str
    batch: int | None = None  # the batch accuracy and fidelity were measured at (the deployed one)
    fp32: PrecisionMetrics
    int8: PrecisionMetrics
    latency_measured_on: str | None = None
    latency_note: str | None = None
    engine_timing: EngineTiming | None = None  # a TensorRT engine timed on the device (validate_engine)
    outputs: list[OutputMetrics] = Field(default_factory=list, description="every output, with its task metric")
    drop: float | None = None  # judge()'s drop: what the gate reads when outputs were judged
    drop_how: str | None = None
    drop_ci95: list[float] | None = None  # the drop's paired-bootstrap 95% interval (top-1 outputs)


def check_labels(labels: np.ndarray | None, classes: int, source: object = "the evaluation data") -> None:
    """Labels outside the model's classes are a mistake in the data, not wrong predictions."""
    if labels is None or labels.size == 0:
        return
    bad = labels[(labels < 0) | (labels >= classes)]
    if bad.size:
        from edgeopt.errors import BadInput

        raise BadInput(f"{source}: label {bad.flat[0]} is outside the model's {classes} classes "
                       f"(0..{classes - 1}); {bad.size} labels are out of range")


def compare_outputs(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray | None,
                    task: str, source: object = "the evaluation data") -> tuple[PrecisionMetrics, PrecisionMetrics]:
    """FP32 and INT8 metrics from their first outputs over the same samples (compare.first_output)."""
    if task == "classification":
        check_labels(labels, int(reference.reshape(len(reference), -1).shape[1]), source)
    first = compare.first_output(reference, candidate, labels, task == "classification")
    fp32 = PrecisionMetrics(accuracy=first.pop("fp32_accuracy", None))
    return fp32, PrecisionMetrics(**first)


output_kinds = compare.output_kinds  # one rule for the host and the device runner


def compare_all(names: list[str], reference: list[np.ndarray], candidate: list[np.ndarray], labels, task: str,
                kinds: dict[str, str] | None = None, metric: str | None = None,
                spec_outputs: list[str] | None = None,
                source: object = "the evaluation data") -> tuple[PrecisionMetrics, PrecisionMetrics, Judgement]:
    """Every output judged (judge), plus the first-output summary fields (`compare_outputs`);
    top-1 fields only when the first output holds class scores."""
    kinds = output_kinds(names, task, kinds, spec_outputs)
    if kinds[names[0]] == "class_scores":  # before judging: a bad label is the data's fault, not INT8's
        check_labels(labels, int(reference[0].reshape(len(reference[0]), -1).shape[1]), source)
    judgement = judge(dict(zip(names, reference)), dict(zip(names, candidate)), labels, kinds,
                      load_user_metric(metric) if metric else None)
    first = "classification" if kinds[names[0]] == "class_scores" else "other"
    fp32, int8 = compare_outputs(reference[0], candidate[0], labels, first, source)
    return fp32, int8, judgement


def accuracy_drop(metrics: ValidateResult) -> tuple[float | None, str]:
    """The number the gate and the fallback read: judge()'s drop when every output was judged
    (the worst output's task metric, or the user metric); else, from the first output, FP32
    minus INT8 top-1, INT8's disagreement with FP32, or one minus the mean cosine."""
    if metrics.outputs:
        return metrics.drop, metrics.drop_how or ""
    fp32, int8 = metrics.fp32, metrics.int8
    if fp32.accuracy is not None and int8.accuracy is not None:
        return round(fp32.accuracy - int8.accuracy, 6), "top-1 accuracy, FP32 minus INT8"
    if int8.agreement is not None:
        return round(1 - int8.agreement, 6), "no labels: share of samples whose top-1 differs from FP32"
    if int8.cosine_mean is not None:
        return round(1 - int8.cosine_mean, 6), "1 - mean cosine similarity to FP32"
    return None, "no metric to judge"
