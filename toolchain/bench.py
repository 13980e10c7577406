"""Latency measurement: warm up by time, then time single runs for a fixed duration.

Percentiles come from individual runs (never an average of a loop), so p99 shows the jitter that
a user of the device sees. Two models compared by a caller are measured in the same process with
the same thread count, one after the other, and are best read as a ratio.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from edgeopt import runtime
from edgeopt.data.dataset import Dataset


class Latency(BaseModel):
    p50: float
    p90: float
    p99: float
    mean: float
    cv: float  # coefficient of variation of single-run times
    runs: int
    threads: int


def summarize(times_ms: list[float] | np.ndarray, threads: int) -> Latency:
    times = np.asarray(times_ms, dtype=np.float64)
    mean = float(times.mean())
    return Latency(
        p50=round(float(np.percentile(times, 50)), 4),
        p90=round(float(np.percentile(times, 90)), 4),
        p99=round(float(np.percentile(times, 99)), 4),
        mean=round(mean, 4),
        cv=round(float(times.std() / mean) if mean else 0.0, 4),
        runs=int(times.size),
        threads=threads,
    )


def measure_onnx(models: dict[str, Path], data: Dataset, threads: int, warmup_s: float = 0.3,
                 duration_s: float = 2.0, block: int = 10, min_runs: int = 30) -> dict[str, Latency]:
    """Batch-1 latency of each ONNX model on this host's CPU, on real samples.

    The models run in alternating blocks of `block` runs, so a slow patch of the machine (another
    process, frequency scaling) hits all of them alike and their ratio stays honest.
    """
    sessions = {key: runtime.session(path, threads=threads) for key, path in models.items()}
    feeds = {}
    for key, sess in sessions.items():
        names = {i.name for i in sess.get_inputs()}
        feeds[key] = [{k: v for k, v in data.batch(i, i + 1).items() if k in names}
                      for i in range(min(len(data), 16))]
    for key, sess in sessions.items():
        deadline = time.perf_counter() + warmup_s / len(sessions)
        runs = 0
        while time.perf_counter() < deadline or runs < 3:
            sess.run(None, feeds[key][runs % len(feeds[key])])
            runs += 1
    times: dict[str, list[float]] = {key: [] for key in sessions}
    deadline = time.perf_counter() + duration_s
    while time.perf_counter() < deadline or min(len(t) for t in times.values()) < min_runs:
        for key, sess in sessions.items():
            for _ in range(block):
                feed = feeds[key][len(times[key]) % len(feeds[key])]
                start = time.perf_counter()
                sess.run(None, feed)
                times[key].append((time.perf_counter() - start) * 1000)
    return {key: summarize(values, threads) for key, values in times.items()}
