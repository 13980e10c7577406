"""Every output judged by what it holds (compare.py, shared with the device runner), typed: `judge`
is the one function whose `drop` the gate and the accuracy-aware fallback both read; an output is
argmaxed only when it holds class scores. Detection mAP comes from metrics/detection.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel

from edgeopt import compare
from edgeopt.errors import BadInput
from edgeopt.metrics import detection

UserMetric = compare.UserMetric
cosine = compare.cosine  # one cosine for every caller


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
    drop_ci95: list[float] | None = None  # paired-bootstrap 95% interval of the drop (top-1 outputs)


class Judgement(BaseModel):
    outputs: list[OutputMetrics]
    drop: float | None
    how: str
    drop_ci95: list[float] | None = None


def _detection(detection_labels: list | None) -> compare.Detection:
    """mAP@0.5 of the candidate's detections, against labels or against FP32's detections."""
    def score(reference: dict, candidate: dict, boxes: str, scores: str) -> tuple[str, float, float]:
        ours = detection.decode(candidate[boxes], candidate[scores])
        theirs = detection.decode(reference[boxes], reference[scores])
        if detection_labels is not None:
            return ("mAP@0.5 against labels", detection.mean_average_precision(theirs, detection_labels),
                    detection.mean_average_precision(ours, detection_labels))
        return "mAP@0.5 against FP32 detections", 1.0, detection.mean_average_precision(ours, detection.as_truth(theirs))

    return score


def judge(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], labels, kinds: dict[str, str],
          user_metric: UserMetric | None = None, detection_labels: list | None = None) -> Judgement:
    """compare.compare (the judging the device runner shares), typed."""
    return Judgement.model_validate(compare.compare(reference, candidate, labels, kinds, user_metric,
                                                    _detection(detection_labels)))


def load_user_metric(reference: str) -> UserMetric:
    """`path/to/metric.py:function` -> the function (BadInput naming what is wrong)."""
    path, _, name = reference.rpartition(":")
    if not path or not name.isidentifier():
        raise BadInput(f"--metric {reference}: expected path/to/metric.py:function")
    file = Path(path)
    if not file.is_file():
        raise BadInput(f"--metric {reference}: {file} not found")
    try:
        function = compare.load_metric(str(file), name)
    except ValueError as exc:
        raise BadInput(f"--metric {reference}: {exc}") from None

    def guarded(*args):
        """The user's function raising, or returning no number, is their input's fault (exit 2)."""
        try:
            return float(function(*args))
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code
            from edgeopt.errors import cause_text

            raise BadInput(f"--metric {reference}: the function raised {cause_text(exc, 200)}") from None

    return guarded
