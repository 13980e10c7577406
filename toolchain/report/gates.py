"""Gates: judge validated metrics against the target's thresholds. Measuring happens elsewhere."""

from __future__ import annotations

from pydantic import BaseModel

from edgeopt.stages.validate import ValidateResult
from edgeopt.targets import Gates


class GateResult(BaseModel):
    name: str
    threshold: float
    value: float | None
    passed: bool | None  # None: the metric could not be measured here, so the gate was not judged
    note: str = ""


def accuracy_drop(metrics: ValidateResult) -> tuple[float | None, str]:
    """FP32 minus INT8 top-1; without labels, INT8's disagreement with FP32; for embeddings,
    one minus the mean cosine similarity."""
    fp32, int8 = metrics.fp32, metrics.int8
    if fp32.accuracy is not None and int8.accuracy is not None:
        return round(fp32.accuracy - int8.accuracy, 6), "top-1 accuracy, FP32 minus INT8"
    if int8.agreement is not None:
        return round(1 - int8.agreement, 6), "no labels: share of samples whose top-1 differs from FP32"
    if int8.cosine_mean is not None:
        return round(1 - int8.cosine_mean, 6), "1 - mean cosine similarity to FP32"
    return None, "no metric to judge"


def evaluate(metrics: ValidateResult, gates: Gates) -> list[GateResult]:
    drop, how = accuracy_drop(metrics)
    results = [GateResult(name="max_accuracy_drop", threshold=gates.max_accuracy_drop, value=drop,
                          passed=None if drop is None else drop <= gates.max_accuracy_drop, note=how)]
    int8_latency = metrics.int8.latency_ms
    fp32_latency = metrics.fp32.latency_ms
    if gates.max_latency_ms is not None:
        value = int8_latency.p50 if int8_latency else None
        results.append(GateResult(name="max_latency_ms", threshold=gates.max_latency_ms, value=value,
                                  passed=None if value is None else value <= gates.max_latency_ms,
                                  note="INT8 p50" if value is not None else "latency not measurable on this host"))
    if gates.min_speedup is not None:
        value = round(fp32_latency.p50 / int8_latency.p50, 4) if int8_latency and fp32_latency else None
        results.append(GateResult(name="min_speedup", threshold=gates.min_speedup, value=value,
                                  passed=None if value is None else value >= gates.min_speedup,
                                  note="FP32 p50 / INT8 p50" if value is not None else "latency not measurable on this host"))
    return results
