"""Latency measurement for every target, with one summary of single-run times.

CPU targets: ONNX Runtime sessions on this host (`measure_onnx`). GPU targets: a TensorRT engine
on the device (`time_engine`), timed as trtexec times it: warm-up by time, then a measured
duration (and a minimum run count), CUDA events around the input copy, the inference and the
output copy, host latency (H2D + GPU compute + D2H) apart from GPU compute time, and a warning
when the coefficient of variance is above 1 %.

Both go through `summarize`, whose numbers are timing.summary's (trtexec's rules, the same module
the device runner ships; the engine loop is timing.time_runs). Percentiles come from individual
runs (never an average of a loop), so p99 shows the jitter that a user of the device sees. Two
models compared by a caller are measured in the same process with the same thread count, one
after the other, and are best read as a ratio.
"""

from __future__ import annotations

import json
import resource
import time
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np

from edgeopt import progress
from edgeopt import timing
from edgeopt.backends.onnxruntime import genai
from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.data.dataset import Dataset
from edgeopt.metrics import language
from edgeopt.metrics.latency import EngineTiming, Latency  # noqa: F401  (the results' types, a layer down)

CV_WARNING = 0.01  # trtexec warns when GPU compute time's coefficient of variance is above 1 %


percentile = timing.percentile  # trtexec's rule, one copy (timing.py), shared with the device runner


def summarize(times_ms: list[float] | np.ndarray, threads: int = 1) -> Latency:
    """Percentiles, mean and coefficient of variance of single-run times, as trtexec reports them."""
    return Latency(**timing.summary(list(np.asarray(times_ms, dtype=np.float64).ravel())), threads=threads)


# --- CPU: ONNX Runtime on this host -----------------------------------------------------------


def measure_onnx(models: dict[str, Path], data: Dataset, threads: int, warmup_s: float = 0.3,
                 duration_s: float = 2.0, block: int = 10, min_runs: int = 30,
                 samples: dict[str, list[float]] | None = None) -> dict[str, Latency]:
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
        progress.step(min(100, round(100 * (1 - (deadline - time.perf_counter()) / max(duration_s, 1e-9)))), 100, f"timing {len(sessions)} models (%)")
        for key, sess in sessions.items():
            for _ in range(block):
                feed = feeds[key][len(times[key]) % len(feeds[key])]
                start = time.perf_counter()
                sess.run(None, feed)
                times[key].append((time.perf_counter() - start) * 1000)
    if samples is not None:  # raw single-run times, kept for baselines and reports
        samples.update({key: [round(v, 5) for v in values] for key, values in times.items()})
    return {key: summarize(values, threads) for key, values in times.items()}


# --- GPU: a TensorRT engine on the device -----------------------------------------------------


class TimedSession(Protocol):
    """What engine timing needs: async copies and execution on one stream, and CUDA events
    (edgeopt.backends.tensorrt.device.TensorRTSession on a device; a scripted fake in tests)."""

    def copy_inputs(self) -> None: ...
    def execute(self) -> None: ...
    def copy_outputs(self) -> None: ...
    def synchronize(self) -> None: ...
    def event(self) -> Any: ...
    def record(self, event: Any) -> None: ...
    def elapsed_ms(self, start: Any, end: Any) -> float: ...


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
    """Time an engine as trtexec does (defaults: its --warmUp=200 ms, --duration=3 s, --iterations=10),
    with the device runner's loop (timing.time_runs); host latency spans H2D, compute and D2H."""
    runs = timing.time_runs(session, warmup_s, duration_s, min_runs, clock)
    host, elapsed = runs["host_latency"], runs["elapsed"]
    result = EngineTiming(
        host_latency=summarize(host), gpu_compute=summarize(runs["gpu_compute"]), h2d=summarize(runs["h2d"]),
        d2h=summarize(runs["d2h"]), enqueue=summarize(runs["enqueue"]), batch=batch, runs=len(host),
        duration_s=round(elapsed, 4), warmup_s=warmup_s,
        throughput_qps=round(len(host) / elapsed, 3) if elapsed > 0 else float("inf"),
    )
    result.warnings = _engine_warnings(result, cv_threshold)
    return result


# --- `edgeopt bench`: one artifact, and A/B comparisons in interleaved blocks -------------------


