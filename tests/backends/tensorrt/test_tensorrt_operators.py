"""The ONNX each target's TensorRT parser reads: export opset per target, and the operator check
against onnx-tensorrt's own operator tables (copies in tests/data/onnx-tensorrt-operators)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from helpers.fake_tensorrt import qdq_onnx
from onnx import TensorProto, helper

from edgeopt import targets
from edgeopt.backends import export_opset
from edgeopt.backends.tensorrt import operators
from edgeopt.backends.tensorrt.builder import compile_tensorrt
from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.models.spec import InputSpec, ModelSpec
from edgeopt.stages.export import copy_onnx_input, export_onnx

TABLES = Path(__file__).resolve().parents[2] / "data" / "onnx-tensorrt-operators"
PROFILES = targets.load_all()
GPU = sorted(n for n, p in PROFILES.items() if p.backend == "tensorrt")


def table(release: str) -> tuple[set[str], int]:
    """Operators marked Y in onnx-tensorrt's docs/operators.md, and the highest opset it names."""
    text = (TABLES / f"{release}.md").read_text()
    ops = {m.group(1) for m in re.finditer(r"^\|\s*([A-Za-z0-9]+)\s*\|\s*Y\s*\|", text, re.M)}
    opsets = [int(n) for n in re.findall(r"[Oo]pset (\d+)", text.split("## Operator Support Matrix")[0])]
    return ops, max(opsets)


@pytest.mark.parametrize("release", ["8.5-GA", "8.6-GA", "10.1-GA"])
def test_shipped_lists_are_onnx_tensorrts_tables(release):
    ops, top = table(release)
    assert operators.SUPPORTED[release] == ops and operators.MAX_OPSET[release] == top


def test_export_opset_follows_the_targets_tensorrt():
    assert export_opset(PROFILES["jetson-xavier-nx"]) == 17  # TensorRT 8.5.2 (JetPack 5)
    for name, profile in PROFILES.items():
        expected = 17 if profile.backend == "tensorrt" and profile.tensorrt_major == 8 else 18
        assert export_opset(profile) == expected, name
    for name in GPU:  # every GPU profile exports at an opset its parser reads
        release = operators.release_for(PROFILES[name].software.tensorrt)
        assert export_opset(PROFILES[name]) <= operators.MAX_OPSET[release]


def _layernorm(path: Path, opset: int = 17) -> Path:
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], name="ln", axis=-1)], "ln",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor("g", TensorProto.FLOAT, [4], [1.0] * 4), helper.make_tensor("b", TensorProto.FLOAT, [4], [0.0] * 4)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_layernorm_is_refused_for_tensorrt_8_5_naming_the_op(tmp_path):
    path = _layernorm(tmp_path / "ln.onnx")
    with pytest.raises(BadInput) as error:
        operators.check_operators(path, "8.5.2", "jetson-xavier-nx")
    message = str(error.value)
    assert "operator LayerNormalization (node 'ln')" in message and "TensorRT 8.5.2" in message and "\n" not in message
    operators.check_operators(path, "10.3", "jetson-orin-nano-8gb")  # 10.x reads it
    operators.check_operators(path, "8.6.2", "jetson-orin-jp6.0")


def test_opset_18_and_custom_domains_are_refused_for_8_5(tmp_path):
    with pytest.raises(BadInput, match="opset 18, but TensorRT 8.5.2 .* reads opsets up to 17"):
        operators.check_operators(_layernorm(tmp_path / "a.onnx", opset=18), "8.5.2", "x")
    graph = helper.make_graph([helper.make_node("FusedGemm", ["x", "x"], ["y"], name="f", domain="com.microsoft")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    onnx.save(model, str(tmp_path / "ms.onnx"))
    with pytest.raises(BadInput, match=r"operator com\.microsoft\.FusedGemm"):
        operators.check_operators(tmp_path / "ms.onnx", "10.3", "x")


def test_compile_refuses_before_writing_a_plan(tmp_path):
    """Nothing reaches the build directory (and so no package) for an ONNX the parser cannot read."""
    target = PROFILES["jetson-xavier-nx"].model_copy(update={"build": PROFILES["jetson-xavier-nx"].build.model_copy(
        update={"precision": "fp16"})})
    with pytest.raises(BadInput, match="LayerNormalization"):
        compile_tensorrt(_layernorm(tmp_path / "ln.onnx"), target, [InputSpec(name="x", shape=(1, 4))], tmp_path / "out")
    assert not (tmp_path / "out" / "build_plan.json").exists()
    compile_tensorrt(qdq_onnx(tmp_path / "q.onnx"), PROFILES["jetson-xavier-nx"],
                     [InputSpec(name="x", shape=(1, 1, 8, 8))], tmp_path / "ok")  # Q/DQ Conv: fine on 8.5
    assert (tmp_path / "ok" / "build_plan.json").is_file()


def _reduce_mean_18(path: Path) -> Path:
    """Opset 18 ReduceMean takes axes as an input, the form onnx-tensorrt 8.5 misreads."""
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean", keepdims=1)], "rm",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 1])],
        [helper.make_tensor("axes", TensorProto.INT64, [1], [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def test_an_opset_18_onnx_input_is_converted_to_17_for_tensorrt_8(tmp_path):
    data = Dataset({"x": np.random.default_rng(0).normal(size=(8, 3, 4)).astype(np.float32)}, None, tmp_path / "d.npz")
    result = copy_onnx_input(_reduce_mean_18(tmp_path / "in.onnx"), tmp_path / "out.onnx", data, 17)
    model = onnx.load(str(tmp_path / "out.onnx"))
    assert result.opset == 17 and model.opset_import[0].version == 17
    node = model.graph.node[0]
    assert node.op_type == "ReduceMean" and [a.ints for a in node.attribute if a.name == "axes"] == [[2]]
    operators.check_operators(tmp_path / "out.onnx", "8.5.2", "jetson-xavier-nx")
    kept = copy_onnx_input(tmp_path / "in.onnx", tmp_path / "kept.onnx", data, 18)
    assert kept.opset == 18 and kept.exporter == "none (ONNX input)"


def test_torch_export_writes_the_opset_asked_for(tmp_path):
    model = torch.nn.Sequential(torch.nn.Linear(4, 3)).eval()
    spec = ModelSpec(name="m", inputs=[InputSpec(name="x", shape=(1, 4))], outputs=["y"])
    data = Dataset({"x": np.random.default_rng(0).normal(size=(4, 4)).astype(np.float32)}, None, tmp_path / "d.npz")
    result = export_onnx(model, spec, tmp_path / "m.onnx", data, opset=17)
    opsets = {o.domain: o.version for o in onnx.load(str(tmp_path / "m.onnx")).opset_import}
    assert result.opset == 17 and opsets.get("", opsets.get("ai.onnx")) == 17
