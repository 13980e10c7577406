"""The one comparison of a candidate's outputs (INT8 ONNX, engine) with FP32's: every output's
fidelity (max abs error, relative L2, cosine), each output's task metric by its kind, and the one
drop the gate and the fallback read (the worst output's, or the user metric's).

numpy and the standard library only, Python >= 3.8: ONNX Runtime validation, engine validation
and the device runner (which ships this file beside run_on_device.py) all judge here, so a
multi-output model or a `--metric` gets the same verdict on the host and on the device.
metrics/outputs.py types the result; detection mAP is passed in (metrics/detection.py).
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

DENSE_THRESHOLD = 0.5
TASK_OUTPUT = {"classification": "class_scores", "embedding": "embedding", "regression": "regression",
               "dense": "dense_map", "detection": "boxes", "custom": "tensor"}
MEANING = {  # what the drop means, per metric (the wording the gate has always printed)
    "top-1 accuracy": "top-1 accuracy, FP32 minus INT8",
    "top-1 agreement with FP32": "no labels: share of samples whose top-1 differs from FP32",
    "cosine to FP32": "1 - mean cosine similarity to FP32",
    "1 - relative error": "mean relative error to FP32",
}
UserMetric = Callable[[dict, dict, Any], float]
# (reference, candidate, boxes output, scores output) -> (metric name, FP32 score, candidate score)
Detection = Callable[[dict, dict, str, str], Tuple[str, float, float]]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-sample cosine; two all-zero samples agree (1.0)."""
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    denominator = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = (np.linalg.norm(a, axis=1) == 0) & (np.linalg.norm(b, axis=1) == 0)
    value = (a * b).sum(axis=1) / np.where(denominator == 0, 1.0, denominator)
    return np.where(both_zero, 1.0, value)


def fidelity(name: str, kind: str, reference: np.ndarray, candidate: np.ndarray) -> Dict[str, Any]:
    reference = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    candidate = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    error = np.linalg.norm(candidate - reference, axis=1)
    norm = np.linalg.norm(reference, axis=1)
    cos = cosine(reference, candidate)
    return {"name": name, "kind": kind, "max_abs_error": float(np.abs(candidate - reference).max(initial=0.0)),
            "relative_l2": round(float((error / np.where(norm == 0, 1.0, norm)).mean()), 6),
            "cosine_mean": round(float(cos.mean()), 6), "cosine_min": round(float(cos.min()), 6),
            "metric": None, "fp32": None, "candidate": None, "drop": None, "drop_ci95": None}


def _labels_fit(labels: Any, count: int) -> bool:
    return labels is not None and np.ndim(labels) == 1 and len(labels) == count


def task_metric(kind: str, reference: np.ndarray, candidate: np.ndarray, labels: Any,
                cosine_mean: float) -> Optional[Tuple[str, float, float]]:
    """(metric, FP32 score, candidate score) of one output by its kind; None for a plain tensor."""
    if kind == "class_scores":
        ref = reference.reshape(len(reference), -1).argmax(axis=1)
        cand = candidate.reshape(len(candidate), -1).argmax(axis=1)
        if _labels_fit(labels, len(ref)):
            return "top-1 accuracy", float((ref == labels).mean()), float((cand == labels).mean())
        return "top-1 agreement with FP32", 1.0, float((ref == cand).mean())
    if kind == "embedding":
        return "cosine to FP32", 1.0, cosine_mean
    if kind == "dense_map":  # class logits (N, C>1, H, W): per-pixel argmax; a probability map: IoU
        if reference.ndim == 4 and reference.shape[1] > 1:
            return "per-pixel class agreement with FP32", 1.0, float((reference.argmax(1) == candidate.argmax(1)).mean())
        ref, cand = reference > DENSE_THRESHOLD, candidate > DENSE_THRESHOLD
        union = (ref | cand).sum()
        return "IoU with FP32 at {}".format(DENSE_THRESHOLD), 1.0, 1.0 if union == 0 else float((ref & cand).sum() / union)
    if kind == "regression":
        scale = float(np.abs(reference).mean()) or 1.0
        return "1 - relative error", 1.0, 1.0 - float(np.abs(candidate.astype(np.float64) - reference).mean() / scale)
    return None


