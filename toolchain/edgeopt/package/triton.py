"""`edgeopt package --layout triton`: a Triton Inference Server model repository.

    <model>/config.pbtxt
    <model>/1/model.plan   (platform tensorrt_plan: the engine, when the build made one)
    <model>/1/model.onnx   (backend onnxruntime: the CPU deployable, or the Q/DQ INT8 ONNX of a
                            GPU build whose engine is deferred, with ONNX Runtime's TensorRT
                            execution accelerator in INT8 so Triton's host builds the engine)

The config states the inputs, outputs and dims the build exported (the batch axis folded into
max_batch_size when it is dynamic), the target's batch range as max_batch_size and the dynamic
batcher's preferred sizes, and the ONNX Runtime session settings the build chose. Triton ignores
the edgeopt files (manifest.json, SHA256SUMS, ...) at the repository root: it loads only folders.
The text is checked against Triton's model_config.proto in tests/package/test_triton.py.
"""

from __future__ import annotations

import json
from pathlib import Path

from edgeopt.assemble import slug
from edgeopt.build_dir import LAYOUT, Manifest, verify_artifact
from edgeopt.errors import BadInput

# ONNX TensorProto element types -> Triton DataType names (model_config.proto)
_TYPES = {1: "TYPE_FP32", 2: "TYPE_UINT8", 3: "TYPE_INT8", 4: "TYPE_UINT16", 5: "TYPE_INT16", 6: "TYPE_INT32",
          7: "TYPE_INT64", 8: "TYPE_STRING", 9: "TYPE_BOOL", 10: "TYPE_FP16", 11: "TYPE_FP64", 12: "TYPE_UINT32",
          13: "TYPE_UINT64", 16: "TYPE_BF16"}
MAX_QUEUE_DELAY_US = 100  # dynamic batcher: how long a request may wait for a fuller batch


def _tensors(value_infos, batched: bool) -> list[dict]:
    """name, Triton type and dims of ONNX graph inputs/outputs; -1 for a dynamic dimension."""
    tensors = []
    for info in value_infos:
        tensor = info.type.tensor_type
        if tensor.elem_type not in _TYPES:
            raise BadInput(f"tensor '{info.name}': ONNX element type {tensor.elem_type} has no Triton data type")
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        tensors.append({"name": info.name, "data_type": _TYPES[tensor.elem_type], "dims": dims[1:] if batched else dims})
    return tensors


def _batched(model, spec: dict) -> bool:
    """The first axis is a batch axis Triton may fill: dynamic in the exported graph and the spec."""
    dynamic = all(i.get("dynamic_axes", {}).get("0") or i.get("dynamic_axes", {}).get(0) for i in spec["inputs"])
    first = [i.type.tensor_type.shape.dim[0] for i in model.graph.input if i.type.tensor_type.shape.dim]
    return dynamic and all(not d.HasField("dim_value") for d in first)


def _block(key: str, fields: list[str], indent: str = "  ") -> str:
    return f"{key} {{\n" + "".join(f"{indent}{f}\n" for f in fields) + "}"


def _tensor_text(kind: str, tensors: list[dict]) -> str:
    items = [f'  {{\n    name: "{t["name"]}"\n    data_type: {t["data_type"]}\n    dims: [ {", ".join(map(str, t["dims"]))} ]\n  }}'
             for t in tensors]
    return f"{kind} [\n" + ",\n".join(items) + "\n]"


def _parameters(settings: dict) -> list[str]:
    """ONNX Runtime backend parameters from session.json (0 threads = ORT's default: left out)."""
    values = {"inter_op_thread_count": settings.get("inter_op_num_threads"),
              "intra_op_thread_count": settings.get("intra_op_num_threads") or None,
              "execution_mode": {"ORT_SEQUENTIAL": 0, "ORT_PARALLEL": 1}.get(settings.get("execution_mode"))}
    return [_block("parameters", [f'key: "{k}"', f'value: {{ string_value: "{v}" }}']) for k, v in values.items() if v is not None]


def config_text(name: str, kind: str, model, spec: dict, target, settings: dict | None = None) -> str:
    """config.pbtxt for `kind` "plan" (TensorRT engine), "onnx-cpu" or "onnx-gpu" (ORT + TensorRT EP)."""
    batched = _batched(model, spec)
    batch = target.build.batch
    max_batch = batch.max if batched else 0
    parts = [f'name: "{name}"',
             'platform: "tensorrt_plan"' if kind == "plan" else 'backend: "onnxruntime"',
             f"max_batch_size: {max_batch}",
             _tensor_text("input", _tensors(model.graph.input, batched)),
             _tensor_text("output", _tensors(model.graph.output, batched))]
    if batched and max_batch > 1:
        preferred = sorted({b for b in (batch.opt, batch.max) if b > 1}) or [max_batch]
        parts.append(_block("dynamic_batching", [f"preferred_batch_size: [ {', '.join(map(str, preferred))} ]",
                                                 f"max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}"]))
    parts.append("instance_group [\n  {\n    count: 1\n    kind: " + ("KIND_CPU" if kind == "onnx-cpu" else "KIND_GPU") + "\n  }\n]")
    if kind == "onnx-gpu":
        parts.append('optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n    {\n'
                     '      name: "tensorrt"\n      parameters { key: "precision_mode" value: "INT8" }\n'
                     '      parameters { key: "trt_int8_use_native_calibration_table" value: "false" }\n'
                     '    }\n    ]\n  }\n}')
    parts += _parameters(settings or {})
    return "\n".join(parts) + "\n"


def triton_files(build_dir: Path, manifest: dict, target) -> tuple[dict[str, Path | bytes], dict[str, str]]:
    """(entries, roles) of a model repository holding this build as model `<model name>`, version 1."""
    import onnx

    name = slug(manifest["model"]["name"])
    engine = Manifest.of(manifest).engine
    if target.backend == "onnxruntime":
        kind, model_file = "onnx-cpu", verify_artifact(build_dir, manifest, manifest.get("deployable") or LAYOUT.ort_deployable)
        settings = json.loads(verify_artifact(build_dir, manifest, LAYOUT.ort_session).read_text())
    elif engine.get("status") == "built" and engine.get("engine"):
        kind, model_file, settings = "plan", verify_artifact(build_dir, manifest, engine["engine"]), None
    else:
        kind, model_file, settings = "onnx-gpu", verify_artifact(build_dir, manifest, LAYOUT.int8_onnx), None
    # the graph's interface: the FP32 ONNX carries the same inputs/outputs as every later artifact
    graph = onnx.load(str(verify_artifact(build_dir, manifest, LAYOUT.fp32_onnx)), load_external_data=False)
    config = config_text(name, kind, graph, manifest["model"]["spec"], target, settings)
    stored = LAYOUT.triton_plan if kind == "plan" else LAYOUT.triton_onnx
    entries = {f"{name}/{LAYOUT.triton_config}": config.encode(), f"{name}/1/{stored}": model_file}
    roles = {f"{name}/{LAYOUT.triton_config}": "Triton model configuration",
             f"{name}/1/{stored}": "TensorRT engine" if kind == "plan" else "ONNX model (ONNX Runtime backend)"}
    return entries, roles
