"""--precision: the target override, the CPU fp16 refusal, and the FP16 ONNX for TensorRT 11."""

import numpy as np
import onnx
import pytest

from edgeopt import targets
from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.backends.tensorrt.plan import make_plan, trtexec_args
from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.models.spec import InputSpec
from edgeopt.stages.precision import apply_precision, needs_fp16_onnx, write_fp16_onnx


def test_fp16_for_jetson_gives_an_fp16_plan_and_trtexec_line():
    jetson = apply_precision(targets.resolve("jetson"), "fp16")
    assert jetson.build.precision == "fp16"
    plan = make_plan(jetson, [InputSpec(name="x", shape=(1, 3, 8, 8))], onnx="model.fp32.onnx", tensorrt="10.3.0")
    assert plan.precision == "fp16" and plan.int8_mode is None and plan.builder_flags == ["FP16"]
    args = trtexec_args(plan)
    assert "--fp16" in args and "--int8" not in args


def test_cpu_refuses_fp16_unless_its_profile_computes_it_natively():
    cpu = targets.resolve("cpu-x86-avx2")
    with pytest.raises(BadInput, match="does not compute FP16 natively"):
        apply_precision(cpu, "fp16")
    assert apply_precision(cpu, "fp32").build.precision == "fp32"
    arm = targets.resolve("cpu-arm64")
    native = arm.model_copy(update={"device": arm.device.model_copy(update={"cpu_flags": ["asimdhp"]})})
    assert apply_precision(native, "fp16").build.precision == "fp16"


def test_fp16_onnx_for_tensorrt_11_runs_close_to_fp32(tmp_path):
    from onnx import helper, numpy_helper, TensorProto

    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(16, 4)).astype(np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])], [weight])
    fp32 = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    fp16 = write_fp16_onnx(fp32, tmp_path / "m.fp16.onnx")
    model = onnx.load(str(fp16))
    assert model.graph.initializer[0].data_type == TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT  # io stays FP32
    data = Dataset({"x": rng.normal(size=(8, 16)).astype(np.float32)}, None, tmp_path / "d.npz")
    a, b = runtime.run_all(runtime.session(fp32), data)[0], runtime.run_all(runtime.session(fp16), data)[0]
    assert np.abs(a - b).max() < 1e-2 * np.abs(a).max() and np.abs(a - b).max() > 0
    eleven = targets.resolve("jetson").model_copy(update={"software": targets.resolve("jetson").software.model_copy(update={"tensorrt": "11.0.0"})})
    assert needs_fp16_onnx(apply_precision(eleven, "fp16")) and not needs_fp16_onnx(eleven)
