"""Load a torch model (torch.export `.pt2`, TorchScript, or a factory) and work out its input spec.

Imported only when a stage actually needs torch (a cache miss), never by a fully cached build.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import torch

from edgeopt.errors import BadInput
from edgeopt.models.source import ModelSource
from edgeopt.models.spec import InputSpec, ModelSpec

_TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "int64": torch.int64,
                 "int32": torch.int32, "bool": torch.bool}


def load_module(source: ModelSource) -> torch.nn.Module:
    """The model as something torch.onnx.export accepts, in eval mode."""
    path = source.files[0]
    try:
        if source.kind == "pt2":
            return torch.export.load(str(path)).module()
        if source.kind == "torchscript":
            return torch.jit.load(str(path), map_location="cpu").eval()
    except Exception as exc:  # torch raises many types for a corrupt archive
        raise BadInput(f"{path}: cannot load {source.kind} model ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if source.kind == "factory":
        return _call_factory(source)
    raise BadInput(f"{source.reference}: not a torch model")


def _call_factory(source: ModelSource) -> torch.nn.Module:
    module_part = source.reference.rsplit(":", 1)[0]
    if module_part.endswith(".py"):
        spec = importlib.util.spec_from_file_location(f"edgeopt_user_model_{abs(hash(module_part))}", module_part)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_part)
    factory = getattr(module, source.factory, None)
    if not callable(factory):
        raise BadInput(f"{source.reference}: '{source.factory}' is not a callable in {module_part}")
    model = factory()
    if not isinstance(model, torch.nn.Module):
        raise BadInput(f"{source.reference}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def _specs_from_metadata(meta: dict) -> list[InputSpec]:
    specs = []
    for entry in meta.get("inputs", []):
        axes = {int(k): v for k, v in entry.get("dynamic_axes", {"0": "batch"}).items()}
        specs.append(InputSpec(name=entry["name"], dtype=entry.get("dtype", "float32"),
                               shape=tuple(entry["shape"]), dynamic_axes=axes))
    return specs


def _specs_from_exported(path: Path) -> list[InputSpec]:
    program = torch.export.load(str(path))
    names = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    args = program.example_inputs[0] if program.example_inputs else ()
    specs = []
    for name, value in zip(names, args):
        dtype = str(value.dtype).replace("torch.", "")
        specs.append(InputSpec(name=name, dtype=dtype, shape=tuple(value.shape)))
    return specs


def model_spec(source: ModelSource) -> ModelSpec:
    """Inputs from --input-shape, else metadata.json, else the .pt2's recorded example inputs."""
    meta = source.metadata
    inputs = source.input_overrides or _specs_from_metadata(meta)
    if not inputs and source.kind == "pt2":
        inputs = _specs_from_exported(source.files[0])
    if not inputs:
        raise BadInput(
            f"{source.reference}: input shapes unknown; pass --input-shape NAME=1x3x224x224 "
            "or put a metadata.json with 'inputs' beside the model"
        )
    outputs = [o["name"] if isinstance(o, dict) else o for o in meta.get("outputs", [])] or ["output"]
    return ModelSpec(name=source.name, task=meta.get("task", "classification"), inputs=inputs,
                     outputs=outputs, preprocessing=meta.get("preprocessing", {}),
                     labels=[str(label) for label in meta.get("labels", [])])


def example_tensors(spec: ModelSpec, batch: int = 1) -> tuple[torch.Tensor, ...]:
    tensors = []
    for item in spec.inputs:
        shape = (batch, *item.shape[1:])
        dtype = _TORCH_DTYPES[item.dtype]
        tensors.append(torch.zeros(shape, dtype=dtype) if not dtype.is_floating_point else torch.randn(shape, dtype=dtype))
    return tuple(tensors)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
