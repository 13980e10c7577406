"""Local Hugging Face model folders (BERT, DistilBERT, RoBERTa, MiniLM...) -> a torch module and
its input spec, without ever touching the network.

Two tasks: a sequence classifier gives logits; an encoder gives one pooled embedding per text
(mean pooling unless a sentence-transformers `1_Pooling/config.json` says otherwise), so the
exported ONNX outputs what the user actually consumes. The folder checks (`check_folder`) read
only JSON and file names: they run on every build, cached or not, so a folder that needs
`--trust-remote-code` never slips through on a cache hit. torch and transformers load lazily.
"""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from edgeopt.errors import BadInput, MissingEnvironment, cause_text
from edgeopt.models.source import ModelSource
from edgeopt.models.spec import InputSpec, ModelSpec

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model")
TASKS = ("classification", "embedding", "regression")
ST_MODULE = "sentence_transformers.models."
_POOLING_KEYS = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max"}


@dataclass(frozen=True)
class Layout:
    """What the folder holds: where the transformer is, its task, and how embeddings are pooled."""

    folder: Path
    model_dir: Path  # the transformer's own folder (a sentence-transformers module may nest it)
    config: dict
    task: str
    pooling: str | None = None  # mean | cls | max, for embeddings
    normalize: bool = False  # a sentence-transformers Normalize module: L2-normalize the embedding


def _read_json(path: Path) -> dict | list:
    from edgeopt.safe_io import LARGE_JSON_LIMIT, read_json

    return read_json(path, LARGE_JSON_LIMIT, expect=(dict, list))


def _check_safetensors(path: Path) -> None:
    """The safetensors header (8-byte length, then JSON) must fit the file and every tensor's
    offsets too: a header claiming 2^62 bytes ended as an internal error inside the loader."""
    import struct

    from edgeopt.safe_io import check_regular, open_regular

    size = check_regular(path, "the safetensors weights").stat().st_size
    with open_regular(path, "the safetensors weights") as handle:
        head = handle.read(8)
        length = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if length < 2 or length > min(size - 8, 100 << 20):
            raise BadInput(f"{path}: not a valid safetensors file (header length {length} for a {size}-byte file)")
        try:
            header = json.loads(handle.read(length))
        except (ValueError, RecursionError):
            raise BadInput(f"{path}: not a valid safetensors file (the header is not JSON)") from None
    body = size - 8 - length
    for name, entry in (header.items() if isinstance(header, dict) else []):
        offsets = entry.get("data_offsets") if isinstance(entry, dict) and name != "__metadata__" else None
        if offsets is not None and (not isinstance(offsets, list) or len(offsets) != 2
                                    or not all(isinstance(o, int) and 0 <= o <= body for o in offsets)):
            raise BadInput(f"{path}: tensor '{name}' claims bytes {offsets} beyond the file's {body}; not a valid safetensors file")


def _check_paths_inside(folder: Path, model_dir: Path) -> None:
    """Shards named by an index file must stay inside the model's folder (a `../victim/` shard
    loaded another folder's model)."""
    from edgeopt.safe_io import inside

    inside(folder, model_dir.relative_to(folder) if model_dir != folder else ".", "the Transformer module path",
           folder / "modules.json")
    for name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = model_dir / name
        if not index.exists():
            continue
        value = _read_json(index)
        weight_map = value.get("weight_map") if isinstance(value, dict) else None
        if not isinstance(weight_map, dict):
            raise BadInput(f"{index}: no 'weight_map' object")
        for shard in sorted({str(v) for v in weight_map.values()}):
            inside(model_dir, shard, "the shard", index)


