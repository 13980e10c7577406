"""What every exporter returns and checks against (the torch exporter in export.py, the Hugging
Face one in export_huggingface.py): the shared types sit below both, so neither imports the other
at module level."""

from __future__ import annotations

from pydantic import BaseModel

OPSET = 18  # the default; the pipeline passes the target's (backends.export_opset: 17 for TensorRT 8.x)
PARITY_SAMPLES = 64
PARITY_TOLERANCE = 1e-3  # max abs difference, relative to the largest output magnitude


class ExportResult(BaseModel):
    opset: int
    exporter: str
    parity_samples: int
    max_abs_diff: float
    output_scale: float
