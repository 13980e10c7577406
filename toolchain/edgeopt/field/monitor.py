"""The field monitor: how a deployed INT8 model's quantized activations sit against their
calibrated ranges on the inputs it actually gets.

Python 3.8, numpy and ONNX Runtime only, so it ships in CPU and GPU packages (as
field_monitor.py, with field_capture.py beside it) and runs where the model runs, nothing to pip
install. It runs the build's Q/DQ ONNX (model.int8.onnx) with its quantized activations exposed as extra
outputs (`exposing`: no onnx package needed) on a sample of inputs and records,
per quantized tensor, the share of values outside the representable range (saturation: those
clip) and a histogram on the calibration histogram's bins, from which the population stability
index (PSI) against calibration is computed. On a TensorRT device the engine keeps serving; the
monitor runs the Q/DQ model on ONNX Runtime CPU beside it on the sampled inputs only (its cost is
in docs/FIELD.md). Recording only: judging against thresholds is edgeopt feedback's (field/feedback.py).

    python3 field_monitor.py model.int8.onnx calib_stats.json --field captured/ --out field_stats.json

In a running process: `monitor = FieldMonitor(onnx, stats, rate=0.01)`; after each inference
`monitor.observe(feeds)`; `monitor.write("field_stats.json")` now and then.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import random
import sys
import tempfile
from typing import Dict, List, Optional

import numpy as np

if __package__:  # imported as edgeopt.field.monitor
    from .capture import Capture
else:  # run as a script from a package, field_capture.py beside it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from field_capture import Capture

SCHEMA_VERSION = 1
FIELD_STATS = "field_stats.json"  # what the monitor writes and edgeopt feedback reads
DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
          "tensor(int64)": np.int64, "tensor(int32)": np.int32, "tensor(uint8)": np.uint8, "tensor(int8)": np.int8}
MAX_VALUES = 1 << 16  # values per tensor per sample that go into the histogram (saturation counts all)


def edges(tensor: dict) -> np.ndarray:
    """The histogram's bin edges: `bins` equal bins over the representable range, half a
    quantization step beyond each end (a value there rounds to the end code; past it, it clips)."""
    half = tensor["scale"] / 2
    return np.linspace(tensor["low"] - half, tensor["high"] + half, tensor["bins"] + 1)


def counts(values: np.ndarray, tensor: dict) -> np.ndarray:
    """[below range, bin 0 .. bin n-1, above range]: one pass, no sort. Saturation (below +
    above) counts every value; the in-range bins a deterministic stride of at most MAX_VALUES."""
    values = np.asarray(values, dtype=np.float32).ravel()
    if tensor.get("activation") and any(b is not None for b in tensor["activation"]):  # a Relu/Clip folded into the quantizer: its own bounds first (calib_stats.py)
        low_bound, high_bound = tensor["activation"]
        values = np.clip(values, low_bound, high_bound)
    bins, half = tensor["bins"], tensor["scale"] / 2
    low, high = tensor["low"] - half, tensor["high"] + half
    below, above = int(np.count_nonzero(values < low)), int(np.count_nonzero(values > high))
    step = max(1, values.size // MAX_VALUES)
    kept = values[::step]
    kept = kept[(kept >= low) & (kept <= high)]
    index = np.minimum(((kept - low) * (bins / (high - low))).astype(np.int64), bins - 1)
    inside = np.bincount(index, minlength=bins).astype(np.int64)
    scale = (values.size - below - above) / max(1, len(kept))  # the stride's counts, scaled to all in-range values
    return np.concatenate([[below], np.round(inside * scale).astype(np.int64), [above]])


def psi(expected: List[int], actual: List[int]) -> float:
    """Population stability index of `actual` against `expected` over the same bins, each share
    smoothed by half a count (an empty bin on one side does not make it infinite)."""
    e, a = np.asarray(expected, dtype=np.float64) + 0.5, np.asarray(actual, dtype=np.float64) + 0.5
    e, a = e / e.sum(), a / a.sum()
    return float(((a - e) * np.log(a / e)).sum())


def saturation(histogram: List[int], low: float = -1.0) -> float:
    """Share of values that clip. Below a range that starts at exactly 0 is not clipping but a
    ReLU: ONNX Runtime's quantizer removes a Relu before a QuantizeLinear whose zero point is the
    lowest code, and the quantizer does its work (measured on the digits example: half of every
    such tensor is below 0, by design). Only above-range values count there."""
    total = float(sum(histogram))
    clipped = histogram[-1] + (histogram[0] if low < 0 else 0)
    return clipped / total if total else 0.0


class FieldMonitor:
    """Runs the monitor model on a `rate` share of the inputs it is shown and accumulates per-tensor
    histograms. `rate` 1.0 observes everything (replaying a captured folder); sampling is a seeded
    random draw, so a replay of the same stream samples the same inputs."""

    def __init__(self, model_onnx: str, calib_stats: dict, rate: float = 0.01, seed: int = 0, threads: int = 1,
                 capture: Optional[Capture] = None, session=None):
        if not 0 < rate <= 1:
            raise ValueError("rate must be in (0, 1], got {}".format(rate))
        self.stats, self.rate, self.capture = calib_stats, rate, capture
        self.tensors = calib_stats["tensors"]  # name -> {low, high, scale, zero_point, bins, histogram}
        self.session = session or _session(model_onnx, threads, list(self.tensors))
        self.inputs = {i.name: DTYPES.get(i.type) for i in self.session.get_inputs()}  # a capture keeps float16
        outputs = [o.name for o in self.session.get_outputs()]
        self.names = [n for n in self.tensors if n in outputs]
        self.missing = [n for n in self.tensors if n not in outputs]
        self.random = random.Random(seed)
        self.seen = self.sampled = 0
        self.field = {n: np.zeros(self.tensors[n]["bins"] + 2, dtype=np.int64) for n in self.names}

    def observe(self, feeds: Dict[str, np.ndarray]) -> bool:
        """Call after each inference; runs the monitor on a `rate` share. True when it did."""
        self.seen += 1
        if self.rate < 1 and self.random.random() >= self.rate:
            return False
        self.record(feeds)
        return True

    def record(self, feeds: Dict[str, np.ndarray]) -> None:
        feed = {k: np.asarray(v, dtype=self.inputs[k]) if self.inputs[k] else v for k, v in feeds.items() if k in self.inputs}
        values = self.session.run(self.names, feed)
        for name, array in zip(self.names, values):
            self.field[name] += counts(array, self.tensors[name])
        self.sampled += len(next(iter(feeds.values())))
        if self.capture is not None:
            self.capture.save(feeds)

    def document(self) -> dict:
        """field_stats.json: per tensor the field histogram, its saturation and PSI against calibration."""
        tensors = {}
        for name in self.names:
            histogram = [int(c) for c in self.field[name]]
            calib = self.tensors[name]["histogram"]
            low = self.tensors[name]["low"]
            tensors[name] = {"saturation": round(saturation(histogram, low), 8),
                             "calibration_saturation": round(saturation(calib, low), 8),
                             "psi": round(psi(calib, histogram), 6) if sum(histogram) else None,
                             "histogram": histogram}
        doc = {"schema_version": SCHEMA_VERSION, "kind": "field_stats", "model_sha256": self.stats.get("model_sha256"),
               "rate": self.rate, "seen": self.seen, "sampled": self.sampled, "tensors": tensors,
               "not_observed": self.missing}
        if self.capture is not None:
            doc["capture"] = self.capture.summary()
        return doc

    def write(self, path: str = FIELD_STATS) -> str:
        """field_stats.json, written to a temporary name and renamed (never half a file)."""
        folder = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".field_stats-", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self.document(), handle, indent=1)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | 0x80 if value else byte)
        if not value:
            return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def exposing(model: bytes, names: List[str]) -> bytes:
    """The ONNX model with `names` also as float graph outputs, without the onnx package: a second
    ModelProto.graph (field 7) holding only GraphProto.output entries (field 12) is appended, and
    protobuf merges a repeated occurrence of an embedded message into the first (its repeated
    fields concatenate). Tested bit-identical to the same model edited with onnx."""
    float_tensor = _field(1, _varint(1 << 3) + _varint(1))  # TypeProto.tensor_type {elem_type: FLOAT}
    outputs = b"".join(_field(12, _field(1, name.encode()) + _field(2, float_tensor)) for name in names)
    return model + _field(7, outputs)


def _session(path: str, threads: int, names: List[str]):
    import onnxruntime as ort  # the one runtime the monitor needs (CPU packages and beside the engine)

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    with open(path, "rb") as handle:
        model = handle.read()
    return ort.InferenceSession(exposing(model, names), options, providers=["CPUExecutionProvider"])


def read_samples(folder: str) -> List[Dict[str, np.ndarray]]:
    """A captured folder: .npz (one array per input name) or .npy (the single input) files, no pickle."""
    paths = sorted(glob.glob(os.path.join(folder, "*.npz")) + glob.glob(os.path.join(folder, "*.npy")))
    samples = []
    for path in paths:
        with open(path, "rb") as handle:
            loaded = np.load(handle, allow_pickle=False)
            samples.append({"": loaded} if isinstance(loaded, np.ndarray) else {k: loaded[k] for k in loaded.files})
    return samples


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Field statistics of a deployed INT8 model (numpy + ONNX Runtime).")
    parser.add_argument("model_onnx", help="the build's Q/DQ ONNX (model.int8.onnx)")
    parser.add_argument("calib_stats")
    parser.add_argument("--field", required=True, help="folder of captured .npz/.npy samples")
    parser.add_argument("--out", default=FIELD_STATS)
    parser.add_argument("--rate", type=float, default=1.0)
    args = parser.parse_args(argv)
    try:
        with open(args.calib_stats) as handle:
            stats = json.load(handle)
        monitor = FieldMonitor(args.model_onnx, stats, rate=args.rate)
        samples = read_samples(args.field)
    except (OSError, ValueError, KeyError) as exc:
        sys.stderr.write("field_monitor: error: {}\n".format(exc))
        return 2
    if not samples:
        sys.stderr.write("field_monitor: error: {}: no .npz or .npy samples\n".format(args.field))
        return 2
    for sample in samples:
        if "" in sample:
            sample = {next(iter(monitor.inputs)): sample[""]}
        monitor.observe(sample)
    print(monitor.write(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
