"""backends/tensorrt/layers.py: the layer report of a serialized engine (deserialized through the
TensorRT module it is given, read by device_runtime's inspector) and the summary's one line."""

from __future__ import annotations

import types

from helpers.fake_device import FakeCuda, with_engine
from helpers.fake_tensorrt import FakeTensorRT

from edgeopt.backends.tensorrt.layers import layer_note, layer_report


def _trt() -> FakeTensorRT:
    trt = with_engine(FakeTensorRT("10", "10.3.0.30"), FakeCuda(), {"x": ((1, 1, 8, 8), (8, 1, 8, 8))}, ["y"],
                      lambda inputs: {"y": inputs["x"]})
    trt.built_verbosity = trt.ProfilingVerbosity.DETAILED  # the build kept per-layer detail
    return trt


def test_a_serialized_engine_is_read_layer_by_layer():
    report = layer_report(_trt(), b"FAKE-SERIALIZED-ENGINE")
    assert [(layer["name"], layer["precision"], layer["device"]) for layer in report["layers"]] == [
        ("quant_x", "INT8", "GPU"), ("conv + relu", "FP16", "GPU"), ("dequant_y", "FP32", "GPU")]
    assert report["counts"] == {"GPU INT8": 1, "GPU FP16": 1, "GPU FP32": 1}


def test_no_report_where_the_engine_cannot_be_read():
    assert layer_report(_trt(), b"not an engine") is None  # the runtime refuses the bytes
    assert layer_report(types.ModuleType("tensorrt"), b"FAKE-SERIALIZED-ENGINE") is None  # no Runtime at all


def test_the_summary_line_counts_layers_in_a_stable_order():
    assert layer_note({"layers": {"GPU INT8": 40, "GPU FP16": 3, "DLA FP16": 2}}) == [
        "layers: 2 DLA FP16, 3 GPU FP16, 40 GPU INT8"]
    assert layer_note({}) == [] and layer_note({"layers": None}) == []
