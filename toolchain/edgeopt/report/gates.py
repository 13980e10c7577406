"""Gates: judge validated metrics against the target's thresholds. Measuring happens elsewhere."""

from __future__ import annotations

from pydantic import BaseModel

from edgeopt.metrics.fidelity import ValidateResult, accuracy_drop
from edgeopt.targets import Gates


class GateResult(BaseModel):
    name: str
    threshold: float
    value: float | None
    passed: bool | None  # None: the metric could not be measured here, so the gate was not judged
    note: str = ""
    interval: list[float] | None = None  # the value's 95% interval where it is a mean over samples
    within_noise: bool | None = None  # the interval spans the threshold: more data, not the recipe, would decide


def effective(gates: Gates, max_accuracy_drop: float | None) -> Gates:
    """The target's gates with the build's --max-accuracy-drop applied: the one budget the
    quantizer's fallback, the prune warning and the gate all read."""
    return gates if max_accuracy_drop is None else gates.model_copy(update={"max_accuracy_drop": max_accuracy_drop})


def evaluate(metrics: ValidateResult, gates: Gates) -> list[GateResult]:
    drop, how = accuracy_drop(metrics)
    interval = metrics.drop_ci95 if metrics.outputs and drop is not None else None
    results = [GateResult(name="max_accuracy_drop", threshold=gates.max_accuracy_drop, value=drop,
                          passed=None if drop is None else drop <= gates.max_accuracy_drop, note=how, interval=interval,
                          within_noise=None if interval is None else interval[0] <= gates.max_accuracy_drop <= interval[1])]
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


def not_judged(gates: list[dict]) -> list[dict]:
    """Gates (as in the build result) that could not be judged on this host, each with its reason."""
    return [{"name": g["name"], "reason": g.get("note") or "not measured"} for g in gates if g["passed"] is None]


def failed(gates: list[dict], strict: bool = False) -> list[str]:
    """Names of gates that fail the build; with `strict`, a gate not judged fails too (for CI)."""
    return [g["name"] for g in gates if g["passed"] is False or (strict and g["passed"] is None)]
