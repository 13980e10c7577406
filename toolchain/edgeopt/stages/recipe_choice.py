"""Which INT8 recipe a build keeps: every candidate is scored on the held-apart selection split;
where this host stands for the target they are timed here, and among those within the accuracy
budget the fastest wins, with recipes within NOISE of it counted as ties that fidelity breaks."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from edgeopt import bench
from edgeopt.data.dataset import Dataset

# Latency differences below this share are noise on a shared host: two quantize runs of MiniLM,
# minutes apart, timed fused dynamic at 1.29x and then 0.94x the p50 of SmoothQuant 0.8.
NOISE = 0.10


class Candidate(BaseModel):
    mode: str  # static-qdq | dynamic | dynamic-unfused (encoders) | tensorrt-qdq
    accuracy_drop: float
    relative_l2: float
    latency_p50_ms: float | None = None
    bytes: int
    within_budget: bool


def time_candidates(fp32: Path, built: dict[str, Path], scores: dict, budget: float, calib: Dataset, threads: int,
                    seconds: float) -> dict[str, float]:
    """p50 ms per recipe (and FP32), interleaved. One short block decides little on a shared host,
    so the contenders (within budget and within 3x NOISE of the fastest) are timed again among
    themselves, and that second, closer look is what the choice reads."""
    timed = bench.measure_onnx({"fp32": fp32, **built}, calib, threads, duration_s=seconds)
    latency = {key: value.p50 for key, value in timed.items()}
    within = [mode for mode in built if scores[mode].drop <= budget]
    fastest = min((latency[mode] for mode in within), default=None)
    contenders = {mode: built[mode] for mode in within if latency[mode] <= fastest * (1 + 3 * NOISE)} if within else {}
    if len(contenders) > 1:
        again = bench.measure_onnx(contenders, calib, threads, duration_s=seconds)
        latency.update({mode: value.p50 for mode, value in again.items()})
    return latency


def fidelity(candidate: Candidate) -> tuple[float, float]:
    """Most faithful first. A negative drop (INT8 right where FP32 was wrong on a few selection
    samples) is luck, not quality: floored at zero, so the output error to FP32 decides. Measured
    on a fine-tuned MiniLM, ranking by raw drop picked a recipe whose selection 'gain' of one
    sample hid twice the logit error of the one it beat (docs/BENCHMARKS.md)."""
    return max(candidate.accuracy_drop, 0.0), candidate.relative_l2


def choose(candidates: list[Candidate], encoder: bool, measured: bool) -> tuple[Candidate, str]:
    """When timed here: among the candidates within budget, those within NOISE of the fastest
    are ties on this shared host, and the most faithful of them wins. Not timed: the most
    faithful dynamic recipe for encoders, static Q/DQ for CNNs."""
    within = [c for c in candidates if c.within_budget]
    if len(candidates) == 1:
        return candidates[0], f"{candidates[0].mode}: the only recipe for this target"
    if measured and within:
        fastest = min(c.latency_p50_ms for c in within)
        best = min((c for c in within if c.latency_p50_ms <= fastest * (1 + NOISE)), key=fidelity)
        return best, (f"{best.mode}: most faithful of the recipes within {NOISE:.0%} of the fastest, within the "
                      f"budget on this host ({best.latency_p50_ms:.3f} ms p50)")
    if within and len(within) == 1:
        return within[0], f"{within[0].mode}: the only recipe within the budget"
    pool = within or candidates
    kind = [c for c in pool if c.mode.startswith("dynamic")] if encoder else [c for c in pool if c.mode.startswith("static-qdq")]
    best = min(kind or pool, key=fidelity)
    why = "not timed (the target is not this host)" if not measured else "none within the budget"
    return best, f"{best.mode}: {why}; rule: most faithful dynamic recipe for encoders, static Q/DQ for CNNs"
