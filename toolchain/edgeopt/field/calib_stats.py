"""Calibration statistics that travel with an INT8 build: per quantized activation, the range
its QuantizeLinear can represent (read from the artifact's own scale and zero point, so it is the
range as deployed, whatever recipe chose it) and a compact histogram of the calibration data over
that range (64 bins plus below/above counts: under 1 kB of JSON per tensor).

The histograms are measured on the Q/DQ ONNX itself with those activations exposed as outputs
(field/monitor.py `exposing`), exactly as the field monitor measures on the device. Not on the
FP32 ONNX: the Q/DQ graph's tensors are the quantizer's own (a graph output's QuantizeLinear
input, a SmoothQuant-scaled activation exist only there), they carry the upstream quantization
error as deployed, and a GPU package ships the Q/DQ ONNX already (no second model to ship).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from pydantic import BaseModel
from onnx import numpy_helper

from edgeopt.build_dir import LAYOUT, Artifact, write_json_atomic
from edgeopt.data.dataset import Dataset
from edgeopt.field import monitor

BINS = 64
RANGES = {onnx.TensorProto.UINT8: (0, 255), onnx.TensorProto.INT8: (-128, 127),
          onnx.TensorProto.UINT16: (0, 65535), onnx.TensorProto.INT16: (-32768, 32767)}


def quantized_activations(model: onnx.ModelProto) -> dict[str, dict]:
    """Every activation a QuantizeLinear quantizes with one scale (weights are initializers, skipped):
    name -> its representable range, scale and zero point."""
    init = {i.name: i for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type != "QuantizeLinear" or node.input[0] in init or node.input[1] not in init:
            continue
        scale = numpy_helper.to_array(init[node.input[1]]).astype(np.float64)
        zp_init = init.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if scale.size != 1 or (len(node.input) > 2 and node.input[2] and zp_init is None):
            continue  # per-channel, or a computed zero point: not a static per-tensor range
        zero = int(numpy_helper.to_array(zp_init).ravel()[0]) if zp_init is not None else 0
        qmin, qmax = RANGES.get(zp_init.data_type if zp_init is not None else onnx.TensorProto.UINT8, (0, 255))
        s = float(scale.ravel()[0])
        found[node.input[0]] = {"low": (qmin - zero) * s, "high": (qmax - zero) * s, "scale": s, "zero_point": zero,
                                "bins": BINS}
    return found


def activation_bounds(fp32: onnx.ModelProto, names: list[str]) -> dict[str, list]:
    """name -> [low, high] (None: unbounded) where the FP32 graph computes the tensor with a Relu or
    Clip: ONNX Runtime's quantizer folds such an activation into the QuantizeLinear (the Q/DQ graph's
    tensor is then the value before it), so values beyond the activation's own bounds are the
    activation doing its work (ReLU6 above 6), not clipping; the monitor applies them first."""
    consts = {i.name: numpy_helper.to_array(i) for i in fp32.graph.initializer}
    for node in fp32.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            consts[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    producer = {out: node for node in fp32.graph.node for out in node.output}
    bounds = {}
    for name in names:
        node = producer.get(name)
        if node is None or node.op_type not in ("Relu", "Clip"):
            continue
        if node.op_type == "Relu":
            bounds[name] = [0.0, None]
            continue
        attrs = {a.name: a.f for a in node.attribute}
        value = lambda i, key: (float(consts[node.input[i]].ravel()[0]) if len(node.input) > i and node.input[i] in consts  # noqa: E731
                                else attrs.get(key))
        bounds[name] = [value(1, "min"), value(2, "max")]
    return bounds


def measure(int8: Path, data: Dataset, folder: Path, sha256: str = "", fp32: Path | None = None) -> dict:
    """Write calib_stats.json into `folder`; returns the document."""
    tensors = quantized_activations(onnx.load(str(int8), load_external_data=False))
    if fp32 is not None and tensors:
        for name, bound in activation_bounds(onnx.load(str(fp32), load_external_data=False), list(tensors)).items():
            tensors[name]["activation"] = bound
    stats = {"schema_version": monitor.SCHEMA_VERSION, "kind": "calib_stats", "bins": BINS, "model_sha256": sha256,
             "samples": len(data), "calibration_sha256": data.sha256, "tensors": tensors}
    if not tensors:  # dynamic INT8: ranges are computed per input, nothing is calibrated and nothing clips
        stats["note"] = "no statically quantized activation (dynamic INT8): no calibrated range to monitor"
        write_json_atomic(Path(folder) / LAYOUT.calib_stats, stats)
        return stats
    for tensor in tensors.values():
        tensor["histogram"] = [0] * (BINS + 2)
    observer = monitor.FieldMonitor(str(int8), stats, rate=1.0)
    for row in range(len(data)):
        observer.record(data.batch(row, row + 1))  # batch 1, as deployed
    for name in observer.names:
        tensors[name]["histogram"] = [int(c) for c in observer.field[name]]
        tensors[name]["calibration_saturation"] = round(monitor.saturation(tensors[name]["histogram"], tensors[name]["low"]), 8)
    for name in observer.missing:  # not a graph tensor ORT can return: no histogram, no monitoring
        tensors.pop(name)
    stats["tensors"] = tensors
    write_json_atomic(Path(folder) / LAYOUT.calib_stats, stats)
    return stats


class CalibStatsResult(BaseModel):
    tensors: int
    samples: int
    bytes: int


class CalibStatsStage:
    """CalibStatsFromInt8Onnx: the quantized tensors' ranges from the artifact, histograms from the calibration sample."""

    name = "calib_stats"
    writes = (LAYOUT.calib_stats,)

    def __init__(self, int8: Artifact, calib: Dataset, fp32: Artifact | None = None):
        self.int8, self.calib, self.fp32 = int8, calib, fp32
        self.reads = (int8.name,) + ((fp32.name,) if fp32 else ())

    def params(self) -> dict:
        return {"bins": BINS, "max_values": monitor.MAX_VALUES, "batch": 1}

    def inputs(self) -> dict:
        return {"onnx_int8": self.int8.sha256, "calib": self.calib.sha256, "onnx_fp32": self.fp32.sha256 if self.fp32 else None}

    def run(self, folder: Path) -> CalibStatsResult:
        stats = measure(self.int8.path, self.calib, folder, self.int8.sha256, self.fp32.path if self.fp32 else None)
        return CalibStatsResult(tensors=len(stats["tensors"]), samples=stats["samples"],
                                bytes=(Path(folder) / LAYOUT.calib_stats).stat().st_size)
