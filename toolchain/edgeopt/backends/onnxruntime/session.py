"""ONNX Runtime sessions on the host CPU, shared by export parity, quantization, validation and bench."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from edgeopt.data.dataset import Dataset

_LEVELS = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def session(path: str | Path, threads: int | None = None, optimization: str = "all",
            optimized_output: Path | None = None, spinning: bool = True) -> ort.InferenceSession:
    """`spinning=False` when several sessions share the cores (the bench): idle threads of one
    session spin-waiting after its run stole the cores from the next (measured: 2x slower p50)."""
    options = ort.SessionOptions()
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = _LEVELS[optimization]
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if optimized_output is not None:
        options.optimized_model_filepath = str(optimized_output)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


@contextlib.contextmanager
def quiet_tools():
    """ONNX Runtime's quantization tools warn through the root logger and print progress and
    shape-inference notes (30 lines on a MiniLM build, none a user can act on); edgeopt's own
    output, and --json, stay its own. Also a decorator. The root level is restored after."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def exposing(model: onnx.ModelProto | str | Path, tensors, threads: int) -> ort.InferenceSession:
    """A session that also returns the intermediate `tensors` (as float outputs), optimizations
    off so they keep their names: for range, mean-input and sensitivity measurements."""
    model = onnx.load(str(model)) if isinstance(model, (str, Path)) else onnx.ModelProto.FromString(model.SerializeToString())
    known = {o.name for o in model.graph.output}
    model.graph.output.extend(helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None)
                              for t in dict.fromkeys(tensors) if t not in known)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def run_all(sess: ort.InferenceSession, data: Dataset, batch_size: int = 1) -> list[np.ndarray]:
    """Every output of the model over the whole dataset, concatenated along the sample axis, run
    `batch_size` samples at a time: 1 by default, the deployed batch, because a dynamically
    quantized model's outputs depend on the batch it runs in (its activation scales span the batch)."""
    names = {i.name for i in sess.get_inputs()}
    fixed = [i.shape[0] for i in sess.get_inputs() if i.shape and isinstance(i.shape[0], int)]
    batch_size = min(fixed) if fixed else batch_size  # a model exported with a static batch
    chunks: list[list[np.ndarray]] = []
    for start in range(0, len(data), batch_size):
        feed = {k: v for k, v in data.batch(start, start + batch_size).items() if k in names}
        chunks.append(sess.run(None, feed))
    return [np.concatenate([chunk[i] for chunk in chunks]) for i in range(len(chunks[0]))]
