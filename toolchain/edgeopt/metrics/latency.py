"""Latency results, typed: what the host harness (bench.py) and the engine timing produce and
what validate results, gates and reports read. A layer below bench.py, so that reading a result
never imports ONNX Runtime."""

from __future__ import annotations

from pydantic import BaseModel, Field

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
