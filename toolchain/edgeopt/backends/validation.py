"""What a backend tells the validate stage: which artifact to judge, how, and what identifies it
(for the stage's cache key)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from edgeopt.data.dataset import Dataset
from edgeopt.metrics.fidelity import ValidateResult
from edgeopt.models.spec import ModelSpec

Runner = Callable[[Dataset, ModelSpec, float, Path], ValidateResult]  # (data, spec, latency seconds, stage folder)


@dataclass
class Validation:
    params: dict
    inputs: dict[str, str | None]
    run: Runner
    reads: tuple[str, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = field(default_factory=tuple)  # for the summary: what this validation does not judge
