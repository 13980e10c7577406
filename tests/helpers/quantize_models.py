"""Tiny ONNX models for the quantize-stage tests, built with onnx.helper (no torch, milliseconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from edgeopt.data.dataset import Dataset


def mlp(path: Path, *, outlier_input: bool, seed: int = 0, features: int = 16, hidden: int = 32,
        outlier_hidden: bool = False) -> Path:
    """x -> MatMul(fc1) -> Relu -> MatMul(fc2) -> Relu -> MatMul(fc3) -> logits (10 classes).

    With `outlier_input`, feature 0 of x carries values ~1000x the others and fc1 gives it a tiny
    weight: the FP32 model hardly uses it, but a per-tensor INT8 scale for x must cover it, which
    rounds every other feature to zero. fc1 is then the one layer that must stay in float.
    With `outlier_hidden`, hidden unit 0 is scaled the same way for fc2: two layers must stay float.
    """
    rng = np.random.default_rng(seed)
    w1 = rng.normal(0, 0.5, (features, hidden)).astype(np.float32)
    if outlier_input:
        w1[0] *= 1e-4
    w2 = rng.normal(0, 0.3, (hidden, hidden)).astype(np.float32)
    if outlier_hidden:
        w1[:, 0] *= 1000
        w2[0] *= 1e-3
    weights = {"w1": w1, "w2": w2,
               "w3": rng.normal(0, 0.3, (hidden, 10)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h1"], name="fc1"), helper.make_node("Relu", ["h1"], ["a1"], name="relu1"),
             helper.make_node("MatMul", ["a1", "w2"], ["h2"], name="fc2"), helper.make_node("Relu", ["h2"], ["a2"], name="relu2"),
             helper.make_node("MatMul", ["a2", "w3"], ["logits"], name="fc3")]
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", features])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
                              [numpy_helper.from_array(v, k) for k, v in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def mlp_data(count: int, seed: int, *, outlier_input: bool, features: int = 16) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1, (count, features)).astype(np.float32)
    if outlier_input:
        x[:, 0] = rng.uniform(-1000, 1000, count)
    return Dataset({"x": x}, None, Path(f"mlp-{seed}"))


def labelled_by(model: Path, data: Dataset) -> Dataset:
    """`data` with the FP32 model's own top-1 as labels (FP32 accuracy is then 100%)."""
    import onnxruntime as ort

    logits = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, data.inputs)[0]
    return Dataset(data.inputs, logits.argmax(axis=1).astype(np.int64), data.source)
