"""Quantize stage: FP32 ONNX + calibration data -> INT8 ONNX with explicit Q/DQ, and its ranges.

Uses ONNX Runtime's static quantizer (the maintained implementation) with a recipe per backend:
- onnxruntime CPU targets: u8 activations / s8 per-channel weights (MLAS u8s8 kernels), 7-bit
  weights where the profile asks for reduce_range (AVX2 VPMADDUBSW saturation).
- tensorrt targets: symmetric s8 activations and weights (TensorRT only takes symmetric INT8),
  Q/DQ only on the inputs of Conv, Gemm and MatMul, as TensorRT's explicit quantization expects.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                      QuantType, quantize_static)
from onnxruntime.quantization.shape_inference import quant_pre_process
from pydantic import BaseModel

from edgeopt.data.dataset import Dataset
from edgeopt.targets import TargetProfile

COMPUTE_OPS = ["Conv", "Gemm", "MatMul"]
METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}


class QuantizeResult(BaseModel):
    method: str
    recipe: str
    calibration_samples: int
    quantized_nodes: int
    activation_type: str
    weight_type: str
    per_channel: bool


class _Reader(CalibrationDataReader):
    """Feeds calibration samples one at a time (batch 1, the shape the deployed model sees)."""

    def __init__(self, data: Dataset, input_names: set[str]):
        self._rows = iter(range(len(data)))
        self._data = data
        self._names = input_names

    def get_next(self):
        row = next(self._rows, None)
        if row is None:
            return None
        return {k: v for k, v in self._data.batch(row, row + 1).items() if k in self._names}


def quantize(fp32_path: Path, calib: Dataset, target: TargetProfile, out_dir: Path,
             method: str = "minmax") -> QuantizeResult:
    """Write `model.int8.onnx` and `calibration.json` into `out_dir`."""
    prepared = out_dir / "model.prep.onnx"
    quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
    for_tensorrt = target.backend == "tensorrt"
    activation = QuantType.QInt8 if for_tensorrt or target.build.activation_type == "int8" else QuantType.QUInt8
    input_names = {i.name for i in onnx.load(str(prepared), load_external_data=False).graph.input}
    output = out_dir / "model.int8.onnx"
    quantize_static(
        str(prepared), str(output), _Reader(calib, input_names),
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=COMPUTE_OPS if for_tensorrt else None,
        per_channel=True,
        reduce_range=target.build.reduce_range,
        activation_type=activation,
        weight_type=QuantType.QInt8,
        calibrate_method=METHODS[method],
        extra_options={"ActivationSymmetric": for_tensorrt, "WeightSymmetric": True},
    )
    prepared.unlink()
    model = onnx.load(str(output))
    ranges = activation_ranges(model)
    (out_dir / "calibration.json").write_text(json.dumps({"method": method, "ranges": ranges}, indent=2))
    return QuantizeResult(
        method=method,
        recipe="tensorrt-explicit-qdq" if for_tensorrt else "onnxruntime-static-qdq",
        calibration_samples=len(calib),
        quantized_nodes=sum(1 for n in model.graph.node if n.op_type == "QuantizeLinear"),
        activation_type="int8" if activation == QuantType.QInt8 else "uint8",
        weight_type="int8",
        per_channel=True,
    )


def activation_ranges(model: onnx.ModelProto) -> dict[str, dict]:
    """Per activation tensor: scale, zero point and the float range they represent, read from the
    model's QuantizeLinear nodes (weights are stored already quantized and have none)."""
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    ranges = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants:
            continue
        scale = constants[node.input[1]].astype(np.float64)
        zero = constants[node.input[2]] if len(node.input) > 2 else np.zeros((), np.uint8)
        info = np.iinfo(zero.dtype)
        low = float(((info.min - zero.astype(np.int64)) * scale).min())
        high = float(((info.max - zero.astype(np.int64)) * scale).max())
        ranges[node.input[0]] = {"scale": float(scale.max()), "zero_point": int(zero.max()),
                                 "dtype": str(zero.dtype), "min": low, "max": high}
    return ranges
