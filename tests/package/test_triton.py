"""`edgeopt package --layout triton`: the generated config.pbtxt parsed against Triton's own
model_config.proto (tests/data/triton-model-config: model_config.proto from triton-inference-server/common at
83adf7cf88a2f343005974dff3728be746de2d66 and its compiled FileDescriptorSet), then checked
against the build: names, types and dims from the ONNX, batching from the target profile, and
the model file Triton would load run with ONNX Runtime."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import REPO
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

from edgeopt import targets
from edgeopt.package.triton import config_text
from edgeopt.package.bundle import package

SCHEMA = REPO / "tests" / "data" / "triton-model-config"  # hyphenated: never importable as the `triton` package torch probes for


@pytest.fixture(scope="module")
def model_config():
    """Triton's inference.ModelConfig message class, built from the descriptor set (no protoc needed)."""
    files = descriptor_pb2.FileDescriptorSet.FromString((SCHEMA / "model_config.descriptor.pb").read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


def _repository(build: dict, tmp_path: Path) -> tuple[Path, str]:
    result = package(Path(build["build_dir"]), tmp_path, layout="triton")
    with tarfile.open(result.path) as tar:
        tar.extractall(tmp_path / "repo", filter="data")
    return tmp_path / "repo" / result.name, result.name


@pytest.mark.parametrize("which, backend, kind, max_batch", [
    ("example_build", "onnxruntime", "KIND_CPU", None),
    ("jetson_build", "onnxruntime", "KIND_GPU", 8),
])
def test_triton_repository_loads_as_triton_reads_it(which, backend, kind, max_batch, model_config, request, tmp_path):
    build = request.getfixturevalue(which)
    root, _ = _repository(build, tmp_path)
    assert sorted(p.relative_to(root).as_posix() for p in (root / "digits-cnn").rglob("*") if p.is_file()) == [
        "digits-cnn/1/model.onnx", "digits-cnn/config.pbtxt"]
    config = text_format.Parse((root / "digits-cnn" / "config.pbtxt").read_text(), model_config())
    profile = targets.resolve(build["target"]["name"])
    assert config.name == "digits-cnn" and config.backend == backend and config.platform == ""
    assert config.max_batch_size == (max_batch or profile.build.batch.max)
    assert [(i.name, model_config.DESCRIPTOR.fields_by_name["input"].message_type.fields_by_name["data_type"]
             .enum_type.values_by_number[i.data_type].name, list(i.dims)) for i in config.input] == [
        ("image", "TYPE_FP32", [1, 32, 32])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("logits", [10])]
    assert config.instance_group[0].kind == model_config.DESCRIPTOR.fields_by_name["instance_group"].message_type \
        .fields_by_name["kind"].enum_type.values_by_name[kind].number
    # the model Triton loads is the build's deliverable, and it runs at the batch the config allows
    shipped = (root / "digits-cnn" / "1" / "model.onnx").read_bytes()
    expected = Path(build["artifacts"]["deployable"] or build["artifacts"]["onnx_int8"]).read_bytes()
    assert shipped == expected
    session = ort.InferenceSession(shipped, providers=["CPUExecutionProvider"])
    batch = np.zeros((config.max_batch_size, *config.input[0].dims), dtype=np.float32)
    assert session.run(None, {"image": batch})[0].shape == (config.max_batch_size, *config.output[0].dims)
    if which == "jetson_build":  # deferred engine: ORT with the TensorRT accelerator in INT8, dynamic batching
        accelerator = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
        assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "INT8"
        assert list(config.dynamic_batching.preferred_batch_size) == [8]
        assert config.dynamic_batching.max_queue_delay_microseconds == 100
    else:
        assert config.parameters["inter_op_thread_count"].string_value == "1"
        assert config.parameters["execution_mode"].string_value == "0"


def test_a_built_engine_becomes_a_tensorrt_plan_model(jetson_build, model_config):
    graph = onnx.load(jetson_build["artifacts"]["onnx_fp32"], load_external_data=False)
    spec = {"inputs": [{"name": "image", "dynamic_axes": {"0": "batch"}}]}
    text = config_text("digits-cnn", "plan", graph, spec, targets.resolve("jetson"))
    config = text_format.Parse(text, model_config())
    assert config.platform == "tensorrt_plan" and config.backend == "" and config.max_batch_size == 8
    assert not config.HasField("optimization")


def test_the_schema_check_catches_a_wrong_config(model_config):
    with pytest.raises(text_format.ParseError, match="max_batch"):
        text_format.Parse('name: "m"\nmax_batch: 8\n', model_config())
    with pytest.raises(text_format.ParseError, match="TYPE_FLOAT"):
        text_format.Parse('input [{ name: "x" data_type: TYPE_FLOAT dims: [1] }]', model_config())


def test_descriptor_set_is_compiled_from_the_checked_in_proto(tmp_path):
    grpc_tools = pytest.importorskip("grpc_tools.protoc")
    out = tmp_path / "model_config.descriptor.pb"
    assert grpc_tools.main(["protoc", f"-I{SCHEMA}", f"--descriptor_set_out={out}", "model_config.proto"]) == 0
    assert out.read_bytes() == (SCHEMA / "model_config.descriptor.pb").read_bytes()
