"""Load a torch model (torch.export `.pt2`, TorchScript, or a factory) and work out its input spec.

Imported only when a stage actually needs torch (a cache miss), never by a fully cached build.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

import torch

from edgeopt.errors import BadInput, cause_text, missing_package
from edgeopt.models.pt2_archive import check_pt2  # noqa: F401 - re-exported: the one inspector
from edgeopt.models.source import ModelSource, importable_from_cwd
from edgeopt.models.spec import InputSpec, ModelSpec, clamp_to_model, output_kinds


def load_module(source: ModelSource, trust_pickle: bool = False) -> torch.nn.Module:
    """The model as something torch.onnx.export accepts, in eval mode."""
    path = source.files[0]
    if source.kind == "pt2":
        check_pt2(path, trust_pickle)
    try:
        if source.kind == "pt2":
            return torch.export.load(str(path)).module()
        if source.kind == "torchscript":
            return torch.jit.load(str(path), map_location="cpu").eval()
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # torch raises many types for a corrupt archive
        raise BadInput(f"{path}: cannot load {source.kind} model ({cause_text(exc, 200)})") from None
    if source.kind == "factory":
        return _call_factory(source)
    raise BadInput(f"{source.reference}: not a torch model")


def _call_factory(source: ModelSource) -> torch.nn.Module:
    module_part = source.reference.rsplit(":", 1)[0]
    before = set(sys.modules)
    try:
        if module_part.endswith(".py"):
            # a name from the file's bytes-free identity, stable across processes (hash() is not:
            # it ends up in the ONNX's node metadata and made two builds differ)
            digest = hashlib.sha256(str(Path(module_part).resolve()).encode()).hexdigest()[:16]
            spec = importlib.util.spec_from_file_location(f"edgeopt_user_model_{digest}", module_part)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module
            spec.loader.exec_module(module)
        else:
            importable_from_cwd()
            module = importlib.import_module(module_part)
        factory = getattr(module, source.factory, None)
        if not callable(factory):
            raise BadInput(f"{source.reference}: '{source.factory}' is not a callable in {module_part}")
        model = factory()
    except (BadInput, KeyboardInterrupt):
        raise
    except BaseException as exc:  # the user's code: a syntax error, a failed import, a raise
        if (missing := missing_package(exc)) is not None:
            raise type(missing)(f"{module_part}: {missing}") from exc  # a package this environment lacks (exit 3)
        if isinstance(exc, SystemExit):
            raise BadInput(f"{module_part}: the factory module called sys.exit({exc.code})") from None
        raise BadInput(f"{module_part}: the model factory failed ({cause_text(exc, 200)})") from exc
    finally:
        for name in set(sys.modules) - before:  # leave no user module behind a build
            if name.startswith("edgeopt_user_model_") or name == module_part or name.startswith(module_part + "."):
                sys.modules.pop(name, None)
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


def _program_inputs(path: Path, trust_pickle: bool = False) -> list[InputSpec]:
    """Each user input of a saved ExportedProgram with the axes it leaves free (a symbolic size);
    a program saved with torch.export's default static shapes has none."""
    check_pt2(path, trust_pickle)
    program = torch.export.load(str(path))
    names = [s.arg.name for s in program.graph_signature.input_specs if s.kind.name == "USER_INPUT"]
    nodes = {n.name: n for n in program.graph.nodes if n.op == "placeholder"}
    specs = []
    for name in names:
        value = nodes[name].meta.get("val") if name in nodes else None
        if value is None or not hasattr(value, "shape"):
            continue
        shape, axes = [], {}
        for axis, dim in enumerate(value.shape):
            if isinstance(dim, int):
                shape.append(dim)
            else:
                hint = getattr(dim.node, "hint", None)
                shape.append(1 if axis == 0 or hint is None else int(hint))  # example shapes are batch 1
                axes[axis] = "batch" if axis == 0 else f"{name}_{axis}"
        specs.append(InputSpec(name=name, dtype=str(value.dtype).replace("torch.", ""), shape=tuple(shape), dynamic_axes=axes))
    return specs


def _probe_batch(module: torch.nn.Module, inputs: list[InputSpec], notes: list[str]) -> list[InputSpec]:
    """A traced TorchScript module may have its batch baked in: run it at batch 2 and fix axis 0
    at its own size if it refuses (exporting it dynamic would give wrong results or fail)."""
    if not any(0 in i.dynamic_axes for i in inputs):
        return inputs
    args = [torch.zeros((2, *i.shape[1:]), dtype=getattr(torch, i.dtype)) for i in inputs]
    try:
        with torch.inference_mode():
            module(*args)
        return inputs
    except Exception:
        notes.append("the TorchScript module does not run at another batch size; building at batch "
                     f"{inputs[0].shape[0]}")
        return [i.model_copy(update={"dynamic_axes": {a: n for a, n in i.dynamic_axes.items() if a != 0}})
                for i in inputs]


def model_spec(source: ModelSource, module: torch.nn.Module | None = None, trust_pickle: bool = False) -> ModelSpec:
    """Inputs from --input-shape, else metadata.json, else the .pt2's recorded example inputs,
    clamped to what the model accepts (a static .pt2 or a traced module keeps its own shapes)."""
    meta = source.metadata
    notes: list[str] = []
    inputs = source.input_overrides or _specs_from_metadata(meta)
    if source.kind == "pt2":
        own = _program_inputs(source.files[0], trust_pickle)
        inputs = clamp_to_model(inputs, own, notes, "program") if inputs else own
    if not inputs:
        raise BadInput(
            f"{source.reference}: input shapes unknown; pass --input-shape NAME=1x3x224x224 "
            "or put a metadata.json with 'inputs' beside the model"
        )
    if source.kind == "torchscript":
        inputs = _probe_batch(module if module is not None else load_module(source), inputs, notes)
    outputs = [o["name"] if isinstance(o, dict) else o for o in meta.get("outputs", [])] or ["output"]
    return ModelSpec(name=source.name, task=meta.get("task", "classification"), inputs=inputs,
                     outputs=outputs, preprocessing=meta.get("preprocessing", {}),
                     labels=[str(label) for label in meta.get("labels", [])], output_kinds=output_kinds(meta),
                     notes=notes)


def count_parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
