"""A calibration or evaluation set: one array per model input (first axis = sample), optional labels."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict


@dataclass
class Dataset:
    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None
    source: Path
    sha256: str = ""

    def __post_init__(self) -> None:
        if not self.sha256:
            digest = hashlib.sha256()
            for name in sorted(self.inputs):
                digest.update(name.encode())
                digest.update(np.ascontiguousarray(self.inputs[name]).tobytes())
            if self.labels is not None:
                digest.update(np.ascontiguousarray(self.labels).tobytes())
            self.sha256 = digest.hexdigest()

    def __len__(self) -> int:
        return len(next(iter(self.inputs.values())))

    def batch(self, start: int, stop: int) -> dict[str, np.ndarray]:
        return {name: array[start:stop] for name, array in self.inputs.items()}

    def subset(self, count: int, seed: int = 0) -> "Dataset":
        """A deterministic sample of `count` rows (all rows, in order, when there are not more)."""
        if count >= len(self):
            return self
        rows = np.sort(np.random.default_rng(seed).choice(len(self), size=count, replace=False))
        labels = self.labels[rows] if self.labels is not None else None
        return Dataset({k: v[rows] for k, v in self.inputs.items()}, labels, self.source)

    def sample_hashes(self) -> set[str]:
        """Per-sample content hashes, to detect calibration data that overlaps evaluation data."""
        hashes = set()
        for row in range(len(self)):
            digest = hashlib.sha256()
            for name in sorted(self.inputs):
                digest.update(np.ascontiguousarray(self.inputs[name][row]).tobytes())
            hashes.add(digest.hexdigest())
        return hashes


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
