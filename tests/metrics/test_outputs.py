"""Every output judged by its kind; the drop the gate reads never argmaxes a non-class output."""

import numpy as np
import pytest

from edgeopt.errors import BadInput
from edgeopt.metrics.outputs import judge, load_user_metric

RNG = np.random.default_rng(0)


def _face_stage(n=32):
    """A face detector's output stage: box deltas, landmarks and a face probability."""
    boxes = np.concatenate([RNG.uniform(0, 50, (n, 5, 2)), RNG.uniform(60, 100, (n, 5, 2))], axis=2)
    return {"boxes": boxes.astype(np.float32), "landmarks": RNG.normal(size=(n, 5, 10)).astype(np.float32),
            "scores": RNG.uniform(0, 1, (n, 5)).astype(np.float32)}


KINDS = {"boxes": "boxes", "landmarks": "regression", "scores": "scores"}


def test_a_detector_stage_reports_every_output_and_gates_on_the_worst_task_metric():
    fp32 = _face_stage()
    candidate = {k: v.copy() for k, v in fp32.items()}
    candidate["landmarks"] += 0.001  # tiny regression error
    candidate["boxes"][:16, 0] += 30  # half the images lose their first box
    result = judge(fp32, candidate, None, KINDS)
    rows = {o.name: o for o in result.outputs}
    assert set(rows) == {"boxes", "landmarks", "scores"}
    assert rows["boxes"].metric == "mAP@0.5 against FP32 detections" and rows["boxes"].candidate < 0.95
    assert rows["landmarks"].metric == "1 - relative error" and rows["landmarks"].drop < 0.01
    assert rows["scores"].drop is None and rows["scores"].max_abs_error == 0  # fidelity only
    assert result.drop == rows["boxes"].drop and "boxes" in result.how and "mAP" in result.how


def test_identical_outputs_drop_nothing_and_no_argmax_on_unknown_outputs():
    fp32 = _face_stage()
    result = judge(fp32, fp32, None, {"boxes": "tensor", "landmarks": "tensor", "scores": "tensor"})
    assert result.drop is None and "no output has a task metric" in result.how
    assert all(o.cosine_min == pytest.approx(1.0) for o in result.outputs)


def test_dense_map_iou_and_classification_with_labels():
    prob = RNG.uniform(0, 1, (4, 1, 8, 8)).astype(np.float32)
    flipped = np.where(np.abs(prob - 0.5) < 0.1, 1 - prob, prob)
    row = judge({"map": prob}, {"map": flipped}, None, {"map": "dense_map"}).outputs[0]
    ref, cand = prob > 0.5, flipped > 0.5
    assert row.candidate == pytest.approx((ref & cand).sum() / (ref | cand).sum(), abs=1e-6)
    logits = RNG.normal(size=(50, 10)).astype(np.float32)
    labels = logits.argmax(1)
    noisy = logits.copy()
    noisy[:5] = noisy[:5, ::-1]
    result = judge({"y": logits}, {"y": noisy}, labels, {"y": "class_scores"})
    assert result.outputs[0].fp32 == 1.0 and result.drop == pytest.approx(1 - (noisy.argmax(1) == labels).mean())


def test_user_metric_drives_the_drop(tmp_path):
    file = tmp_path / "m.py"
    file.write_text("import numpy as np\n"
                    "def score(fp32, cand, labels):\n"
                    "    return -float(np.abs(fp32['y'] - cand['y']).mean())\n")
    metric = load_user_metric(f"{file}:score")
    y = np.ones((3, 2), np.float32)
    result = judge({"y": y}, {"y": y + 0.5}, None, {"y": "embedding"}, metric)
    assert result.drop == pytest.approx(0.5) and result.how.startswith("user metric")
    with pytest.raises(BadInput, match="has no function 'nope'"):
        load_user_metric(f"{file}:nope")
