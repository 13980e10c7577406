"""Accuracy-aware quantization: judge INT8 candidates the way the gate will, and when the best
misses the budget, keep the most sensitive layers in float until it holds.

Ranking: one run of the FP32 and the INT8 model over the selection data reads every layer's
output (by node name, graph optimizations off) and ranks layers by the relative output error each
adds to the error of its nearest quantized upstream layers (its own input and weight quantization).
Then the top 1, 2, 4, ... layers are kept in float (ranges replayed from the calibration cache:
one quantizer pass and one evaluation each) until the budget holds. Leave-one-out (one trial per
layer, what the previous version did) measures exactly what floating one layer saves, but cost
333 s on EfficientNet-Lite1's 65 layers; it remains the way for graphs whose layers the INT8 model
renames (dynamic quantization).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import BaseModel, Field

import onnx
import onnxruntime as ort

from edgeopt import progress
from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.compare import FIDELITY_MEASURE, OTHER_MEASURE, fidelity_losses, output_kinds, paired_difference
from edgeopt.data.dataset import Dataset
from edgeopt.metrics.fidelity import ValidateResult, accuracy_drop, compare_all


class Score(BaseModel):
    drop: float  # what the max_accuracy_drop gate reads (gates.accuracy_drop)
    relative_l2: float  # continuous tiebreaker: top-1 drops move in steps of 1/samples
    how: str
    fidelity: float = 0.0  # mean per-sample label-free loss to FP32 (compare.fidelity_losses), summed over outputs
    fidelity_how: str = ""
    losses: list[float] = Field(default_factory=list)  # that loss per selection sample: paired comparisons read it


class Scorer:
    """Scores models against FP32 outputs computed once on `data`, with the judgement the validate
    stage and the gate use (every output, by kind, or the user metric)."""

    def __init__(self, fp32_path: Path, data: Dataset, task: str, threads: int,
                 kinds: dict[str, str] | None = None, metric: str | None = None, spec_outputs: list[str] | None = None,
                 batch: int = 1):
        self.fp32_path, self.data, self.task, self.threads, self.batch = fp32_path, data, task, threads, batch
        self.kinds, self.metric, self.spec_outputs = kinds, metric, spec_outputs
        reference = runtime.session(fp32_path, threads=threads)
        self.names = [o.name for o in reference.get_outputs()]
        self.reference = runtime.run_all(reference, data, batch)

    def _outputs(self, path: Path) -> list[np.ndarray]:
        return runtime.run_all(runtime.session(path, threads=self.threads), self.data, self.batch)

    def score(self, path: Path) -> Score:
        outputs = self._outputs(path)
        fp32, int8, judgement = compare_all(self.names, self.reference, outputs, self.data.labels,
                                            self.task, self.kinds, self.metric, self.spec_outputs,
                                            self.data.source)
        drop, how = accuracy_drop(ValidateResult(samples=len(self.data), task=self.task, fp32=fp32, int8=int8,
                                                 outputs=judgement.outputs, drop=judgement.drop, drop_how=judgement.how))
        l2 = max((o.relative_l2 for o in judgement.outputs), default=int8.relative_l2 or 0.0)
        kinds = output_kinds(self.names, self.task, self.kinds, self.spec_outputs)
        losses = sum(fidelity_losses(kinds[name], ref, cand) for name, ref, cand in zip(self.names, self.reference, outputs))
        measure = " + ".join(f"{FIDELITY_MEASURE.get(kinds[name], OTHER_MEASURE)} ('{name}')" for name in self.names)
        return Score(drop=drop if drop is not None else 0.0, relative_l2=l2, how=how, fidelity=float(np.mean(losses)),
                     fidelity_how=f"{measure}, mean over {len(self.data)} selection samples", losses=losses.tolist())


class LayerRow(BaseModel):
    node: str
    op_type: str
    rank: int
    drop_if_float: float | None = None  # drop with only this layer in float (leave-one-out ranking)
    saved: float | None = None  # drop recovered by keeping only this layer in float (leave-one-out)
    added_error: float | None = None  # relative output error this layer adds (one-pass ranking)
    kept_float: bool = False
    drop_after: float | None = None  # drop with this and every higher-ranked layer in float


class Fallback(BaseModel):
    budget: float
    drop_before: float
    drop_after: float
    met: bool
    float_layers: list[str]
    layers: list[LayerRow]
    trials: int
    ranking: str = "leave-one-out"


Quantizer = Callable[[list[str], Path], Path]  # (nodes kept in float, output path) -> INT8 model


def _exposing(path: Path, nodes: list[str], threads: int) -> tuple[ort.InferenceSession, dict[str, str]]:
    """A session that also returns each of `nodes`' first output ({node: tensor}), optimizations
    off so the tensors keep their names."""
    model = onnx.load(str(path))
    outputs = {n.name: n.output[0] for n in model.graph.node if n.name in nodes}
    return runtime.exposing(model, outputs.values(), threads), outputs


def rank_by_added_error(fp32_path: Path, int8_path: Path, layers: list[tuple[str, str]], data: Dataset,
                        threads: int = 2) -> dict[str, float] | None:
    """{node: relative output error (|y_int8 - y_fp32|^2 / |y_fp32|^2) minus the largest of its
    nearest weighted upstream layers'}; None when the INT8 model lacks some of the nodes."""
    names = [name for name, _ in layers]
    fp32, fp32_out = _exposing(fp32_path, names, threads)
    int8, int8_out = _exposing(int8_path, names, threads)
    if set(int8_out) != set(names) or set(fp32_out) != set(names):
        return None
    inputs = {i.name for i in fp32.get_inputs()}
    noise, energy = dict.fromkeys(names, 0.0), dict.fromkeys(names, 0.0)
    for start in range(len(data)):  # batch 1: the deployed shape (the batch axis may be fixed)
        progress.step(start, len(data), "fallback: ranking layers")
        feed = {k: v for k, v in data.batch(start, start + 1).items() if k in inputs}
        reference = fp32.run([fp32_out[n] for n in names], feed)
        quantized = int8.run([int8_out[n] for n in names], feed)
        for name, a, b in zip(names, reference, quantized):
            noise[name] += float(((a.astype(np.float64) - b) ** 2).sum())
            energy[name] += float((a.astype(np.float64) ** 2).sum())
    error = {name: noise[name] / max(energy[name], 1e-30) for name in names}
    graph = onnx.load(str(fp32_path), load_external_data=False).graph
    producer = {o: n for n in graph.node for o in n.output}
    added = {}
    for node in (n for n in graph.node if n.name in error):
        upstream, stack, seen = [], list(node.input[:1]), set()
        while stack:
            source = producer.get(stack.pop())
            if source is None or source.name in seen:
                continue
            seen.add(source.name)
            if source.name in error:
                upstream.append(error[source.name])
            else:
                stack.extend(source.input)
        added[node.name] = error[node.name] - max(upstream, default=0.0)
    return added


def keep_sensitive_in_float(quantize: Quantizer, layers: list[tuple[str, str]], scorer: Scorer,
                            start: Score, budget: float, workdir: Path,
                            max_layers: int = 64, max_float: int | None = None, *, int8_path: Path | None = None,
                            keep_partial: bool = True) -> tuple[Fallback, Path | None]:
    """Rank `layers` (node name, op type): by the error each adds in one pass when `int8_path`
    (the all-INT8 model) is given and names its layers, else leave-one-out; then float the top
    1, 2, 4, ... (at most `max_float`) until `scorer` says the drop is within `budget`. Returns the
    table and the best model (lowest drop; None if no trial beat `start`, or if none met the
    budget and not `keep_partial`: float layers cost latency even where the gate fails anyway)."""
    added = rank_by_added_error(scorer.fp32_path, int8_path, layers[:max_layers], scorer.data, scorer.threads) \
        if int8_path is not None else None
    if added is not None:
        ranked = sorted(layers[:max_layers], key=lambda layer: -added[layer[0]])
        table = [LayerRow(node=n, op_type=o, rank=i + 1, added_error=round(added[n], 6))
                 for i, (n, o) in enumerate(ranked)]
        return _float_top(quantize, table, scorer, start, budget, workdir, max_float, 0, keep_partial, "added-error")
    trial = workdir / "trial.onnx"
    rows = []
    for node, op_type in layers[:max_layers]:
        progress.step(len(rows), len(layers[:max_layers]), "fallback: layers tried in float")
        score = scorer.score(quantize([node], trial))
        rows.append((start.drop - score.drop, start.relative_l2 - score.relative_l2, node, op_type, score.drop))
    trial.unlink(missing_ok=True)
    rows.sort(key=lambda r: (-r[0], -r[1]))
    table = [LayerRow(node=n, op_type=o, rank=i + 1, drop_if_float=round(d, 6), saved=round(s, 6))
             for i, (s, _, n, o, d) in enumerate(rows)]
    return _float_top(quantize, table, scorer, start, budget, workdir, max_float, len(rows), keep_partial,
                      "leave-one-out")


def _float_top(quantize: Quantizer, table: list[LayerRow], scorer: Scorer, start: Score, budget: float,
               workdir: Path, max_float: int | None, trials: int, keep_partial: bool,
               ranking: str) -> tuple[Fallback, Path | None]:
    """Float the top 1, 2, 4, ... layers until the budget holds, then bisect down to the fewest
    that still hold it (each float layer costs latency)."""
    limit = min(len(table), max_float if max_float is not None else len(table))
    best = {"drop": start.drop, "path": None, "floated": [], "losses": start.losses}

    def beyond_noise(score: Score) -> bool:
        """Outside the budget a lower drop is kept only when the output error to FP32 is lower
        too, beyond noise (paired bootstrap on the selection samples): a drop of one sample less
        is otherwise luck that costs float layers (EfficientNet-Lite1 kept 8, docs/BENCHMARKS.md)."""
        if not score.losses or not best["losses"]:
            return True
        return paired_difference(score.losses, best["losses"])["b_worse"]

    def trial(count: int) -> bool:
        nonlocal trials
        floated = [row.node for row in table[:count]]
        candidate = workdir / f"float{count}.onnx"
        score = scorer.score(quantize(list(floated), candidate))
        trials += 1
        progress.step(trials, None, "fallback search steps")
        table[count - 1].drop_after = round(score.drop, 6)
        met, best_met = score.drop <= budget, best["drop"] <= budget
        # within the budget: the fewest float layers win; outside it: the lowest drop
        if (met and (not best_met or count < len(best["floated"]))) or (not met and not best_met
                                                                          and score.drop < best["drop"]
                                                                          and beyond_noise(score)):
            if best["path"] is not None:
                best["path"].unlink(missing_ok=True)
            best.update(drop=score.drop, path=candidate, floated=floated, losses=score.losses)
        else:
            candidate.unlink(missing_ok=True)
        return score.drop <= budget

    low, count = 0, 1  # low: largest count known to miss the budget
    while limit and count <= limit:
        if trial(count):
            high = count
            while high - low > 1:  # the fewest layers that meet the budget lie in (low, high]
                middle = (low + high) // 2
                if trial(middle):
                    high = middle
                else:
                    low = middle
            break
        low, count = count, (count * 2 if count * 2 <= limit or count == limit else limit)
    if best["drop"] > budget and not keep_partial and best["path"] is not None:
        best["path"].unlink(missing_ok=True)
        best.update(drop=start.drop, path=None, floated=[], losses=start.losses)
    for row in table:
        row.kept_float = row.node in best["floated"]
    result = Fallback(budget=budget, drop_before=start.drop, drop_after=best["drop"], met=best["drop"] <= budget,
                      float_layers=best["floated"], layers=table, trials=trials, ranking=ranking)
    return result, best["path"]
