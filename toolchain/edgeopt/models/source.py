"""Model references -> a `ModelSource`: what kind of model it is, where its files are, its hash.

This module never imports torch, so a fully cached build can identify its model in milliseconds.
Kinds: torch.export `.pt2`, TorchScript `.pt`/`.ts`, `file.py:factory` or `package.module:factory`,
`.onnx`, a Hugging Face directory (config.json), and the bundled example when no model is given.
A `metadata.json` beside a model file (or inside a model folder) may describe inputs, task,
preprocessing and labels; `--input-shape` overrides it.
"""

from __future__ import annotations

import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from edgeopt.hashing import sha256_json, sha256_tree
from edgeopt.errors import BadInput
from edgeopt.models.spec import InputSpec
from edgeopt.resources import shipped

Kind = Literal["pt2", "torchscript", "factory", "onnx", "huggingface"]
EXAMPLE_FACTORY = "model.py:build"
_SHAPE = re.compile(r"\d+(x\d+)*", re.IGNORECASE)


@dataclass
class ModelSource:
    kind: Kind
    reference: str  # what the user typed (or the bundled example's factory)
    name: str
    files: list[Path]  # everything whose content defines the model
    factory: str | None = None  # the attribute to call for kind == "factory"
    metadata: dict = field(default_factory=dict)
    input_overrides: list[InputSpec] = field(default_factory=list)
    sha256: str = ""
    options: dict = field(default_factory=dict)  # kind-specific load options (e.g. HF task)


def example_reference() -> str:
    return f"{shipped('examples/digits') / 'model.py'}:build"


def parse_input_shapes(values: tuple[str, ...] | list[str]) -> list[InputSpec]:
    """`--input-shape 1x3x224x224`, `pixels=1x3x224x224[:float16]`, or trtexec's `pixels:1x3x224x224`."""
    specs = []
    for index, value in enumerate(values):
        name, _, rest = value.rpartition("=") if "=" in value else ("", "", value)
        head, _, tail = rest.rpartition(":")
        if not name and head and _SHAPE.fullmatch(tail) and not _SHAPE.fullmatch(head):
            name, rest = head, tail  # trtexec spelling: the name before the last ':'
        shape_text, _, dtype = rest.partition(":")
        try:
            shape = tuple(int(part) for part in shape_text.lower().split("x"))
        except ValueError:
            raise BadInput(f"--input-shape {value}: expected e.g. 1x3x224x224 or name=1x3x224x224") from None
        if any(dim < 1 for dim in shape):
            raise BadInput(f"--input-shape {value}: dimensions must be positive")
        try:
            specs.append(InputSpec(name=name or f"input_{index}", shape=shape, dtype=dtype or "float32"))
        except ValueError:
            raise BadInput(f"--input-shape {value}: unsupported dtype '{dtype}'") from None
    return specs


def _read_metadata(path: Path) -> dict:
    if not path.is_file():
        return {}
    from edgeopt.safe_io import read_json

    return read_json(path, what="the model's metadata.json")


def _split_factory(reference: str) -> tuple[str, str] | None:
    """`models/net.py:build` or `pkg.module:build` -> (module part, attribute); else None."""
    if ":" not in reference or reference.count(":") != 1:
        return None
    module, attribute = reference.split(":")
    if not attribute.isidentifier() or not module:
        return None
    return module, attribute


def resolve_source(reference: str | None, input_shapes: tuple[str, ...] = ()) -> ModelSource:
    """Classify a model reference, check its files exist, and hash them (no torch import)."""
    overrides = parse_input_shapes(input_shapes)
    source = _classify(reference or example_reference())
    source.input_overrides = overrides
    content = {str(p.name if p.is_file() else p): sha256_tree(p) for p in source.files}
    source.sha256 = sha256_json(
        {"kind": source.kind, "factory": source.factory, "files": content, "options": source.options}
    )
    return source


def _classify(reference: str) -> ModelSource:
    path = Path(reference)
    factory = _split_factory(reference)
    if factory and not path.exists():
        module, attribute = factory
        return _factory_source(reference, module, attribute)
    if not path.exists():
        raise BadInput(f"{reference}: model file not found")
    if path.is_dir():
        if (path / "config.json").is_file():
            meta = _read_metadata(path / "metadata.json")
            return ModelSource("huggingface", reference, meta.get("name") or path.resolve().name, [path], metadata=meta)
        raise BadInput(f"{reference}: a model folder needs a config.json (Hugging Face layout)")
    meta = _read_metadata(path.with_name("metadata.json"))
    name = meta.get("name") or path.stem
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        return ModelSource("onnx", reference, name, [path], metadata=meta)
    if suffix == ".pt2":
        return ModelSource("pt2", reference, name, [path], metadata=meta)
    if suffix in (".pt", ".pth", ".ts", ".jit"):
        return ModelSource("torchscript", reference, name, [path], metadata=meta)
    raise BadInput(
        f"{reference}: unknown model format '{suffix}' (expected .pt2, .pt (TorchScript), .onnx, "
        "a Hugging Face folder, or file.py:factory)"
    )


def _factory_source(reference: str, module: str, attribute: str) -> ModelSource:
    if module.endswith(".py"):
        file = Path(module)
        if not file.is_file():
            raise BadInput(f"{module}: model definition file not found")
        folder = file.parent
        files = [file] + sorted(p for p in folder.iterdir() if p.suffix in (".pt", ".pth", ".safetensors", ".json"))
        meta = _read_metadata(folder / "metadata.json")
        return ModelSource("factory", reference, meta.get("name") or file.stem, files, attribute, meta)
    spec = None
    if module.replace(".", "").replace("_", "").isalnum():
        importable_from_cwd()
        try:
            spec = importlib.util.find_spec(module)
        except (ImportError, ValueError):  # a missing parent package
            spec = None
    if spec is None or not spec.origin:
        raise BadInput(
            f"{reference}: cannot import module '{module}' from {Path.cwd()} or the installed packages; "
            "run edgeopt from the folder that holds it, add that folder to PYTHONPATH, or pass path/to/file.py:factory"
        )
    file = Path(spec.origin)
    meta = _read_metadata(file.with_name("metadata.json"))
    return ModelSource("factory", reference, meta.get("name") or module.split(".")[-1], [file], attribute, meta)


def importable_from_cwd() -> None:
    """Put the current folder first on the import path, as `python -m` does (a console script
    does not), so `package.module:factory` finds the user's own modules."""
    import sys

    cwd = str(Path.cwd())
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
