"""mAP@0.5 on hand-computed cases, and the two label formats."""

import json

import numpy as np
import pytest

from edgeopt.errors import BadInput
from edgeopt.metrics import detection


def _truth(*boxes, cls=0):
    return np.array(boxes, dtype=float).reshape(-1, 4), np.full(len(boxes), cls)


def test_identical_detections_score_one_and_a_shifted_box_scores_lower():
    truth = [_truth([0, 0, 10, 10], [20, 20, 30, 30])]
    same = [(truth[0][0], np.array([0.9, 0.8]), truth[0][1])]
    assert detection.mean_average_precision(same, truth) == pytest.approx(1.0)
    # second box moved by 6 px: IoU 16/184 < 0.5, a false positive, one of two found at precision 1
    moved = [(np.array([[0, 0, 10, 10], [26, 26, 36, 36]], float), np.array([0.9, 0.8]), np.array([0, 0]))]
    assert detection.mean_average_precision(moved, truth) == pytest.approx(0.5)


def test_ranking_matters_a_high_scoring_false_positive_costs_precision():
    truth = [_truth([0, 0, 10, 10])]
    preds = [(np.array([[50, 50, 60, 60], [0, 0, 10, 10]], float), np.array([0.9, 0.5]), np.array([0, 0]))]
    # recall reaches 1 at the second detection with precision 1/2
    assert detection.mean_average_precision(preds, truth) == pytest.approx(0.5)


def test_decode_takes_argmax_class_and_drops_low_scores():
    boxes = np.array([[[0, 0, 1, 1], [0, 0, 2, 2]]], float)
    scores = np.array([[[0.1, 0.7], [0.2, 0.1]]])
    (b, s, c), = detection.decode(boxes, scores)
    assert b.tolist() == [[0, 0, 1, 1]] and s.tolist() == [0.7] and c.tolist() == [1]
    with pytest.raises(BadInput):
        detection.decode(boxes[..., :3], scores)


def test_yolo_and_coco_labels_give_the_same_boxes(tmp_path):
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "a.txt").write_text("2 0.5 0.5 0.25 0.5\n")
    (yolo / "b.txt").write_text("")
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [{"id": 7}, {"id": 3}],
                                "annotations": [{"image_id": 3, "bbox": [12, 8, 8, 8], "category_id": 2}]}))
    from_yolo = detection.read_labels(yolo, 2, (16, 32))
    from_coco = detection.read_labels(coco, 2, (16, 32))
    assert from_yolo[0][0].tolist() == [[12, 4, 20, 12]] and from_yolo[0][1].tolist() == [2]
    assert from_coco[0][0].tolist() == [[12, 8, 20, 16]] and len(from_coco[1][0]) == 0
    with pytest.raises(BadInput, match="2 YOLO label files for 3 samples"):
        detection.read_labels(yolo, 3, (16, 32))
