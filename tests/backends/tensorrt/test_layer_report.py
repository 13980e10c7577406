"""The layer report after a device build: which layers run in INT8, FP16 or FP32, on DLA or the
GPU, from the engine inspector (API path) or trtexec --exportLayerInfo (the printed line)."""

from __future__ import annotations

import json

from helpers.fake_device import DETAILED_LAYERS, FakeCuda, with_engine
from helpers.fake_tensorrt import FakeTensorRT

from edgeopt import targets
from edgeopt.backends.tensorrt.builder import EngineBuilder, compile_tensorrt
from edgeopt.backends.tensorrt.plan import make_plan, trtexec_args
from edgeopt.build_dir import LAYOUT
from edgeopt.device_runtime import layer_report
from edgeopt.models.spec import InputSpec

INPUTS = [InputSpec(name="x", shape=(1, 1, 8, 8))]


def test_the_trtexec_line_exports_the_layer_info():
    args = trtexec_args(make_plan(targets.resolve("jetson"), INPUTS, onnx="m.onnx"))
    assert "--profilingVerbosity=detailed" in args and f"--exportLayerInfo={LAYOUT.layer_report}" in args


def test_a_device_build_records_the_layers_in_the_manifest_block(tmp_path, qdq_model, orin):
    trt = with_engine(FakeTensorRT("10", "10.3.0.30"), FakeCuda(), {"x": ((1, 1, 8, 8), (8, 1, 8, 8))}, ["y"],
                      lambda inputs: {"y": inputs["x"]})
    result = compile_tensorrt(qdq_model, targets.resolve("jetson"), INPUTS, tmp_path / "out",
                              timing_cache_dir=tmp_path / "tc", builder=EngineBuilder(trt=trt, device=orin))
    assert trt.args("config.profiling_verbosity") == [trt.ProfilingVerbosity.DETAILED]
    report = json.loads((tmp_path / "out" / LAYOUT.layer_report).read_text())
    assert [(layer["name"], layer["precision"], layer["device"]) for layer in report["layers"]] == [
        ("quant_x", "INT8", "GPU"), ("conv + relu", "FP16", "GPU"), ("dequant_y", "FP32", "GPU")]
    assert result.engine_metadata["layers"] == {"GPU INT8": 1, "GPU FP16": 1, "GPU FP32": 1}
    assert "layers: 1 GPU FP16, 1 GPU FP32, 1 GPU INT8" in result.notes


def test_without_detailed_verbosity_there_are_only_names():
    """What TensorRT gives when the build did not keep detailed information: nothing to classify."""
    trt = with_engine(FakeTensorRT("10"), FakeCuda(), {}, [], lambda i: {})

    class Engine:
        def create_engine_inspector(self):
            from helpers.fake_device import _Inspector

            return _Inspector(trt)

    assert layer_report(Engine(), trt) == {"layers": [], "counts": {}}
    trt.built_verbosity = trt.ProfilingVerbosity.DETAILED
    dla = [{"Name": "{ForeignNode[conv...relu]}", "LayerType": "DLA",
            "Outputs": [{"Format/Datatype": "Channel major FP16 format where channel % 16 == 0"}]}]
    trt.engine_layers = DETAILED_LAYERS[:1] + dla
    assert layer_report(Engine(), trt)["counts"] == {"GPU INT8": 1, "DLA FP16": 1}
