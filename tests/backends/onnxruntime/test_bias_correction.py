"""Bias correction (backends/onnxruntime/bias_correction.py) on a depthwise-separable conv net whose
folded BatchNorm left large weights and biases that nearly cancel, as in EfficientNet-Lite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeopt import targets
from edgeopt.backends.onnxruntime import bias_correction
from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.data.dataset import Dataset
from edgeopt.stages import calibration
from edgeopt.stages.quantize import COMPUTE_OPS, PASS_THROUGH_OPS, _Recipe


def separable(path: Path, seed: int = 0) -> Path:
    """image -> Conv 3x3 (8) -> Clip 0..6 -> depthwise 3x3 -> Clip -> Conv 1x1 (16) -> output.
    The pointwise conv's weights are large and its bias cancels their mean response."""
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (8, 3, 3, 3))
    wd = rng.normal(0.3, 0.6, (8, 1, 3, 3))
    wp = rng.normal(0, 1, (16, 8, 1, 1)) * rng.uniform(5, 20, (16, 1, 1, 1))
    bp = -(wp[:, :, 0, 0] @ np.full(8, 2.0))
    arrays = {"w1": w1, "b1": rng.normal(1, 0.2, 8), "wd": wd, "bd": rng.normal(0.5, 0.2, 8), "wp": wp, "bp": bp,
              "lo": np.array(0.0), "hi": np.array(6.0)}
    nodes = [helper.make_node("Conv", ["image", "w1", "b1"], ["c1"], name="conv1", pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["c1", "lo", "hi"], ["a1"], name="clip1"),
             helper.make_node("Conv", ["a1", "wd", "bd"], ["c2"], name="dw", group=8, pads=[0, 0, 1, 1], strides=[2, 2]),
             helper.make_node("Clip", ["c2", "lo", "hi"], ["a2"], name="clip2"),
             helper.make_node("Conv", ["a2", "wp", "bp"], ["output"], name="pw")]
    graph = helper.make_graph(nodes, "separable", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 16, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 16, 8, 8])],
                              [numpy_helper.from_array(v.astype(np.float32), k) for k, v in arrays.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def images(count: int, seed: int) -> Dataset:
    x = np.random.default_rng(seed).uniform(-1, 1, (count, 3, 16, 16)).astype(np.float32)
    return Dataset({"image": x}, None, Path(f"images-{seed}"))


def _output(path: Path, data: Dataset) -> np.ndarray:
    return runtime.run_all(runtime.session(path, threads=1), data)[0]


def test_bias_correction_removes_the_mean_shift_and_touches_only_biases(tmp_path):
    fp32, calib, evaluation = separable(tmp_path / "fp32.onnx"), images(32, 1), images(32, 2)
    cache = tmp_path / "ranges.json"
    ops = COMPUTE_OPS + PASS_THROUGH_OPS
    calibration.calibrate(fp32, calib, "minmax", ops, cache)
    target = targets.resolve("cpu-x86-avx512")
    build_from = lambda path: _Recipe(path, target, cache, "minmax", ops).static  # noqa: E731
    plain = build_from(fp32)([], tmp_path / "plain.onnx")
    corrected = bias_correction.BiasCorrectedStatic(fp32, build_from, calib, tmp_path)
    int8 = corrected([], tmp_path / "corrected.onnx")

    reference = _output(fp32, evaluation)
    shift = {name: np.abs((_output(p, evaluation) - reference).mean((0, 2, 3))).mean() for name, p in
             (("plain", plain), ("corrected", int8))}
    assert shift["corrected"] < shift["plain"] / 3  # the per-channel mean error mostly goes
    error = {name: np.abs(_output(p, evaluation) - reference).mean() for name, p in (("plain", plain), ("corrected", int8))}
    assert error["corrected"] < error["plain"]

    before = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(fp32)).graph.initializer}
    after = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(corrected.corrected)).graph.initializer}
    moved = {name for name in before if not np.array_equal(before[name], after[name])}
    assert moved and moved <= {"b1", "bd", "bp"}  # weights untouched

    # a layer the fallback keeps in float gets its own bias back
    kept = corrected(["pw"], tmp_path / "pw_float.onnx")
    biases = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(tmp_path / "bias.trial.onnx")).graph.initializer}
    assert np.array_equal(biases["bp"], before["bp"]) and kept.exists()


def test_mean_input_patch_counts_zero_padding_and_stride():
    node = helper.make_node("Conv", ["x", "w"], ["y"], pads=[0, 0, 1, 1], strides=[2, 2])
    x = np.ones((1, 1, 4, 4), np.float32)
    patch = bias_correction._patch_mean(x, node, (3, 3))
    # outputs at rows/cols 0 and 2; the kernel's last row/column reads the zero pad for output 2
    assert patch.shape == (1, 3, 3) and patch[0, 0, 0] == 1.0 and patch[0, 2, 2] == 0.25 and patch[0, 0, 2] == 0.5
