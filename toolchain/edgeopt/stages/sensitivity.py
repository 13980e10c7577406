"""Accuracy-aware quantization: judge INT8 candidates the way the gate will, and when the best
misses the budget, keep the most sensitive layers in float until it holds.

Sensitivity is measured, not guessed: each quantized compute layer is left in float on its own
(leave-one-out, ranges replayed from the calibration cache so a trial costs one quantizer pass
and one evaluation), layers are ranked by how much that recovers, then added to the float set
greedily until the drop meets the budget. Leave-one-out measures exactly what the table reports
(what keeping a layer in float saves); a per-layer output-error proxy mixes in upstream error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import BaseModel

from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.data.dataset import Dataset
from edgeopt.metrics.fidelity import ValidateResult, accuracy_drop, compare_all


class Score(BaseModel):
    drop: float  # what the max_accuracy_drop gate reads (gates.accuracy_drop)
    relative_l2: float  # continuous tiebreaker: top-1 drops move in steps of 1/samples
    how: str


class Scorer:
    """Scores models against FP32 outputs computed once on `data`, with the judgement the validate
    stage and the gate use (every output, by kind, or the user metric)."""

    def __init__(self, fp32_path: Path, data: Dataset, task: str, threads: int,
                 kinds: dict[str, str] | None = None, metric: str | None = None, spec_outputs: list[str] | None = None):
        self.data, self.task, self.threads = data, task, threads
        self.kinds, self.metric, self.spec_outputs = kinds, metric, spec_outputs
        reference = runtime.session(fp32_path, threads=threads)
        self.names = [o.name for o in reference.get_outputs()]
        self.reference = runtime.run_all(reference, data)

    def _outputs(self, path: Path) -> list[np.ndarray]:
        return runtime.run_all(runtime.session(path, threads=self.threads), self.data)

    def score(self, path: Path) -> Score:
        fp32, int8, judgement = compare_all(self.names, self.reference, self._outputs(path), self.data.labels,
                                            self.task, self.kinds, self.metric, self.spec_outputs,
                                            self.data.source)
        drop, how = accuracy_drop(ValidateResult(samples=len(self.data), task=self.task, fp32=fp32, int8=int8,
                                                 outputs=judgement.outputs, drop=judgement.drop, drop_how=judgement.how))
        l2 = max((o.relative_l2 for o in judgement.outputs), default=int8.relative_l2 or 0.0)
        return Score(drop=drop if drop is not None else 0.0, relative_l2=l2, how=how)


class LayerRow(BaseModel):
    node: str
    op_type: str
    rank: int
    drop_if_float: float  # drop with only this layer in float
    saved: float  # drop recovered by keeping only this layer in float
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


Quantizer = Callable[[list[str], Path], Path]  # (nodes kept in float, output path) -> INT8 model


def keep_sensitive_in_float(quantize: Quantizer, layers: list[tuple[str, str]], scorer: Scorer,
                            start: Score, budget: float, workdir: Path,
                            max_layers: int = 64, max_float: int | None = None) -> tuple[Fallback, Path | None]:
    """Rank `layers` (node name, op type) by leave-one-out sensitivity, then float them in rank
    order (at most `max_float`) until `scorer` says the drop is within `budget`. Returns the table and the best model
    (lowest drop; None if no trial beat `start`)."""
    trial = workdir / "trial.onnx"
    rows = []
    for node, op_type in layers[:max_layers]:
        score = scorer.score(quantize([node], trial))
        rows.append((start.drop - score.drop, start.relative_l2 - score.relative_l2, node, op_type, score.drop))
    rows.sort(key=lambda r: (-r[0], -r[1]))
    table = [LayerRow(node=n, op_type=o, rank=i + 1, drop_if_float=round(d, 6), saved=round(s, 6))
             for i, (s, _, n, o, d) in enumerate(rows)]
    best_drop, best_path, floated, best_floated = start.drop, None, [], []
    for row in table[:max_float]:
        floated.append(row.node)
        candidate = workdir / f"float{len(floated)}.onnx"
        score = scorer.score(quantize(list(floated), candidate))
        row.kept_float, row.drop_after = True, round(score.drop, 6)
        if score.drop < best_drop:
            if best_path is not None:
                best_path.unlink(missing_ok=True)
            best_drop, best_path, best_floated = score.drop, candidate, list(floated)
        else:
            candidate.unlink(missing_ok=True)
        if score.drop <= budget:
            break
    trial.unlink(missing_ok=True)
    for row in table:
        row.kept_float = row.node in best_floated
    result = Fallback(budget=budget, drop_before=start.drop, drop_after=best_drop, met=best_drop <= budget,
                      float_layers=best_floated, layers=table, trials=len(rows) + len(floated))
    return result, best_path
