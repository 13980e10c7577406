"""Calibration and evaluation data readers; `load_dataset` picks one by the path's form."""

from __future__ import annotations

from pathlib import Path


from edgeopt.data.dataset import Dataset, ReaderOptions  # noqa: F401  (importable from here as before)
from edgeopt.errors import BadInput
from edgeopt.models.spec import ModelSpec


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
