"""Calibration and evaluation data readers; `load_dataset` picks one by the path's form."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.models.spec import ModelSpec


class ReaderOptions(BaseModel):
    """How to turn raw files into model inputs; unset fields come from the model's metadata."""

    model_config = ConfigDict(frozen=True)

    size: tuple[int, int] | None = None  # images: height, width
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    layout: str | None = None  # NCHW or NHWC
    seq_len: int | None = None  # texts: pad/truncate to this many tokens
    tokenizer: Path | None = None  # texts: folder holding the model's tokenizer files
    trust_remote_code: bool = False  # texts: allow a tokenizer that ships its own code


def load_dataset(path: str | Path, spec: ModelSpec, what: str = "data",
                 options: ReaderOptions | None = None) -> Dataset:
    """Read `path` for `spec`'s inputs. `what` ("calibration", "evaluation") names it in errors."""
    path = Path(path)
    options = options or ReaderOptions()
    if not path.exists():
        raise BadInput(f"{path}: {what} data not found")
    if path.suffix == ".npz":
        from edgeopt.data.npz import read_npz

        return read_npz(path, spec.inputs)
    if path.suffix in (".txt", ".jsonl"):
        from edgeopt.data.text import read_texts

        return read_texts(path, spec.inputs, spec.labels if spec.task == "classification" else [], options)
    if path.is_dir():
        from edgeopt.data.images import read_image_folder

        return read_image_folder(path, spec.inputs, spec.preprocessing, options)
    raise BadInput(f"{path}: unsupported {what} data format (expected .npz, an image folder, or .txt/.jsonl texts)")
