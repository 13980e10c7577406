"""Calibration and evaluation data readers; `load_dataset` picks one by the path's form."""

from __future__ import annotations

from pathlib import Path

from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.models.spec import ModelSpec


def load_dataset(path: str | Path, spec: ModelSpec, what: str = "data") -> Dataset:
    """Read `path` for `spec`'s inputs. `what` ("calibration", "evaluation") names it in errors."""
    path = Path(path)
    if not path.exists():
        raise BadInput(f"{path}: {what} data not found")
    if path.suffix == ".npz":
        from edgeopt.data.npz import read_npz

        return read_npz(path, spec.inputs)
    raise BadInput(f"{path}: unsupported {what} data format (expected .npz)")
