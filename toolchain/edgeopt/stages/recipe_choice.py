"""Which INT8 recipe a build keeps: every candidate is scored on the held-apart selection split;
where this host stands for the target they are timed here, and among those within the accuracy
budget the fastest wins, with recipes within NOISE of it counted as ties that fidelity breaks:
a slower tie wins only when its label-free fidelity loss (KL of the softmax for class scores,
1 - cosine for embeddings, relative L2 otherwise) is lower beyond noise, by a paired bootstrap of
the per-sample differences (issue 20: one or two samples no longer decide)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from edgeopt import bench
from edgeopt.compare import paired_difference
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
    fidelity: float | None = None  # mean label-free loss to FP32 on the selection split (Score.fidelity)
    losses: list[float] = Field(default_factory=list, exclude=True)  # per selection sample; not stored


class Selection(BaseModel):
    """Why the winner beat the runner-up it was compared with last: the paired difference of their
    per-sample fidelity losses (winner minus runner-up) and its 95% bootstrap interval."""

    winner: str
    runner_up: str | None = None
    measure: str = ""
    winner_fidelity: float | None = None
    runner_up_fidelity: float | None = None
    difference: float | None = None
    ci95: list[float] | None = None
    decided_by: str  # "fidelity beyond noise" | "speed: fidelity equal within noise" | a rule
    samples: int = 0


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
    """Most faithful first, by the continuous label-free loss (KL of the softmax, 1 - cosine,
    relative L2: compare.fidelity_losses); the top-1 drop is no ranking key any more: on a
    fine-tuned MiniLM one lucky selection sample (a negative drop) hid twice the logit error of
    the recipe it beat (docs/BENCHMARKS.md). Older candidates without it fall back to relative L2."""
    return (candidate.fidelity if candidate.fidelity is not None else candidate.relative_l2), candidate.relative_l2


def more_faithful(challenger: Candidate, holder: Candidate) -> dict | None:
    """The paired comparison (challenger minus holder) when the challenger's loss is lower beyond
    noise (the interval's upper end below zero), else None. Without per-sample losses (results
    from an older cache) the point estimates decide."""
    if challenger.losses and holder.losses and len(challenger.losses) == len(holder.losses):
        paired = paired_difference(challenger.losses, holder.losses)
        return paired if paired["b_worse"] else None
    return {"mean": None, "ci95": None} if fidelity(challenger) < fidelity(holder) else None


def _selection(winner: Candidate, other: Candidate | None, paired: dict | None, decided_by: str,
               measure: str) -> Selection:
    if other is not None and paired is None and winner.losses and len(winner.losses) == len(other.losses):
        paired = paired_difference(winner.losses, other.losses)
    return Selection(winner=winner.mode, runner_up=other.mode if other else None, measure=measure,
                     winner_fidelity=winner.fidelity, runner_up_fidelity=other.fidelity if other else None,
                     difference=None if not paired or paired["mean"] is None else round(paired["mean"], 8),
                     ci95=None if not paired or paired["ci95"] is None else [round(v, 8) for v in paired["ci95"]],
                     decided_by=decided_by, samples=len(winner.losses))


def _margin(selection: Selection) -> str:
    if selection.runner_up is None:
        return ""
    if selection.difference is None:
        return f"; vs {selection.runner_up}: {selection.decided_by}"
    low, high = selection.ci95
    return (f"; vs {selection.runner_up}: {selection.decided_by} (loss {selection.winner_fidelity:.3g} vs "
            f"{selection.runner_up_fidelity:.3g}, paired difference {selection.difference:+.3g}, 95% CI "
            f"[{low:+.3g}, {high:+.3g}] over {selection.samples} selection samples)")


def pick_most_faithful(pool: list[Candidate]) -> tuple[Candidate, Candidate | None, dict | None, str]:
    """`pool` fastest first; a later one replaces the holder only when more faithful than it beyond
    noise. The winner, the rival it is reported against, that comparison, and why it won."""
    holder, other, paired, why = pool[0], None, None, "speed: fidelity equal within noise"
    for challenger in pool[1:]:
        beaten = more_faithful(challenger, holder)
        if beaten is not None:
            other, paired, why, holder = holder, beaten, "fidelity beyond noise", challenger
    if other is None and len(pool) > 1:  # nobody beat the fastest: show the closest rival
        other = min(pool[1:], key=fidelity)
        verdict = more_faithful(holder, other)
        if verdict is not None:  # the fastest is also the more faithful, beyond noise
            paired, why = verdict, "speed, and fidelity beyond noise"
    return holder, other, paired, why


def choose(candidates: list[Candidate], encoder: bool, measured: bool,
           measure: str = "") -> tuple[Candidate, str, Selection]:
    """When timed here: among the candidates within budget, those within NOISE of the fastest
    are ties on this shared host; the fastest of them wins unless a slower one is more faithful
    beyond noise (paired bootstrap of the per-sample loss difference on the selection split).
    Not timed: the most faithful dynamic recipe for encoders, static Q/DQ for CNNs, by the same
    paired comparison. Returns the winner, the sentence, and the margin (Selection)."""
    within = [c for c in candidates if c.within_budget]
    if len(candidates) == 1:
        return candidates[0], f"{candidates[0].mode}: the only recipe for this target", \
            _selection(candidates[0], None, None, "the only recipe", measure)
    if measured and within:
        fastest = min(c.latency_p50_ms for c in within)
        tied = sorted((c for c in within if c.latency_p50_ms <= fastest * (1 + NOISE)), key=lambda c: c.latency_p50_ms)
        best, other, paired, why = pick_most_faithful(tied)
        selection = _selection(best, other, paired, why, measure)
        if why == "fidelity beyond noise":
            head = (f"{best.mode}: within {NOISE:.0%} of the fastest recipe within the budget on this host "
                    f"({best.latency_p50_ms:.3f} ms p50) and more faithful beyond noise")
        else:
            head = (f"{best.mode}: the fastest recipe within the budget on this host ({best.latency_p50_ms:.3f} ms "
                    f"p50); none within {NOISE:.0%} of it is more faithful beyond noise")
            if why != "speed: fidelity equal within noise":
                head = f"{head}, and it is the more faithful beyond noise"
        return best, head + _margin(selection), selection
    if within and len(within) == 1:
        return within[0], f"{within[0].mode}: the only recipe within the budget", \
            _selection(within[0], None, None, "the only recipe within the budget", measure)
    pool = within or candidates
    kind = [c for c in pool if c.mode.startswith("dynamic")] if encoder else [c for c in pool if c.mode.startswith("static-qdq")]
    ordered = sorted(kind or pool, key=fidelity)
    best, other = ordered[0], ordered[1] if len(ordered) > 1 else None
    paired = paired_difference(best.losses, other.losses) if other and best.losses and \
        len(best.losses) == len(other.losses) else None
    selection = _selection(best, other, paired, "most faithful beyond noise" if paired and paired["b_worse"] else
                           "most faithful point estimate (within noise of the runner-up)", measure)
    why = "not timed (the target is not this host)" if not measured else "none within the budget"
    return best, (f"{best.mode}: {why}; rule: most faithful dynamic recipe for encoders, static Q/DQ for CNNs"
                  f"{_margin(selection)}"), selection
