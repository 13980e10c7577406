"""Latency measurement for every target, with one summary of single-run times.

CPU targets: ONNX Runtime sessions on this host (`measure_onnx`). GPU targets: a TensorRT engine
on the device (`time_engine`), timed as trtexec times it: warm-up by time, then a measured
duration (and a minimum run count), CUDA events around the input copy, the inference and the
output copy, host latency (H2D + GPU compute + D2H) apart from GPU compute time, and a warning
when the coefficient of variance is above 1 %.

Both go through `summarize`, which follows trtexec's rules: the median of the sorted times, a
percentile p as the largest time left after dropping the top (100 - p) %, the coefficient of
variance as the population standard deviation over the mean. Percentiles come from individual
runs (never an average of a loop), so p99 shows the jitter that a user of the device sees. Two
models compared by a caller are measured in the same process with the same thread count, one
after the other, and are best read as a ratio.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
from pydantic import BaseModel, Field

from edgeopt import runtime
from edgeopt.data.dataset import Dataset

CV_WARNING = 0.01  # trtexec warns when GPU compute time's coefficient of variance is above 1 %


class Latency(BaseModel):
    """Single-run times in ms. `p50` is the median (the mean of the two middle runs for an even count)."""

    p10: float | None = None  # near the uncontended speed: a shared host's bursts skew p50
    p50: float
    p90: float
    p99: float
    mean: float
    cv: float  # coefficient of variation of single-run times (std / mean; 0.01 = 1 %)
    runs: int
    threads: int  # host threads running the model; 1 for an engine (one thread enqueues, as in trtexec)
    min: float | None = None
    max: float | None = None
    p95: float | None = None


def percentile(sorted_ms: list[float] | np.ndarray, p: float) -> float:
    """trtexec's rule: drop the top (100 - p) % of the sorted times, take the largest left."""
    n = len(sorted_ms)
    if n == 0:
        raise ValueError("no timings")
    exclude = int((100 - p) * n / 100)  # trtexec: int((1 - p / 100) * n), computed without 0.1 rounding down
    return float(sorted_ms[max(n - 1 - exclude, 0)])