def random_feed(sess: Any, batch: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """Inputs of the session's declared shapes (free dimensions: `batch` first, 1 after)."""
    rng = np.random.default_rng(seed)
    feed = {}
    for arg in sess.get_inputs():
        shape = [d if isinstance(d, int) and d > 0 else (batch if i == 0 else 1) for i, d in enumerate(arg.shape)]
        if "int" in arg.type:
            feed[arg.name] = np.zeros(shape, dtype=np.int64 if "int64" in arg.type else np.int32)
        else:
            feed[arg.name] = rng.standard_normal(shape).astype(np.float32)
    return feed


def run_for(run: Callable[[], Any], warmup_s: float, duration_s: float, min_runs: int = 10) -> list[float]:
    """Warm up by time, then time single runs (ms) until `duration_s` passed and `min_runs` ran."""
    deadline = time.perf_counter() + warmup_s
    while time.perf_counter() < deadline:
        run()
    times: list[float] = []
    begin = time.perf_counter()
    while time.perf_counter() - begin < duration_s or len(times) < min_runs:
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return times


def bench_onnx(path: Path, *, duration_s: float = 3.0, warmup_s: float = 0.2, batch: int = 1,
               threads: int | None = None) -> dict[str, Any]:
    """Time one ONNX model on this host's CPU: the `edgeopt bench` document, raw samples included."""
    import os

    threads = threads or os.cpu_count() or 1
    sess = runtime.session(path, threads=threads, spinning=True)
    feed = random_feed(sess, batch)
    begin = time.perf_counter()
    samples = run_for(lambda: sess.run(None, feed), warmup_s, duration_s)
    wall = time.perf_counter() - begin - warmup_s
    stats = summarize(samples, threads)
    return {"model": str(path), "backend": "onnxruntime", "batch": batch, "threads": threads,
            "warmup_s": warmup_s, "duration_s": round(wall, 4), "latency_ms": stats.model_dump(),
            "std_ms": round(stats.cv * stats.mean, 4),
            "throughput_qps": round(len(samples) / wall, 3) if wall > 0 else None,
            "samples_per_s": round(batch * len(samples) / wall, 3) if wall > 0 else None,
            "samples_ms": [round(v, 5) for v in samples]}


def interleaved(run_a: Callable[[], Any], run_b: Callable[[], Any], *, blocks: int = 30, block_runs: int = 10,
                warmup_s: float = 0.2) -> tuple[list[list[float]], list[list[float]]]:
    """Single-run times (ms) of A and B in alternating blocks, A-B then B-A, so that drift and a
    neighbour's bursts hit both alike; compare them block by block (report.compare.block_ratios)."""
    run_for(run_a, warmup_s / 2, 0.0, 1)
    run_for(run_b, warmup_s / 2, 0.0, 1)
    out_a: list[list[float]] = []
    out_b: list[list[float]] = []
    for i in range(blocks):
        order = ((run_a, out_a), (run_b, out_b)) if i % 2 == 0 else ((run_b, out_b), (run_a, out_a))
        for run, out in order:
            out.append(run_for(run, 0.0, 0.0, block_runs))
    return out_a, out_b


# --- `edgeopt bench` on a decoder-only LLM build: onnxruntime-genai on the deployable folder -----


def bench_llm(folder: Path, *, duration_s: float = 3.0, prompt_tokens: int = 64, new_tokens: int = 32,
              min_runs: int = 3, seed: int = 0) -> dict[str, Any]:
    """Greedy generations of `new_tokens` after a `prompt_tokens` prompt (seeded token ids: speed does
    not depend on which), repeated until `duration_s` has passed and `min_runs` ran, after one warm-up
    run: TTFT, decode tokens/s and per-token percentiles by timing.py's rule, peak RSS of this process
    (and before the model was loaded), model bytes."""
    folder = Path(folder)
    config = json.loads((folder / genai.CONFIG_NAME).read_text())["model"]
    threads = config["decoder"]["session_options"].get("intra_op_num_threads")
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    runner = genai.GenaiRunner(folder)
    prompt = [int(t) for t in np.random.default_rng(seed).integers(3, config["vocab_size"], prompt_tokens)]
    runner.generate(prompt, new_tokens)
    ttft, steps = [], []
    begin = time.perf_counter()
    while time.perf_counter() - begin < duration_s or len(ttft) < min_runs:
        _, times = runner.generate(prompt, new_tokens)
        ttft.append(times[0])
        steps += times[1:]
    wall = time.perf_counter() - begin
    model_bytes = sum(p.stat().st_size for p in folder.iterdir() if p.suffix == ".onnx" or p.name.endswith(".onnx_data")
                      or p.name.endswith(".onnx.data"))
    return {"model": str(folder), "backend": "onnxruntime-genai", "kind": "causal-lm", "threads": threads, "batch": 1,
            "prompt_tokens": prompt_tokens, "new_tokens": new_tokens, "runs": len(ttft), "duration_s": round(wall, 4),
            **language.speed(ttft, steps), "token_latency_summary_ms": timing.summary(sorted(t * 1000 for t in steps)),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_before_load_mb": round(rss_before, 1), "model_bytes": model_bytes,
            "ttft_samples_ms": [round(t * 1000, 4) for t in ttft], "token_samples_ms": [round(t * 1000, 4) for t in steps]}
