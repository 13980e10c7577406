"""Decoder-only language models (issue 18): a Hugging Face causal-LM folder, a `.gguf` file, or a
PEFT LoRA adapter folder -> one float Hugging Face folder the exporter takes.

Detection reads only JSON and file names (no torch): a folder whose config `architectures` end in
`ForCausalLM`, a file ending `.gguf`, or a folder with `adapter_config.json`. `--task
text-generation` forces the causal-LM path. Safetensors only, `trust_remote_code` never: a folder
that needs its own code or ships only pickled weights is refused in one line.

A GGUF is dequantized by transformers' own GGUF loader into a float folder inside the build's work
folder (never beside the user's file); its quantized blocks are read again later by
models/gguf.py, so exact 4-bit blocks survive. A LoRA adapter is merged into its base
(`merge_and_unload`); the base must be given in adapter_config.json as a local path inside what the
user named (the adapter folder or its parent), never fetched.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from edgeopt.errors import BadInput, MissingEnvironment, cause_text

TASK = "text-generation"
SUPPORTED_TYPES = ("llama", "qwen2", "qwen3", "mistral", "gpt2", "phi3", "gemma", "granite", "olmo")


@dataclass(frozen=True)
class CausalLMSource:
    """What the user named and what it is: kind hf | gguf | lora."""

    kind: str
    path: Path
    name: str
    base: Path | None = None  # lora: the base model folder
    config: dict = field(default_factory=dict)  # config.json of the (base) model; empty for gguf until loaded


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(value, dict):
        raise BadInput(f"{path}: not a JSON object")
    return value


def is_causal_lm(reference: str | None, task: str | None = None) -> bool:
    """The one dispatch question (no torch, no transformers): does this reference go the LLM way?"""
    if reference is None:
        return False
    path = Path(reference)
    if task == TASK:
        return True
    if path.is_file():
        return path.suffix.lower() == ".gguf"
    if path.is_dir():
        if (path / "adapter_config.json").is_file():
            return True
        config = path / "config.json"
        if config.is_file():
            try:
                architectures = json.loads(config.read_text()).get("architectures") or []
            except (json.JSONDecodeError, AttributeError):
                return False
            return any(str(a).endswith("ForCausalLM") or str(a).endswith("LMHeadModel") for a in architectures)
    return False


def resolve(reference: str) -> CausalLMSource:
    """Classify and check a causal-LM reference; every refusal is one line that says what to do."""
    path = Path(reference)
    if not path.exists():
        raise BadInput(f"{reference}: model not found")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise BadInput(f"{reference}: a text-generation model is a Hugging Face folder, a LoRA adapter folder or a .gguf file")
        _require("gguf", "GGUF files need the gguf package: pip install 'edgeopt[llm]'")
        return CausalLMSource("gguf", path, path.stem)
    if (path / "adapter_config.json").is_file():
        return _lora(path)
    return CausalLMSource("hf", path, path.resolve().name, config=check_folder(path))


def check_folder(folder: Path) -> dict:
    """A causal-LM folder: config.json of a supported family, safetensors weights, a tokenizer."""
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise BadInput(f"{folder}: no config.json (save the model with save_pretrained())")
    config = _read_json(config_path)
    if config.get("auto_map"):
        raise BadInput(f"{config_path}: the model needs its own Python code (auto_map); edgeopt never runs it "
                       "for text generation: use a model transformers supports natively")
    model_type = config.get("model_type")
    if model_type not in SUPPORTED_TYPES:
        raise BadInput(f"{config_path}: model_type '{model_type}' is not supported for text generation "
                       f"(supported: {', '.join(SUPPORTED_TYPES)})")
    if not list(folder.glob("*.safetensors")) and not (folder / "model.safetensors.index.json").is_file():
        pickled = [p.name for p in folder.glob("*.bin")]
        hint = f" ({pickled[0]} is pickled: convert it with save_pretrained(safe_serialization=True))" if pickled else ""
        raise BadInput(f"{folder}: no .safetensors weights{hint}")
    if not (folder / "tokenizer.json").is_file():
        raise BadInput(f"{folder}: no tokenizer.json (save the tokenizer with tokenizer.save_pretrained())")
    return config


def _lora(folder: Path) -> CausalLMSource:
    adapter = _read_json(folder / "adapter_config.json")
    if adapter.get("peft_type") != "LORA":
        raise BadInput(f"{folder / 'adapter_config.json'}: peft_type {adapter.get('peft_type')!r}; only LORA adapters are merged")
    if not (folder / "adapter_model.safetensors").is_file():
        raise BadInput(f"{folder}: no adapter_model.safetensors (save the adapter with save_pretrained())")
    base_name = adapter.get("base_model_name_or_path") or ""
    candidates = [Path(base_name), folder / base_name, folder.parent / base_name] if base_name else []
    roots = (folder.resolve(), folder.resolve().parent)
    for candidate in candidates:
        resolved = candidate.resolve()
        if (resolved / "config.json").is_file() and any(resolved == r or r in resolved.parents for r in roots):
            return CausalLMSource("lora", folder, folder.resolve().name, base=resolved, config=check_folder(resolved))
    raise BadInput(f"{folder / 'adapter_config.json'}: base_model_name_or_path {base_name!r} is not a model folder inside "
                   f"{folder.resolve().parent}; save the base model there and name it relative to the adapter (nothing is downloaded)")


def _require(module: str, message: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise MissingEnvironment(message)


def float_folder(source: CausalLMSource, work: Path) -> Path:
    """The float Hugging Face folder to export: the user's own folder, or one written under `work`
    (a GGUF dequantized by transformers, a LoRA merged into its base)."""
    if source.kind == "hf":
        return source.path
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    # heavy: transformers/torch (and peft) only when a folder has to be written
    import transformers

    transformers.logging.set_verbosity_error()
    out = work / "float_model"
    try:
        if source.kind == "gguf":
            _require("accelerate", "GGUF files need accelerate: pip install 'edgeopt[llm]'")
            folder, name = str(source.path.parent), source.path.name
            model = transformers.AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, local_files_only=True,
                                                                      dtype="float32")
            tokenizer = transformers.AutoTokenizer.from_pretrained(folder, gguf_file=name, local_files_only=True)
        else:
            _require("peft", "LoRA adapters need peft: pip install 'edgeopt[llm]'")
            import peft

            base = transformers.AutoModelForCausalLM.from_pretrained(str(source.base), local_files_only=True,
                                                                     dtype="float32", use_safetensors=True)
            model = peft.PeftModel.from_pretrained(base, str(source.path), local_files_only=True).merge_and_unload()
            tokenizer = transformers.AutoTokenizer.from_pretrained(str(source.path if (source.path / "tokenizer.json").is_file()
                                                                       else source.base), local_files_only=True)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise BadInput(f"{source.path}: cannot load the model ({cause_text(exc)})") from None
    model.save_pretrained(str(out), safe_serialization=True)
    tokenizer.save_pretrained(str(out))
    return out


def model_facts(folder: Path) -> dict:
    """Context length, vocabulary, special ids, chat template: from the model, not from guesses."""
    config = _read_json(folder / "config.json")
    tokenizer_config = _read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
    heads = config.get("num_attention_heads") or config.get("n_head")
    hidden = config.get("hidden_size") or config.get("n_embd")
    eos = config.get("eos_token_id")
    return {
        "model_type": config.get("model_type"),
        "architecture": (config.get("architectures") or ["?"])[0],
        "context_length": config.get("max_position_embeddings") or config.get("n_positions"),
        "vocab_size": config.get("vocab_size"),
        "hidden_size": hidden,
        "num_layers": config.get("num_hidden_layers") or config.get("n_layer"),
        "num_heads": heads,
        "num_kv_heads": config.get("num_key_value_heads") or heads,
        "head_size": config.get("head_dim") or (hidden // heads if hidden and heads else None),
        "bos_token_id": config.get("bos_token_id"),
        "eos_token_id": eos,
        "pad_token_id": config.get("pad_token_id") if config.get("pad_token_id") is not None else (eos[0] if isinstance(eos, list) else eos),
        "tied_embeddings": bool(config.get("tie_word_embeddings", config.get("model_type") == "gpt2")),
        "chat_template": bool(tokenizer_config.get("chat_template")) or (folder / "chat_template.jinja").is_file(),
    }
