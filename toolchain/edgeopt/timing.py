"""Latency statistics and the engine timing loop, as trtexec computes them; standard library only.

One module for the host harness (bench.py), the TensorRT backend and the device runner, which
ships it beside run_on_device.py (Python >= 3.8, no edgeopt there): two copies once used two
percentile rules, and a device number was compared with a host baseline across them.

trtexec's rules: the median of the sorted times (the mean of the two middle ones for an even
count); a percentile p is the largest time left after dropping the top (100 - p) %; the
coefficient of variance is the population standard deviation over the mean.
"""

from __future__ import annotations

import math
import time
from fractions import Fraction
from typing import Any, Callable, Dict, List, Sequence

PERCENTILES = (10, 90, 95, 99)


def percentile(sorted_ms: Sequence[float], p: float) -> float:
    """trtexec's index n - 1 - int((100 - p) n / 100), i.e. ceil(p n / 100) - 1 (exact arithmetic)."""
    n = len(sorted_ms)
    if n == 0:
        raise ValueError("no timings")
    rank = Fraction(str(p)) * n / 100
    return float(sorted_ms[max(int(math.ceil(rank)) - 1, 0)])


def median(sorted_ms: Sequence[float]) -> float:
    n = len(sorted_ms)
    if n == 0:
        raise ValueError("no timings")
    return float(sorted_ms[n // 2]) if n % 2 else (float(sorted_ms[n // 2 - 1]) + float(sorted_ms[n // 2])) / 2


def summary(times_ms: Sequence[float]) -> Dict[str, Any]:
    """p10 p50 p90 p95 p99, mean, cv, min, max (ms, 4 decimals) and the run count."""
    times = sorted(float(t) for t in times_ms)
    if not times:
        raise ValueError("no timings to summarize")
    n = len(times)
    mean = math.fsum(times) / n
    std = math.sqrt(math.fsum((t - mean) ** 2 for t in times) / n)
    out = {"p50": round(median(times), 4), "mean": round(mean, 4), "cv": round(std / mean if mean > 0 else 0.0, 4),
           "runs": n, "min": round(times[0], 4), "max": round(times[-1], 4)}  # type: Dict[str, Any]
    out.update({"p{}".format(p): round(percentile(times, p), 4) for p in PERCENTILES})
    return out


def time_runs(session: Any, warmup_s: float, duration_s: float, min_runs: int,
              clock: Callable[[], float] = time.perf_counter) -> Dict[str, Any]:
    """Time an engine session as trtexec does: warm up for `warmup_s`, then run until both
    `duration_s` passed and `min_runs` ran. Each run: event, H2D copy, event, execute (its host
    time is the enqueue time), event, D2H copy, event, synchronize. `session` offers copy_inputs,
    execute, copy_outputs, synchronize, event, record, elapsed_ms. Returns the single-run times
    (ms) per phase, and the timed wall seconds as "elapsed"."""
    marks = [session.event() for _ in range(4)]
    start = clock()
    while clock() - start < warmup_s:
        session.copy_inputs()
        session.execute()
        session.copy_outputs()
        session.synchronize()
    runs = {"host_latency": [], "gpu_compute": [], "h2d": [], "d2h": [], "enqueue": []}  # type: Dict[str, List[float]]
    begin = clock()
    while True:
        session.record(marks[0])
        session.copy_inputs()
        session.record(marks[1])
        before = clock()
        session.execute()
        runs["enqueue"].append((clock() - before) * 1000)
        session.record(marks[2])
        session.copy_outputs()
        session.record(marks[3])
        session.synchronize()
        for key, (a, b) in (("h2d", (0, 1)), ("gpu_compute", (1, 2)), ("d2h", (2, 3)), ("host_latency", (0, 3))):
            runs[key].append(session.elapsed_ms(marks[a], marks[b]))
        elapsed = clock() - begin
        if elapsed >= duration_s and len(runs["host_latency"]) >= min_runs:
            return dict(runs, elapsed=elapsed)
