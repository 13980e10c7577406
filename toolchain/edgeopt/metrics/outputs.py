"""Every output judged by what it holds: per output max abs error, relative L2 and cosine to FP32,
and per kind the metric users judge by. `judge` is the one function whose `drop` the gate and the
accuracy-aware fallback both read; an output is argmaxed only when it holds class scores.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Callable

import numpy as np
from pydantic import BaseModel

from edgeopt.errors import BadInput
from edgeopt.metrics import detection

DENSE_THRESHOLD = 0.5
UserMetric = Callable[[dict, dict, object], float]


class OutputMetrics(BaseModel):
    name: str
    kind: str
    max_abs_error: float
    relative_l2: float
    cosine_mean: float
    cosine_min: float
    metric: str | None = None  # the task metric of this output, e.g. "top-1 agreement"
    fp32: float | None = None  # its value for FP32 (against labels, or 1.0 against itself)
    candidate: float | None = None
    drop: float | None = None  # fp32 - candidate: what the gate reads (higher score is better)


class Judgement(BaseModel):
    outputs: list[OutputMetrics]
    drop: float | None
    how: str


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    denominator = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    value = (a * b).sum(axis=1) / np.where(denominator == 0, 1.0, denominator)
    return np.where(both_zero, 1.0, value)


def fidelity(name: str, kind: str, reference: np.ndarray, candidate: np.ndarray) -> OutputMetrics:
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    candidate = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    error = np.linalg.norm(candidate - reference, axis=1)
    norm = np.linalg.norm(reference, axis=1)
    cos = cosine(reference, candidate)
    return OutputMetrics(name=name, kind=kind, max_abs_error=float(np.abs(candidate - reference).max(initial=0.0)),
                         relative_l2=round(float((error / np.where(norm == 0, 1.0, norm)).mean()), 6),
                         cosine_mean=round(float(cos.mean()), 6), cosine_min=round(float(cos.min()), 6))


def _class_scores(row: OutputMetrics, reference: np.ndarray, candidate: np.ndarray, labels) -> None:
    ref = reference.reshape(len(reference), -1).argmax(axis=1)
    cand = candidate.reshape(len(candidate), -1).argmax(axis=1)
    if labels is not None and np.ndim(labels) == 1 and len(labels) == len(ref):
        row.metric, row.fp32, row.candidate = "top-1 accuracy", float((ref == labels).mean()), float((cand == labels).mean())
    else:
        row.metric, row.fp32, row.candidate = "top-1 agreement with FP32", 1.0, float((ref == cand).mean())


def _dense(row: OutputMetrics, reference: np.ndarray, candidate: np.ndarray) -> None:
    """Per-class logits (N, C>1, H, W): per-pixel argmax agreement; a probability map: IoU of the
    pixels above DENSE_THRESHOLD (both empty: 1)."""
    if reference.ndim == 4 and reference.shape[1] > 1:
        agree = (reference.argmax(axis=1) == candidate.argmax(axis=1)).mean()
        row.metric, row.fp32, row.candidate = "per-pixel class agreement with FP32", 1.0, float(agree)
        return
    ref, cand = reference > DENSE_THRESHOLD, candidate > DENSE_THRESHOLD
    union = (ref | cand).sum()
    iou = 1.0 if union == 0 else float((ref & cand).sum() / union)
    row.metric, row.fp32, row.candidate = f"IoU with FP32 at {DENSE_THRESHOLD}", 1.0, iou


def _regression(row: OutputMetrics, reference: np.ndarray, candidate: np.ndarray) -> None:
    scale = float(np.abs(reference).mean()) or 1.0
    relative = float(np.abs(candidate.astype(np.float64) - reference).mean() / scale)
    row.metric, row.fp32, row.candidate = "1 - relative error", 1.0, 1.0 - relative


_MEANING = {  # what the drop means, per metric (the wording the gate has always printed)
    "top-1 accuracy": "top-1 accuracy, FP32 minus INT8",
    "top-1 agreement with FP32": "no labels: share of samples whose top-1 differs from FP32",
    "cosine to FP32": "1 - mean cosine similarity to FP32",
    "1 - relative error": "mean relative error to FP32",
}


def judge(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], labels, kinds: dict[str, str],
          user_metric: UserMetric | None = None, detection_labels: list | None = None) -> Judgement:
    """Fidelity of every output and the task metric of each judged one. The drop is the worst
    output's (or the user metric's, when given: f(fp32, fp32) - f(fp32, candidate))."""
    rows = {name: fidelity(name, kinds.get(name, "tensor"), reference[name], candidate[name]) for name in reference}
    for name, row in rows.items():
        ref, cand = reference[name], candidate[name]
        if row.kind == "class_scores":
            _class_scores(row, ref, cand, labels)
        elif row.kind == "embedding":
            row.metric, row.fp32, row.candidate = "cosine to FP32", 1.0, row.cosine_mean
        elif row.kind == "dense_map":
            _dense(row, ref, cand)
        elif row.kind == "regression":
            _regression(row, ref, cand)
    boxes = [n for n, k in kinds.items() if k == "boxes" and n in rows]
    scores = [n for n, k in kinds.items() if k == "scores" and n in rows]
    if boxes and scores:
        ours = detection.decode(candidate[boxes[0]], candidate[scores[0]])
        theirs = detection.decode(reference[boxes[0]], reference[scores[0]])
        row = rows[boxes[0]]
        if detection_labels is not None:
            row.metric = "mAP@0.5 against labels"
            row.fp32 = detection.mean_average_precision(theirs, detection_labels)
            row.candidate = detection.mean_average_precision(ours, detection_labels)
        else:
            row.metric, row.fp32 = "mAP@0.5 against FP32 detections", 1.0
            row.candidate = detection.mean_average_precision(ours, detection.as_truth(theirs))
    for row in rows.values():
        if row.fp32 is not None:
            row.fp32, row.candidate = round(row.fp32, 6), round(row.candidate, 6)
            row.drop = round(row.fp32 - row.candidate, 6)
    outputs = list(rows.values())
    if user_metric is not None:
        base, score = float(user_metric(reference, reference, labels)), float(user_metric(reference, candidate, labels))
        return Judgement(outputs=outputs, drop=round(base - score, 6),
                         how=f"user metric: {base:.6g} for FP32, {score:.6g} for the candidate")
    judged = [row for row in outputs if row.drop is not None]
    if not judged:
        return Judgement(outputs=outputs, drop=None, how="no output has a task metric (set output kinds in metadata.json or --task)")
    worst = max(judged, key=lambda row: row.drop)
    how = _MEANING.get(worst.metric, f"{worst.metric}, FP32 minus candidate")
    return Judgement(outputs=outputs, drop=worst.drop, how=how if len(outputs) == 1 else f"output '{worst.name}': {how}")


def load_user_metric(reference: str) -> UserMetric:
    """`path/to/metric.py:function` -> the function (BadInput naming what is wrong)."""
    path, _, name = reference.rpartition(":")
    if not path or not name.isidentifier():
        raise BadInput(f"--metric {reference}: expected path/to/metric.py:function")
    file = Path(path)
    if not file.is_file():
        raise BadInput(f"--metric {reference}: {file} not found")
    spec = importlib.util.spec_from_file_location(f"edgeopt_user_metric_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: say where it broke
        raise BadInput(f"--metric {reference}: importing {file} failed ({type(exc).__name__}: {exc})") from None
    function = getattr(module, name, None)
    if not callable(function):
        raise BadInput(f"--metric {reference}: {file} has no function '{name}'")
    return function
