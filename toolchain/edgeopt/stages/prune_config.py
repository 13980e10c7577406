"""The prune stage's parameters, below both prune.py (the stage, no torch) and prune_torch.py
(the torch work), so that neither imports the other at module level."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["channels", "2:4"]
Importance = Literal["magnitude", "bn", "taylor"]

class PruneConfig(BaseModel):
    """What to prune and how; one field per CLI option (`--prune`, `--prune-importance`, ...)."""

    model_config = ConfigDict(frozen=True)

    mode: Mode = Field(description="channels: remove channels; 2:4: semi-structured sparsity masks")
    ratio: float | None = Field(None, gt=0, lt=1, description="fraction of channels removed per layer")
    importance: Importance = Field("magnitude", description="channel ranking: weight L2, BN scale, or Taylor")
    channel_multiple: int = Field(8, ge=1, description="kept channel counts are multiples of this")
    ignore: tuple[str, ...] = Field((), description="module names left untouched")
    finetune_steps: int = Field(0, ge=0, description="recovery distillation steps (0: none)")
    seed: int = 0
