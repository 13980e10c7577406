"""ONNX models as inputs: integrity check and input spec, with one clear line when corrupt."""

from __future__ import annotations

from pathlib import Path

import onnx

from edgeopt.errors import BadInput, cause_text
from edgeopt.models.source import ModelSource
from edgeopt.models.spec import InputSpec, ModelSpec, clamp_to_model, output_kinds

_ONNX_DTYPES = {onnx.TensorProto.FLOAT: "float32", onnx.TensorProto.FLOAT16: "float16",
                onnx.TensorProto.INT64: "int64", onnx.TensorProto.INT32: "int32", onnx.TensorProto.BOOL: "bool"}


# operator domains ONNX Runtime's CPU provider implements: the standard set and its contrib ops
ORT_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft", "com.microsoft.nchwc", "ai.onnx.preview.training"}


def load_checked(path: Path) -> onnx.ModelProto:
    """Parse and check an ONNX file; any failure is BadInput naming the file."""
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model, uses_external_data

    from edgeopt.safe_io import check_regular, inside

    check_regular(path, "the ONNX model")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf DecodeError, OSError...
        raise BadInput(f"{path}: not a valid ONNX model ({cause_text(exc, 200)})") from None
    external = [t for t in model.graph.initializer if uses_external_data(t)]
    for tensor in external:  # every external-data path must stay beside the model
        location = ExternalDataInfo(tensor).location
        check_regular(inside(path.parent, location, f"the external data of '{tensor.name}'", path),
                      f"the external data of '{tensor.name}'")
    try:
        if external:
            load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, ValidationError, OSError...
        first = cause_text(exc, 200)
        raise BadInput(f"{path}: not a valid ONNX model ({first})") from None
    for node in model.graph.node:  # every stage runs the model in ONNX Runtime (calibration, FP32 reference)
        if node.domain not in ORT_DOMAINS:
            raise BadInput(f"{path}: node '{node.name or node.op_type}' is {node.op_type} from the custom domain "
                           f"'{node.domain}', which ONNX Runtime does not implement; export with standard ONNX operators")
    return model


def input_specs(model: onnx.ModelProto) -> list[InputSpec]:
    initializers = {init.name for init in model.graph.initializer}
    specs = []
    for value in model.graph.input:
        if value.name in initializers:
            continue
        tensor = value.type.tensor_type
        shape, axes = [], {}
        for index, dim in enumerate(tensor.shape.dim):
            if dim.HasField("dim_value") and dim.dim_value > 0:
                shape.append(dim.dim_value)
            else:
                shape.append(1)
                axes[index] = dim.dim_param or f"dim{index}"
        dtype = _ONNX_DTYPES.get(tensor.elem_type)
        if dtype is None:
            raise BadInput(f"input '{value.name}': unsupported ONNX element type {tensor.elem_type}")
        specs.append(InputSpec(name=value.name, dtype=dtype, shape=tuple(shape), dynamic_axes=axes))
    return specs


def model_spec(source: ModelSource, model: onnx.ModelProto | None = None) -> ModelSpec:
    """`model`: the source already parsed by load_checked (the load stage parses and checks once)."""
    model = model if model is not None else load_checked(source.files[0])
    meta = source.metadata
    own, notes = input_specs(model), []
    inputs = clamp_to_model(source.input_overrides, own, notes, "ONNX model") if source.input_overrides else own
    outputs = [output.name for output in model.graph.output]
    return ModelSpec(name=source.name, task=meta.get("task", "classification"), inputs=inputs,
                     outputs=outputs, preprocessing=meta.get("preprocessing", {}),
                     labels=[str(label) for label in meta.get("labels", [])], output_kinds=output_kinds(meta), notes=notes)


def count_parameters(model: onnx.ModelProto) -> int:
    total = 0
    for init in model.graph.initializer:
        count = 1
        for dim in init.dims:
            count *= dim
        total += count
    return total
