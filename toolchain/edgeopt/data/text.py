"""Texts for models with a tokenizer: `.txt` (one text per line) or `.jsonl` (`{"text": ...,
"label": ...}`), tokenized with the model's own tokenizer and padded or truncated to one sequence
length, so calibration sees the shapes the device runs. Labels are class indices or class names
(the model's id2label); any bad line is one error naming its line number.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from edgeopt.data.dataset import Dataset, ReaderOptions
from edgeopt.errors import BadInput, cause_text
from edgeopt.models.spec import InputSpec

SUFFIXES = (".txt", ".jsonl")


def read_texts(path: Path, inputs: list[InputSpec], labels: list[str], options: ReaderOptions) -> Dataset:
    """Tokenize `path` for `inputs`; `labels` are the model's class names (empty: no labels kept)."""
    if options.tokenizer is None:
        raise BadInput(f"{path}: text data needs a model with a tokenizer (a Hugging Face folder)")
    texts, raw_labels = _read_jsonl(path) if path.suffix == ".jsonl" else (_read_txt(path), None)
    if not texts:
        raise BadInput(f"{path}: holds no texts")
    seq_len = options.seq_len or inputs[0].shape[1]
    tokenizer = _tokenizer(str(options.tokenizer), options.trust_remote_code)
    encoded = tokenizer(texts, padding="max_length", truncation=True, max_length=seq_len, return_tensors="np")
    arrays = {}
    for spec in inputs:
        if spec.name in encoded:
            arrays[spec.name] = np.asarray(encoded[spec.name], dtype=spec.dtype)
        elif spec.name == "token_type_ids":  # a tokenizer that does not emit them: one segment
            arrays[spec.name] = np.zeros((len(texts), seq_len), dtype=spec.dtype)
        else:
            raise BadInput(f"{options.tokenizer}: the tokenizer does not produce the model input '{spec.name}'")
    label_array = _label_indices(path, raw_labels, labels) if raw_labels is not None and labels else None
    return Dataset(arrays, label_array, Path(path))


@functools.lru_cache(maxsize=4)
def _tokenizer(folder: str, trust_remote_code: bool):
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001 - tokenizers raises its own Exception for a malformed tokenizer.json
        if isinstance(exc, ImportError):
            raise
        first = cause_text(exc, 200)
        raise BadInput(f"{folder}: cannot load the tokenizer ({first})") from None


def text_lines(path: Path, what: str = "the text data") -> list[str]:
    """Lines of a regular UTF-8 file, each bounded (a 50 MB single line is refused, not allocated)."""
    from edgeopt.safe_io import read_lines

    return list(read_lines(path, what))


def _read_txt(path: Path) -> list[str]:
    return [line.strip() for line in text_lines(path) if line.strip()]


def jsonl_objects(path: Path, what: str = "the text data"):
    """(line number, object) for each non-blank line of a .jsonl file, read within safe_io's bounds;
    a line that is not JSON, or not an object, is bad input naming the line."""
    for number, line in enumerate(text_lines(path, what), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise BadInput(f"{path}:{number}: not a JSON object")
        yield number, record


def _read_jsonl(path: Path) -> tuple[list[str], list | None]:
    texts, labels, unlabeled = [], [], None
    for number, record in jsonl_objects(path):
        if not isinstance(record.get("text"), str):
            raise BadInput(f"{path}:{number}: expected an object with a string 'text'")
        texts.append(record["text"])
        if "label" in record:
            labels.append((number, record["label"]))
        elif unlabeled is None:
            unlabeled = number
    if labels and unlabeled is not None:
        raise BadInput(f"{path}:{unlabeled}: no 'label' while other lines have one")
    return texts, labels or None


def _label_indices(path: Path, raw: list, names: list[str]) -> np.ndarray:
    by_name = {name: index for index, name in enumerate(names)}
    indices = []
    for number, label in raw:
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise BadInput(f"{path}:{number}: label {label!r} must be a class index or name")
        index = label if isinstance(label, int) else by_name.get(label)
        if index is None and isinstance(label, str) and label.isdigit():
            index = int(label)
        if index is None or not 0 <= index < len(names):
            raise BadInput(f"{path}:{number}: unknown label {label!r} (the model's classes: {', '.join(names)})")
        indices.append(index)
    return np.asarray(indices, dtype=np.int64)