def check_folder(folder: Path, trust_remote_code: bool = False, task: str | None = None) -> Layout:
    """Everything that can be told from file names and JSON, each problem as one line."""
    folder = Path(folder)
    _require_packages()
    modules = _sentence_transformer_modules(folder)
    model_dir = folder / modules.get("Transformer", "") if modules else folder
    config = _read_json(model_dir / "config.json") if (model_dir / "config.json").is_file() else None
    if not isinstance(config, dict):
        raise BadInput(f"{model_dir / 'config.json'}: missing or not a JSON object")
    for name in ("config.json", "tokenizer_config.json"):
        path = model_dir / name
        custom = _read_json(path).get("auto_map") if path.is_file() else None
        if custom and not trust_remote_code:
            raise BadInput(f"{path}: the model needs its own Python code (auto_map: {', '.join(sorted(custom))}); "
                           "rerun with --trust-remote-code only if you trust its author")
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES) and not list(model_dir.glob("*.safetensors")):
        raise BadInput(f"{model_dir}: no model weights (expected model.safetensors or pytorch_model.bin); "
                       "save them with model.save_pretrained()")
    if not any((model_dir / name).is_file() for name in TOKENIZER_FILES):
        raise BadInput(f"{model_dir}: no tokenizer files (expected tokenizer.json or vocab.txt/vocab.json); "
                       "save them with tokenizer.save_pretrained()")
    _check_paths_inside(folder, model_dir)
    for weights in sorted(model_dir.glob("*.safetensors")):
        _check_safetensors(weights)
    return _layout(folder, model_dir, config, modules, task)


def _require_packages() -> None:
    missing = [name for name in ("transformers", "optimum") if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingEnvironment(f"Hugging Face models need {' and '.join(missing)}: pip install 'edgeopt[hf]'")


def _sentence_transformer_modules(folder: Path) -> dict[str, str]:
    """modules.json -> {module kind: path}; unsupported modules (Dense, ...) are refused here."""
    path = folder / "modules.json"
    if not path.is_file():
        return {}
    entries = _read_json(path)
    kinds = {}
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            raise BadInput(f"{path}: each module must be a JSON object, not {type(entry).__name__}")
        kind = str(entry.get("type", "")).removeprefix(ST_MODULE)
        if kind not in ("Transformer", "Pooling", "Normalize"):
            raise BadInput(f"{path}: module '{entry.get('path')}' ({kind}) is not supported; edgeopt exports "
                           "Transformer + Pooling (+ Normalize) sentence encoders")
        kinds[kind] = str(entry.get("path", "")) or "."
        from edgeopt.safe_io import inside

        inside(folder, kinds[kind], f"the {kind} module path", path)
    if "Transformer" not in kinds:
        raise BadInput(f"{path}: no sentence_transformers Transformer module")
    return kinds


def _pooling_mode(folder: Path, modules: dict[str, str]) -> str:
    if "Pooling" not in modules:
        return "mean"
    path = folder / modules["Pooling"] / "config.json"
    config = _read_json(path) if path.is_file() else {}
    if isinstance(config.get("pooling_mode"), str):  # newer sentence-transformers write the mode itself
        modes = [config["pooling_mode"].removesuffix("_tokens").removesuffix("_token")]
    else:
        modes = [mode for key, mode in _POOLING_KEYS.items() if config.get(key)]
        if any(value is True for key, value in config.items() if key.startswith("pooling_mode") and key not in _POOLING_KEYS):
            modes.append("other")
    if len(modes) != 1 or modes[0] not in ("mean", "cls", "max"):
        raise BadInput(f"{path}: pooling {modes or 'none'} is not supported (expected one of mean, cls, max)")
    return modes[0]


def _layout(folder: Path, model_dir: Path, config: dict, modules: dict[str, str], task: str | None) -> Layout:
    architectures = config.get("architectures") or []
    if task is None:
        if modules:
            task = "embedding"
        elif any(a.endswith("ForSequenceClassification") for a in architectures):
            task = "regression" if config.get("problem_type") == "regression" or config.get("num_labels") == 1 else "classification"
        elif not architectures or all(a.endswith("Model") for a in architectures):
            task = "embedding"
        elif any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in architectures):  # issue 18
            raise BadInput(f"{folder}: architecture {architectures[0]} is a text-generation model; "
                           "build it with --task text-generation (edgeopt build MODEL --task text-generation --calib texts.txt)")
        else:
            raise BadInput(f"{folder}: architecture {architectures[0]} is neither a sequence classifier nor an encoder; "
                           "pass --task embedding to export its encoder with mean pooling")
    if task not in TASKS:
        raise BadInput(f"--task {task}: expected one of {', '.join(TASKS)}")
    if task == "embedding":
        return Layout(folder, model_dir, config, task, _pooling_mode(folder, modules), "Normalize" in modules)
    return Layout(folder, model_dir, config, task)