def summarize(times_ms: list[float] | np.ndarray, threads: int = 1) -> Latency:
    """Percentiles, mean and coefficient of variance of single-run times, as trtexec reports them."""
    times = np.sort(np.asarray(times_ms, dtype=np.float64))
    n = int(times.size)
    if n == 0:
        raise ValueError("no timings to summarize")
    median = float(times[n // 2]) if n % 2 else float(times[n // 2 - 1] + times[n // 2]) / 2
    mean = float(times.mean())
    std = math.sqrt(float(((times - mean) ** 2).mean()))
    return Latency(
        p10=round(percentile(times, 10), 4), p50=round(median, 4), p90=round(percentile(times, 90), 4),
        p99=round(percentile(times, 99), 4), mean=round(mean, 4), cv=round(std / mean if mean > 0 else 0.0, 4),
        runs=n, threads=threads, min=round(float(times[0]), 4), max=round(float(times[-1]), 4),
        p95=round(percentile(times, 95), 4),
    )


# --- CPU: ONNX Runtime on this host -----------------------------------------------------------


def measure_onnx(models: dict[str, Path], data: Dataset, threads: int, warmup_s: float = 0.3,
                 duration_s: float = 2.0, block: int = 10, min_runs: int = 30) -> dict[str, Latency]:
    """Batch-1 latency of each ONNX model on this host's CPU, on real samples.

    The models run in alternating blocks of `block` runs, so a slow patch of the machine (another
    process, frequency scaling) hits all of them alike and their ratio stays honest.
    """
    sessions = {key: runtime.session(path, threads=threads, spinning=len(models) == 1) for key, path in models.items()}
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


# --- GPU: a TensorRT engine on the device -----------------------------------------------------


class TimedSession(Protocol):
    """What engine timing needs: async copies and execution on one stream, and CUDA events
    (edgeopt.stages.engine.TensorRTSession on a device; a scripted fake in tests)."""

    def copy_inputs(self) -> None: ...
    def execute(self) -> None: ...
    def copy_outputs(self) -> None: ...
    def synchronize(self) -> None: ...
    def event(self) -> Any: ...
    def record(self, event: Any) -> None: ...
    def elapsed_ms(self, start: Any, end: Any) -> float: ...


class EngineTiming(BaseModel):
    """trtexec's performance summary. Every time is per inference (one batch of `batch` samples)."""

    host_latency: Latency = Field(description="H2D + GPU compute + D2H from CUDA events (trtexec's 'Latency')")
    gpu_compute: Latency = Field(description="the engine alone on the GPU (trtexec's 'GPU Compute Time')")
    h2d: Latency
    d2h: Latency
    enqueue: Latency = Field(description="host time spent in the execute call")
    batch: int = 1
    runs: int
    duration_s: float = Field(description="host wall time of the timed runs")
    throughput_qps: float = Field(description="inferences per second; samples per second = qps x batch")
    warmup_s: float
    warnings: list[str] = Field(default_factory=list)

    def latency_ms(self) -> dict[str, float]:
        """The `latency_ms` block of `edgeopt build --json`: host latency, as trtexec's 'Latency'."""
        return {"p50": self.host_latency.p50, "p90": self.host_latency.p90, "p99": self.host_latency.p99}

    def summary_lines(self) -> list[str]:
        """trtexec's performance summary, in its words."""
        def line(label: str, stats: Latency) -> str:
            return (f"{label}: min = {stats.min} ms, max = {stats.max} ms, mean = {stats.mean} ms, median = "
                    f"{stats.p50} ms, percentile(90%) = {stats.p90} ms, percentile(95%) = {stats.p95} ms, "
                    f"percentile(99%) = {stats.p99} ms, CV = {stats.cv:.2%}")

        lines = [f"Throughput: {self.throughput_qps} qps (batch {self.batch}), {self.runs} runs in {self.duration_s} s",
                 line("Latency", self.host_latency), line("Enqueue Time", self.enqueue), line("H2D Latency", self.h2d),
                 line("GPU Compute Time", self.gpu_compute), line("D2H Latency", self.d2h)]
        return lines + [f"warning: {w}" for w in self.warnings]


def _engine_warnings(timing: EngineTiming, cv_threshold: float) -> list[str]:
    warnings = []
    for label, stats in (("GPU compute time", timing.gpu_compute), ("host latency", timing.host_latency)):
        if stats.cv > cv_threshold:
            warnings.append(f"{label} is unstable, coefficient of variance {stats.cv:.2%} (over {cv_threshold:.0%}): "
                            "lock the clocks (sudo nvpmodel -m 0; sudo jetson_clocks), stop other GPU work, "
                            "measure for longer")
    if timing.enqueue.mean > timing.gpu_compute.mean:
        warnings.append("throughput may be bound by enqueue time rather than GPU compute (the GPU waits for the host)")
    if timing.h2d.mean > timing.gpu_compute.mean:
        warnings.append("throughput may be bound by host-to-device copies of the inputs rather than GPU compute")
    return warnings


def time_engine(session: TimedSession, *, warmup_s: float = 0.2, duration_s: float = 3.0, min_runs: int = 10,
                batch: int = 1, clock: Callable[[], float] = time.perf_counter,
                cv_threshold: float = CV_WARNING) -> EngineTiming:
    """Time an engine as trtexec does (defaults: its --warmUp=200 ms, --duration=3 s, --iterations=10).

    Warm up for `warmup_s`, then run until both `duration_s` have passed and `min_runs` runs were
    timed. Each run: event, H2D copy, event, execute (its host time is the enqueue time), event,
    D2H copy, event, synchronize; the events give H2D, GPU compute and D2H, and host latency
    spans all three.
    """
    marks = [session.event() for _ in range(4)]
    start = clock()
    while clock() - start < warmup_s:
        session.copy_inputs()
        session.execute()
        session.copy_outputs()
        session.synchronize()

    host: list[float] = []
    gpu: list[float] = []
    h2d: list[float] = []
    d2h: list[float] = []
    enqueue: list[float] = []
    begin = clock()
    while True:
        session.record(marks[0])
        session.copy_inputs()
        session.record(marks[1])
        before = clock()
        session.execute()
        enqueue.append((clock() - before) * 1000)
        session.record(marks[2])
        session.copy_outputs()
        session.record(marks[3])
        session.synchronize()
        h2d.append(session.elapsed_ms(marks[0], marks[1]))
        gpu.append(session.elapsed_ms(marks[1], marks[2]))
        d2h.append(session.elapsed_ms(marks[2], marks[3]))
        host.append(session.elapsed_ms(marks[0], marks[3]))
        elapsed = clock() - begin
        if elapsed >= duration_s and len(host) >= min_runs:
            break

    timing = EngineTiming(
        host_latency=summarize(host), gpu_compute=summarize(gpu), h2d=summarize(h2d), d2h=summarize(d2h),
        enqueue=summarize(enqueue), batch=batch, runs=len(host), duration_s=round(elapsed, 4),
        throughput_qps=round(len(host) / elapsed, 3) if elapsed > 0 else float("inf"), warmup_s=warmup_s,
    )
    timing.warnings = _engine_warnings(timing, cv_threshold)
    return timing
