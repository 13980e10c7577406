"""Activation ranges: collected once with ONNX Runtime's calibrators, then reused by every
quantization pass of the stage (recipe candidates, accuracy-aware fallback trials), saved as
calibration.json, and turned into a TensorRT calibration cache for implicit-INT8 targets.

The ranges are stored in ONNX Runtime's own calibration-cache JSON (`save_tensors_data`), so
`quantize_static(calibration_cache_path=...)` replays them without running the model again.
"""

from __future__ import annotations

import json
import struct
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod
from onnxruntime.quantization.calibrate import TensorsData, create_calibrator, save_tensors_data

from edgeopt import progress
from edgeopt.backends.onnxruntime.session import quiet_tools
from edgeopt.backends.tensorrt.api import tensorrt_version_number
from edgeopt.data.dataset import Dataset

METHODS = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
           "percentile": CalibrationMethod.Percentile}
ORT_CACHE = "ort_calibration.json"  # ONNX Runtime's format, replayed by quantize_static


class Reader(CalibrationDataReader):
    """Feeds samples one at a time (batch 1: the shape the deployed model sees); rewindable."""

    def __init__(self, data: Dataset, input_names: set[str]):
        self._data = data
        self._names = input_names
        self._row = 0

    def get_next(self):
        if self._row >= len(self._data):
            return None
        row, self._row = self._row, self._row + 1
        progress.step(row + 1, len(self._data), "calibration samples")
        return {k: v for k, v in self._data.batch(row, row + 1).items() if k in self._names}

    def __len__(self) -> int:
        return len(self._data)

    def rewind(self) -> None:
        self._row = 0


def graph_input_names(model_path: Path) -> set[str]:
    return {i.name for i in onnx.load(str(model_path), load_external_data=False).graph.input}


def calibrate(model_path: Path, data: Dataset, method: str, op_types: list[str], cache_path: Path,
              *, symmetric: bool = False) -> dict[str, tuple[float, float]]:
    """Run the calibrator over `data`; write ONNX Runtime's range cache to `cache_path` and
    return {tensor: (min, max)} for the inputs and outputs of the `op_types` nodes."""
    options = {"symmetric": symmetric} if method == "minmax" else {}
    if method == "percentile":
        options = {"percentile": 99.999, "symmetric": symmetric}
    with tempfile.TemporaryDirectory(prefix="edgeopt-calib-") as scratch:
        calibrator = create_calibrator(model_path, op_types, augmented_model_path=str(Path(scratch) / "augmented.onnx"),
                                       calibrate_method=METHODS[method], extra_options=options)
        with quiet_tools():  # the histogram calibrators print progress
            calibrator.collect_data(Reader(data, graph_input_names(model_path)))
            tensors = calibrator.compute_data()
        del calibrator
    save_tensors_data(tensors, cache_path)
    return ranges_of(tensors)


def ranges_of(tensors: TensorsData) -> dict[str, tuple[float, float]]:
    return {name: (float(np.asarray(t.range_value[0]).min()), float(np.asarray(t.range_value[1]).max()))
            for name, t in tensors.data.items()}


def quantization_params(model: onnx.ModelProto) -> dict[str, dict]:
    """Per activation tensor: scale and zero point of its QuantizeLinear node (weights are stored
    already quantized and have none) and the float range they represent."""
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    params = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in constants:
            continue
        scale = constants[node.input[1]].astype(np.float64)
        zero = constants[node.input[2]] if len(node.input) > 2 else np.zeros((), np.uint8)
        info = np.iinfo(zero.dtype)
        params[node.input[0]] = {"scale": float(scale.max()), "zero_point": int(zero.max()), "dtype": str(zero.dtype),
                                 "min": float(((info.min - zero.astype(np.int64)) * scale).min()),
                                 "max": float(((info.max - zero.astype(np.int64)) * scale).max())}
    return params


def write_calibration_json(path: Path, method: str, samples: int, ranges: dict[str, tuple[float, float]],
                           model: onnx.ModelProto | None) -> dict:
    """calibration.json: every calibrated tensor's observed range and symmetric amax, plus the
    scale and zero point the INT8 model uses where that tensor is quantized."""
    quantized = quantization_params(model) if model is not None else {}
    tensors = {}
    for name, (low, high) in sorted(ranges.items()):
        amax = max(abs(low), abs(high))
        tensors[name] = {"min": low, "max": high, "amax": amax, "int8_symmetric_scale": amax / 127.0,
                         "quantized": quantized.get(name)}
    body = {"method": method, "samples": samples, "tensors": tensors}
    path.write_text(json.dumps(body, indent=2))
    return body


def write_tensorrt_cache(path: Path, ranges: dict[str, tuple[float, float]], tensorrt_version: str) -> None:
    """TensorRT's text calibration cache: a header line, then `name: <big-endian float32 hex>`
    with scale = amax / 127, the format IInt8EntropyCalibrator2 reads and writes."""
    lines = [f"TRT-{tensorrt_version_number(tensorrt_version)}-EntropyCalibration2"]
    for name, (low, high) in sorted(ranges.items()):
        scale = max(abs(low), abs(high), 1e-12) / 127.0
        lines.append(f"{name}: {struct.pack('>f', scale).hex()}")
    path.write_text("\n".join(lines) + "\n")


def read_tensorrt_cache(path: Path) -> tuple[str, dict[str, float]]:
    """(header, {tensor: scale}) of a TensorRT text calibration cache."""
    header, *rows = Path(path).read_text().splitlines()
    scales = {}
    for row in rows:
        name, _, value = row.rpartition(": ")
        scales[name] = struct.unpack(">f", bytes.fromhex(value.strip()))[0]
    return header, scales