def sequence_length(layout: Layout, requested: int | None, profile_opt: int) -> int:
    """--seq-len, else the profile's build.seq_len.opt capped at the model's position limit."""
    limit = layout.config.get("max_position_embeddings")
    if requested is not None:
        if limit and requested > limit:
            raise BadInput(f"--seq-len {requested}: the model takes at most {limit} tokens (max_position_embeddings)")
        return requested
    return min(profile_opt, limit) if limit else profile_opt


def class_names(model) -> list[str]:
    """Class names in index order from the loaded config (config.json may omit the default
    LABEL_0..N names, so the file alone is not enough)."""
    id2label = {int(k): str(v) for k, v in (model.config.id2label or {}).items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(model.config.num_labels)]


def load_model(layout: Layout, trust_remote_code: bool = False):
    """The transformer in eval mode: the classifier itself, or the encoder wrapped with pooling.

    Weights: transformers prefers model.safetensors; a pytorch_model.bin is read with
    torch.load(weights_only=True) (transformers' default, and it refuses .bin files on torch < 2.6),
    so loading never runs pickled code.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # belt and braces: local_files_only below is the real guard
    import transformers

    transformers.logging.set_verbosity_error()
    loader = transformers.AutoModel if layout.task == "embedding" else transformers.AutoModelForSequenceClassification
    try:
        # eager attention: the classic MatMul/Softmax graph that ONNX Runtime's fusions and TensorRT know
        model, info = loader.from_pretrained(str(layout.model_dir), local_files_only=True, output_loading_info=True,
                                             trust_remote_code=trust_remote_code, attn_implementation="eager")
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        first = cause_text(exc)
        raise BadInput(f"{layout.model_dir}: cannot load the model ({first})") from None
    # e.g. --task classification on a bare encoder would get a random head; the pooler is unused
    # by mean pooling and many sentence encoders ship without it
    missing = sorted(k for k in info.get("missing_keys", []) if not (layout.task == "embedding" and "pooler" in k))
    if missing:
        raise BadInput(f"{layout.model_dir}: the weights have no '{missing[0]}' ({len(missing)} tensors missing); "
                       f"this checkpoint is not a {layout.task} model, check --task")
    model.eval()
    if layout.task == "embedding":
        from edgeopt.models.pooling import PooledEncoder

        return PooledEncoder(model, layout.pooling or "mean", layout.normalize).eval()
    return model


def model_spec(source: ModelSource, layout: Layout, model, seq_len: int,
               input_axes: dict[str, dict[int, str]]) -> ModelSpec:
    """Inputs are the ones optimum's ONNX config exports for this architecture (input_ids,
    attention_mask, and token_type_ids where the model uses them; `input_axes`, from
    stages.export_huggingface.onnx_inputs), int64, dynamic batch and sequence."""
    inputs = [InputSpec(name=name, dtype="int64", shape=(1, seq_len), dynamic_axes=axes)
              for name, axes in input_axes.items()]
    return ModelSpec(
        name=source.name, task=layout.task, inputs=inputs,
        outputs=["sentence_embedding"] if layout.task == "embedding" else ["logits"],
        preprocessing={"tokenizer": "the model's own", "seq_len": seq_len, "pooling": layout.pooling,
                       "normalize": layout.normalize, "model_type": layout.config.get("model_type")},
        labels=class_names(model) if layout.task == "classification" else [],
    )
