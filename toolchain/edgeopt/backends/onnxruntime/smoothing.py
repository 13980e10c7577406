"""SmoothQuant-style migration (Xiao et al., 2023) for ONNX graphs: divide each activation channel
that feeds weighted MatMuls by s_j and multiply the weights' row j by s_j, so the per-tensor INT8
scale of the activation no longer has to cover a few outlier channels. Exact in float.

s_j = max|X_j|^alpha / max|W_j|^(1 - alpha) from calibration activations. The 1/s goes into one
Mul per smoothed tensor (shared by all its MatMul consumers); ONNX Runtime's quantizer then
quantizes the MatMuls as usual. Neural Compressor has SmoothQuant for ORT too, but pulls a large
dependency tree for this one transformation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.data.dataset import Dataset


def weighted_matmul_inputs(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    """{activation tensor: MatMul nodes that multiply it by a 2-D constant weight}."""
    constants = {init.name: init for init in model.graph.initializer}
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in constants and len(constants[node.input[1]].dims) == 2 \
                and node.input[0] not in constants:
            found.setdefault(node.input[0], []).append(node)
    return found


def channel_maxima(model_path: Path, tensors: list[str], data: Dataset, threads: int = 2) -> dict[str, np.ndarray]:
    """Per-channel (last axis) max |x| of `tensors` over every sample and token of `data`."""
    session = runtime.exposing(model_path, tensors, threads)
    names = {i.name for i in session.get_inputs()}
    maxima: dict[str, np.ndarray] = {}
    for start in range(0, len(data), 16):
        feed = {k: v for k, v in data.batch(start, start + 16).items() if k in names}
        for name, value in zip(tensors, session.run(tensors, feed)):
            value = np.abs(value).reshape(-1, value.shape[-1]).max(0)
            maxima[name] = value if name not in maxima else np.maximum(maxima[name], value)
    return maxima


def smooth(model_path: Path, data: Dataset, out: Path, *, alpha: float = 0.5, min_ratio: float = 4.0,
           only: set[str] | None = None, threads: int = 2) -> tuple[Path, list[str]]:
    """Write the smoothed model to `out`; returns it and the smoothed tensors. A tensor is smoothed
    only where its channel maxima are uneven (max/median >= `min_ratio`): elsewhere the Mul costs
    time and buys nothing. `only`: restrict to these MatMul node names."""
    model = onnx.load(str(model_path))
    consumers = weighted_matmul_inputs(model)
    if only is not None:
        consumers = {t: ns for t, ns in consumers.items() if any(n.name in only for n in ns)}
    maxima = channel_maxima(model_path, list(consumers), data, threads)
    constants = {init.name: init for init in model.graph.initializer}
    smoothed = []
    for tensor, nodes in consumers.items():
        act = np.maximum(maxima[tensor], 1e-5)
        if act.max() / np.median(act) < min_ratio:
            continue
        weights = {n.input[1]: numpy_helper.to_array(constants[n.input[1]]) for n in nodes}
        if len({w.shape[0] for w in weights.values()}) != 1 or act.shape[0] != next(iter(weights.values())).shape[0]:
            continue
        wmax = np.maximum(np.max([np.abs(w).max(1) for w in weights.values()], axis=0), 1e-5)
        scale = (act ** alpha / wmax ** (1 - alpha)).astype(np.float32)
        scale = np.clip(scale, 1e-2, 1e4)
        for name, w in weights.items():
            constants[name].CopyFrom(numpy_helper.from_array((w * scale[:, None]).astype(np.float32), name))
        inverse, scaled = f"{tensor}_smooth_inv", f"{tensor}_smoothed"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / scale).astype(np.float32), inverse))
        mul = helper.make_node("Mul", [tensor, inverse], [scaled], name=f"{tensor}_smooth")
        for node in nodes:
            node.input[0] = scaled
        position = min(list(model.graph.node).index(n) for n in nodes)
        model.graph.node.insert(position, mul)
        smoothed.append(tensor)
    onnx.save(model, str(out))
    return out, smoothed