def drop_interval(losses: np.ndarray, resamples: int = 1000, seed: int = 0) -> List[float]:
    """95% paired-bootstrap interval of a drop that is the mean of per-sample losses (FP32 right
    minus candidate right, or 1 for a changed top-1): resampling the samples keeps each pair
    together, so the interval shows whether a drop is the recipe's or a few samples' luck."""
    low, high = _bootstrap_interval(losses, resamples, seed)
    return [round(low, 6), round(high, 6)]


def _bootstrap_interval(values: Any, resamples: int, seed: int) -> Tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    rows = np.random.default_rng(seed).integers(0, len(values), (resamples, len(values)))
    means = values[rows].mean(axis=1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


FIDELITY_MEASURE = {  # per output kind: the label-free, per-sample loss the recipe choice compares
    "class_scores": "KL divergence of the softmax to FP32's",
    "embedding": "1 - cosine to FP32",
}
OTHER_MEASURE = "relative L2 error to FP32"


def _probabilities(values: np.ndarray) -> np.ndarray:
    """Rows already holding probabilities (non-negative, summing to 1) as they are, else softmax;
    one column: a sigmoid's (p, 1 - p)."""
    if values.shape[1] == 1:
        p = values if ((values >= 0) & (values <= 1)).all() else 1 / (1 + np.exp(-values))
        return np.concatenate([p, 1 - p], axis=1)
    if (values >= 0).all() and np.allclose(values.sum(axis=1), 1.0, atol=1e-3):
        return values
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def fidelity_losses(kind: str, reference: np.ndarray, candidate: np.ndarray) -> np.ndarray:
    """Per-sample loss of `candidate` against `reference` (0 = identical), continuous and
    label-free, by the output's kind (FIDELITY_MEASURE): a top-1 accuracy moves in steps of one
    sample, these move with every logit. KL(P_fp32 || P_candidate) for class scores, 1 - cosine
    for embeddings, relative L2 otherwise (regression, boxes, maps, plain tensors)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    cand = np.asarray(candidate, dtype=np.float64).reshape(len(candidate), -1)
    if kind == "class_scores":
        p, q = _probabilities(ref), _probabilities(cand)
        tiny = np.finfo(np.float64).tiny
        return np.maximum((p * (np.log(np.maximum(p, tiny)) - np.log(np.maximum(q, tiny)))).sum(axis=1), 0.0)
    if kind == "embedding":
        return 1.0 - cosine(ref, cand)
    norm = np.linalg.norm(ref, axis=1)
    return np.linalg.norm(cand - ref, axis=1) / np.where(norm == 0, 1.0, norm)


def paired_difference(losses_a: Any, losses_b: Any, resamples: int = 1000, seed: int = 0) -> Dict[str, Any]:
    """Mean per-sample loss difference a - b on the same samples and its 95% paired-bootstrap
    interval (samples resampled with their pair, as drop_interval): {"mean", "ci95": [low, high],
    "a_worse": low > 0, "b_worse": high < 0}. Neither worse: the two are equal within noise."""
    difference = np.asarray(losses_a, dtype=np.float64) - np.asarray(losses_b, dtype=np.float64)
    low, high = _bootstrap_interval(difference, resamples, seed) if len(difference) else (0.0, 0.0)
    return {"mean": float(difference.mean()) if len(difference) else 0.0, "ci95": [low, high],
            "a_worse": low > 0, "b_worse": high < 0}


def _top1_losses(reference: np.ndarray, candidate: np.ndarray, labels: Any) -> np.ndarray:
    ref = reference.reshape(len(reference), -1).argmax(axis=1)
    cand = candidate.reshape(len(candidate), -1).argmax(axis=1)
    if _labels_fit(labels, len(ref)):
        return (ref == labels).astype(np.int8) - (cand == labels).astype(np.int8)
    return (ref != cand).astype(np.int8)


def output_kinds(names: List[str], task: str, kinds: Optional[Dict[str, str]] = None,
                 spec_outputs: Optional[List[str]] = None) -> Dict[str, str]:
    """Kind of each output name the runtime reports: by name from `kinds`, else by position in
    the spec's outputs, else the task's kind for output 0 and 'tensor' for the rest."""
    kinds, spec_outputs = kinds or {}, spec_outputs or []
    result = {}
    for index, name in enumerate(names):
        by_position = spec_outputs[index] if index < len(spec_outputs) else None
        result[name] = kinds.get(name) or kinds.get(by_position) or (
            TASK_OUTPUT.get(task, "tensor") if index == 0 else "scores" if task == "detection" and index == 1 else "tensor")
    return result


def compare(reference: Dict[str, np.ndarray], candidate: Dict[str, np.ndarray], labels: Any, kinds: Dict[str, str],
            user_metric: Optional[UserMetric] = None, detection: Optional[Detection] = None) -> Dict[str, Any]:
    """{"outputs": one row per output, "drop": what the gate reads, "how": its meaning in words}.
    The drop is the worst judged output's (FP32 score minus candidate score), or, with a user
    metric, f(fp32, fp32) - f(fp32, candidate)."""
    rows = {}
    for name in reference:
        row = fidelity(name, kinds.get(name, "tensor"), reference[name], candidate[name])
        scored = task_metric(row["kind"], np.asarray(reference[name]), np.asarray(candidate[name]), labels,
                             row["cosine_mean"])
        if scored:
            row["metric"], row["fp32"], row["candidate"] = scored
        rows[name] = row
    boxes = [n for n, k in kinds.items() if k == "boxes" and n in rows]
    scores = [n for n, k in kinds.items() if k == "scores" and n in rows]
    if boxes and scores and detection is not None:
        rows[boxes[0]]["metric"], rows[boxes[0]]["fp32"], rows[boxes[0]]["candidate"] = detection(
            reference, candidate, boxes[0], scores[0])
    for name, row in rows.items():
        if row["fp32"] is not None:
            row["fp32"], row["candidate"] = round(row["fp32"], 6), round(row["candidate"], 6)
            row["drop"] = round(row["fp32"] - row["candidate"], 6)
        if row["kind"] == "class_scores" and len(reference[name]):
            row["drop_ci95"] = drop_interval(_top1_losses(np.asarray(reference[name]), np.asarray(candidate[name]), labels))
    outputs = list(rows.values())
    if user_metric is not None:
        base, score = float(user_metric(reference, reference, labels)), float(user_metric(reference, candidate, labels))
        return {"outputs": outputs, "drop": round(base - score, 6),
                "how": "user metric: {:.6g} for FP32, {:.6g} for the candidate".format(base, score)}
    judged = [row for row in outputs if row["drop"] is not None]
    if not judged:
        return {"outputs": outputs, "drop": None,
                "how": "no output has a task metric (set output kinds in metadata.json or --task)"}
    worst = max(judged, key=lambda row: row["drop"])
    how = MEANING.get(worst["metric"], "{}, FP32 minus candidate".format(worst["metric"]))
    return {"outputs": outputs, "drop": worst["drop"], "drop_ci95": worst.get("drop_ci95"),
            "how": how if len(outputs) == 1 else "output '{}': {}".format(worst["name"], how)}


def first_output(reference: np.ndarray, candidate: np.ndarray, labels: Any, classification: bool) -> Dict[str, Any]:
    """The summary fields of `--json`'s int8 block, from the first output: cosine, relative L2,
    max abs error and, for class scores, top-1 agreement and accuracy with labels."""
    cos = cosine(reference, candidate)
    flat_ref = reference.reshape(len(reference), -1)
    error = np.linalg.norm((candidate - reference).reshape(len(reference), -1), axis=1)
    norm = np.linalg.norm(flat_ref, axis=1)
    out = {"cosine_mean": round(float(cos.mean()), 6), "cosine_min": round(float(cos.min()), 6),
           "relative_l2": round(float((error / np.where(norm == 0, 1.0, norm)).mean()), 6),
           "max_abs_error": float(np.abs(candidate - reference).max())}  # type: Dict[str, Any]
    if classification:
        ref_top1, cand_top1 = flat_ref.argmax(axis=1), candidate.reshape(len(candidate), -1).argmax(axis=1)
        out["agreement"] = round(float((ref_top1 == cand_top1).mean()), 6)
        if labels is not None:
            out["fp32_accuracy"] = round(float((ref_top1 == labels).mean()), 6)
            out["accuracy"] = round(float((cand_top1 == labels).mean()), 6)
    return out


def load_metric(path: str, name: str) -> UserMetric:
    """The function `name` of the Python file `path` (a user's --metric). Raises ValueError with
    the reason; callers word it for their user."""
    spec = importlib.util.spec_from_file_location("edgeopt_user_metric", path)
    if spec is None or spec.loader is None:
        raise ValueError("{} is not a Python file".format(path))
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the user's file: say where it broke
        raise ValueError("importing {} failed ({}: {})".format(path, type(exc).__name__, exc)) from None
    function = getattr(module, name, None)
    if not callable(function):
        raise ValueError("{} has no function '{}'".format(path, name))
    return function
