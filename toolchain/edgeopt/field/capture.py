"""Field capture with data protection: what a device keeps of its inputs for recalibration.

Python 3.8 and numpy only (shipped beside the field monitor as field_capture.py). It keeps only
what calibration needs: the model's own input tensors (a photo already resized and normalized to
the model's input, a text already token ids), never a source file; float tensors as float16
(half the bytes; calibration ranges need far less precision) unless `keep_inputs`. Caps on the
sample count and the bytes written; each sample is written to a temporary name and renamed, so a
crash never leaves half a sample. Nothing here uploads anything, and edgeopt never packages a
capture folder (field/package_files lists what a package gets; tests check).
"""

from __future__ import annotations

import io
import os
import tempfile
from typing import Dict

import numpy as np

MAX_SAMPLES = 64  # the recalibration share edgeopt feedback --rebuild uses at most
MAX_BYTES = 32 * 1024 * 1024
PREFIX = "field-"


def protected(feeds: Dict[str, np.ndarray], keep_inputs: bool = False) -> Dict[str, np.ndarray]:
    """The arrays a capture stores: float tensors as float16 unless `keep_inputs`; integer
    tensors (token ids, masks) as they are."""
    out = {}
    for name, array in feeds.items():
        array = np.asarray(array)
        out[name] = array.astype(np.float16) if array.dtype.kind == "f" and not keep_inputs else array
    return out


def encoded(arrays: Dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


class Capture:
    """Saves model inputs into `folder`, one .npz per sample, up to `max_samples` and `max_bytes`."""

    def __init__(self, folder: str, max_samples: int = MAX_SAMPLES, max_bytes: int = MAX_BYTES,
                 keep_inputs: bool = False):
        if max_samples < 1 or max_bytes < 1:
            raise ValueError("capture caps must be positive (max_samples {}, max_bytes {})".format(max_samples, max_bytes))
        self.folder, self.max_samples, self.max_bytes, self.keep_inputs = folder, max_samples, max_bytes, keep_inputs
        os.makedirs(folder, exist_ok=True)
        existing = [n for n in os.listdir(folder) if n.startswith(PREFIX) and n.endswith(".npz")]
        self.saved = len(existing)
        self.bytes = sum(os.path.getsize(os.path.join(folder, n)) for n in existing)
        self.refused = 0

    @property
    def full(self) -> bool:
        return self.saved >= self.max_samples or self.bytes >= self.max_bytes

    def save(self, feeds: Dict[str, np.ndarray]) -> bool:
        """Keep one sample (the first row of each input); False when a cap is reached."""
        if self.full:
            self.refused += 1
            return False
        data = encoded(protected({k: np.asarray(v)[:1] for k, v in feeds.items()}, self.keep_inputs))
        if self.bytes + len(data) > self.max_bytes:
            self.refused += 1
            return False
        path = os.path.join(self.folder, "{}{:06d}.npz".format(PREFIX, self.saved))
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".capture-", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        self.saved += 1
        self.bytes += len(data)
        return True

    def summary(self) -> dict:
        return {"folder": self.folder, "samples": self.saved, "bytes": self.bytes, "refused": self.refused,
                "max_samples": self.max_samples, "max_bytes": self.max_bytes, "keep_inputs": self.keep_inputs}
