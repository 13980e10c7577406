"""Detection fidelity: mAP@0.5 of a candidate's detections against reference detections (FP32's,
or ground-truth labels read from COCO-style JSON or YOLO text files).

Written here rather than taken from pycocotools/torchmetrics: both are heavy (torchmetrics pulls
in lightning-utilities, pycocotools a C build) for one all-point-interpolated AP at a single IoU;
tests/metrics/test_detection.py checks it against hand-computed cases.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeopt.errors import BadInput

SCORE_THRESHOLD = 0.25  # detections below this are not reported (the usual deployment default)
IOU_THRESHOLD = 0.5

Detections = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per image: boxes (K, 4) xyxy, scores (K,), classes (K,)


def decode(boxes: np.ndarray, scores: np.ndarray, threshold: float = SCORE_THRESHOLD) -> Detections:
    """Per-image detections from batched outputs: boxes (N, K, 4) and scores (N, K) (one class)
    or (N, K, C) (class = argmax). Boxes are x1, y1, x2, y2."""
    if boxes.ndim != 3 or boxes.shape[-1] != 4:
        raise BadInput(f"detection boxes must have shape (batch, detections, 4), got {boxes.shape}")
    if scores.ndim == 2:
        classes, best = np.zeros(scores.shape, dtype=np.int64), scores
    elif scores.ndim == 3:
        classes, best = scores.argmax(axis=2), scores.max(axis=2)
    else:
        raise BadInput(f"detection scores must have shape (batch, detections[, classes]), got {scores.shape}")
    if best.shape[:2] != boxes.shape[:2]:
        raise BadInput(f"detection scores {scores.shape} do not match boxes {boxes.shape}")
    result = []
    for image in range(len(boxes)):
        keep = best[image] >= threshold
        result.append((boxes[image][keep], best[image][keep], classes[image][keep]))
    return result


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of xyxy boxes a (M, 4) and b (K, 4)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def mean_average_precision(predictions: Detections, truth: list[tuple[np.ndarray, np.ndarray]],
                           iou: float = IOU_THRESHOLD) -> float:
    """mAP at one IoU over the classes present in `truth` (per image: boxes, classes), all-point
    interpolation (VOC 2010+/COCO style). No truth and no predictions anywhere: 1.0 (nothing missed)."""
    classes = sorted({int(c) for _, cls in truth for c in cls} | {int(c) for _, _, cls in predictions for c in cls})
    if not classes:
        return 1.0
    aps = []
    for cls in classes:
        n_truth = sum(int((c == cls).sum()) for _, c in truth)
        rows = []  # (score, image, box)
        for image, (boxes, scores, labels) in enumerate(predictions):
            for box, score in zip(boxes[labels == cls], scores[labels == cls]):
                rows.append((float(score), image, box))
        rows.sort(key=lambda r: -r[0])
        used = [np.zeros(int((c == cls).sum()), dtype=bool) for _, c in truth]
        hits = []
        for _, image, box in rows:
            gt = truth[image][0][truth[image][1] == cls]
            if len(gt) == 0:
                hits.append(False)
                continue
            overlaps = iou_matrix(box[None], gt)[0]
            overlaps[used[image]] = -1
            best = int(overlaps.argmax())
            hit = overlaps[best] >= iou
            if hit:
                used[image][best] = True
            hits.append(bool(hit))
        if n_truth == 0:
            aps.append(0.0)  # only false positives for this class
            continue
        tp = np.cumsum(hits, dtype=np.float64)
        recall = np.concatenate([[0.0], tp / n_truth, [1.0]])
        precision = np.concatenate([[1.0], tp / np.arange(1, len(hits) + 1), [0.0]]) if hits else np.array([1.0, 0.0])
        if not hits:
            recall = np.array([0.0, 1.0])
        precision = np.maximum.accumulate(precision[::-1])[::-1]
        aps.append(float(np.sum(np.diff(recall) * precision[1:])))
    return float(np.mean(aps))


def read_labels(path: Path, count: int, image_size: tuple[int, int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Ground truth for `count` images, in sample order: a COCO-style JSON file (images sorted by
    id, bbox x, y, w, h in pixels) or a folder of YOLO text files (sorted by name; class cx cy w h,
    normalised to `image_size` = (height, width))."""
    height, width = image_size
    if path.is_dir():
        files = sorted(path.glob("*.txt"))
        if len(files) != count:
            raise BadInput(f"{path}: {len(files)} YOLO label files for {count} samples")
        result = []
        for file in files:
            rows = np.loadtxt(file, ndmin=2) if file.stat().st_size else np.zeros((0, 5))
            if rows.shape[1] != 5:
                raise BadInput(f"{file}: YOLO lines need 5 numbers (class cx cy w h), found {rows.shape[1]}")
            cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
            boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
            result.append((boxes, rows[:, 0].astype(np.int64)))
        return result
    try:
        coco = json.loads(path.read_text())
        ids = sorted(image["id"] for image in coco["images"])
        annotations = coco.get("annotations", [])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BadInput(f"{path}: not COCO-style JSON with 'images' and 'annotations' ({exc})") from None
    if len(ids) != count:
        raise BadInput(f"{path}: {len(ids)} images for {count} samples")
    per_image = {image_id: ([], []) for image_id in ids}
    for item in annotations:
        x, y, w, h = item["bbox"]
        per_image[item["image_id"]][0].append([x, y, x + w, y + h])
        per_image[item["image_id"]][1].append(item["category_id"])
    return [(np.array(b, dtype=np.float64).reshape(-1, 4), np.array(c, dtype=np.int64)) for b, c in per_image.values()]


def as_truth(detections: Detections) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(boxes, classes) for boxes, _, classes in detections]
