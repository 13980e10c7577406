"""End to end: a static .pt2 and a three-output detector stage build for cpu and jetson, every
output validated, the gate reading the task metric; --precision and --metric through the CLI."""

import json

import numpy as np
import pytest
import torch

from conftest import build_json


class FaceHead(torch.nn.Module):
    """A face detector's output stage: box deltas (here decoded to boxes), landmarks, face probability."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.boxes, self.landmarks, self.score = torch.nn.Linear(16, 4 * 4), torch.nn.Linear(16, 4 * 10), torch.nn.Linear(16, 4)

    def forward(self, x):
        feature = torch.relu(self.conv(x)).mean(dim=(2, 3))
        raw = self.boxes(feature).view(-1, 4, 4)
        corner = torch.sigmoid(raw[..., :2]) * 50
        boxes = torch.cat([corner, corner + 10 + torch.sigmoid(raw[..., 2:]) * 40], dim=-1)
        return boxes, self.landmarks(feature).view(-1, 4, 10), torch.sigmoid(self.score(feature))


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    folder = tmp_path_factory.mktemp("det")
    torch.manual_seed(0)
    torch.export.save(torch.export.export(FaceHead().eval(), (torch.randn(1, 3, 16, 16),)), folder / "head.pt2")
    (folder / "metadata.json").write_text(json.dumps({"task": "detection", "outputs": [
        {"name": "boxes", "kind": "boxes"}, {"name": "landmarks", "kind": "regression"}, {"name": "scores", "kind": "scores"}]}))
    rng = np.random.default_rng(0)
    np.savez(folder / "calib.npz", x=rng.normal(size=(24, 3, 16, 16)).astype(np.float32))
    np.savez(folder / "eval.npz", x=rng.normal(size=(16, 3, 16, 16)).astype(np.float32))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("target", ["cpu", "jetson"])
def test_static_three_output_detector_builds_and_is_judged_per_output(detector, tmp_path, target):
    code, doc, stderr = build_json(str(detector / "head.pt2"), "--target", target, "--calib", str(detector / "calib.npz"),
                                   "--eval", str(detector / "eval.npz"), "--out", str(tmp_path / target),
                                   "--latency-seconds", "0.1", "--max-accuracy-drop", "1")
    assert code == 0, stderr
    rows = {o["name"]: o for o in doc["metrics"]["outputs"]}
    assert [rows[n]["kind"] for n in ("boxes", "landmarks", "scores")] == ["boxes", "regression", "scores"]
    assert rows["boxes"]["metric"] == "mAP@0.5 against FP32 detections" and 0 <= rows["boxes"]["candidate"] <= 1
    assert rows["landmarks"]["metric"] == "1 - relative error" and rows["scores"]["metric"] is None
    assert all(0.9 < rows[n]["cosine_mean"] <= 1.0 + 1e-6 for n in rows)
    gate = doc["gates"][0]
    worst = max((r for r in rows.values() if r["drop"] is not None), key=lambda r: r["drop"])
    assert gate["value"] == worst["drop"] and worst["name"] in gate["note"]
    assert "agreement" not in gate["note"] and doc["metrics"]["int8"]["agreement"] is None  # no argmax of boxes
    if target == "jetson":
        plan = json.loads((tmp_path / target / "build_plan.json").read_text())
        assert plan["inputs"][0]["min"] == plan["inputs"][0]["max"] == [1, 3, 16, 16]  # the program's own batch
        assert any("fixes batch 1" in note for note in plan["notes"])


@pytest.mark.slow
def test_fp16_for_jetson_and_a_user_metric_driving_the_gate(detector, tmp_path):
    metric = tmp_path / "metric.py"
    metric.write_text("import numpy as np\n"
                      "def landmark_score(fp32, cand, labels):\n"
                      "    return -float(np.abs(fp32['landmarks'] - cand['landmarks']).max())\n")
    code, doc, stderr = build_json(str(detector / "head.pt2"), "--target", "cpu", "--calib", str(detector / "calib.npz"),
                                   "--out", str(tmp_path / "m"), "--metric", f"{metric}:landmark_score",
                                   "--latency-seconds", "0.1", "--max-accuracy-drop", "1")
    assert code == 0, stderr
    rows = {o["name"]: o for o in doc["metrics"]["outputs"]}
    assert doc["gates"][0]["note"].startswith("user metric")
    assert doc["gates"][0]["value"] == pytest.approx(rows["landmarks"]["max_abs_error"], rel=1e-3)
    code, doc, stderr = build_json(str(detector / "head.pt2"), "--target", "jetson", "--precision", "fp16",
                                   "--calib", str(detector / "calib.npz"), "--out", str(tmp_path / "fp16"))
    assert code == 0, stderr
    assert "quantize" not in [s["name"] for s in doc["stages"]]
    assert "--fp16" in doc["engine"]["trtexec"] and "--int8" not in doc["engine"]["trtexec"]
    code, _, stderr = build_json(str(detector / "head.pt2"), "--target", "cpu-x86-avx2", "--precision", "fp16",
                                 "--calib", str(detector / "calib.npz"), "--out", str(tmp_path / "no"))
    assert code == 2 and "does not compute FP16 natively" in stderr
