"""One summary for CPU and GPU latency, and trtexec-style engine timing from a fake clock and
fake CUDA event times."""

from __future__ import annotations

import numpy as np
import pytest

from edgeopt import api, bench


class FakeClock:
    """Host clock: advances by `step` seconds on every read."""

    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


class FakeSession:
    """Scripted GPU times per run (ms): h2d, then compute (cycling through `compute_ms`), then d2h."""

    def __init__(self, compute_ms: list[float], h2d: float = 0.1, d2h: float = 0.05):
        self.compute_ms, self.h2d, self.d2h = compute_ms, h2d, d2h
        self.executed = 0
        self.times: dict[int, float] = {}
        self.t = 0.0
        self.events = 0
        self.synchronized = 0

    def event(self) -> int:
        self.events += 1
        return self.events - 1

    def copy_inputs(self):
        self.t += self.h2d

    def execute(self):
        self.t += self.compute_ms[self.executed % len(self.compute_ms)]
        self.executed += 1

    def copy_outputs(self):
        self.t += self.d2h

    def synchronize(self):
        self.synchronized += 1

    def record(self, event: int):
        self.times[event] = self.t

    def elapsed_ms(self, start: int, end: int) -> float:
        return self.times[end] - self.times[start]


# --- the one summary --------------------------------------------------------------------------


def test_percentiles_follow_trtexecs_rule():
    # trtexec: exclude = int((1 - p/100) * n); value = sorted[max(n - 1 - exclude, 0)]
    values = [float(v) for v in range(1, 101)]
    assert bench.percentile(values, 99) == 99.0
    assert bench.percentile(values, 95) == 95.0
    assert bench.percentile(values, 90) == 90.0  # 0.1 * 100 is 10 exactly here, not 9.999...
    assert bench.percentile(values, 10) == 10.0
    assert bench.percentile([5.0], 99) == 5.0
    # 7 runs: 99 % and 90 % drop none, the max; 50 % drops int(3.5) = 3, so index 3
    seven = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 70.0]
    assert bench.percentile(seven, 99) == 70.0 and bench.percentile(seven, 90) == 70.0
    assert bench.percentile(seven, 50) == 4.0


def test_summarize_agrees_with_trtexec_on_a_known_list():
    # shuffled on purpose: the summary sorts
    times = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0]
    stats = bench.summarize(times, threads=4)
    ordered = sorted(times)  # 1 1 2 3 3 4 5 5 6 9
    assert stats.min == 1.0 and stats.max == 9.0
    assert stats.p50 == 3.5  # even count: the mean of the two middle runs, as trtexec's median
    assert stats.p90 == ordered[10 - 1 - 1] == 6.0  # drops the top int(1.0) = 1
    assert stats.p95 == ordered[10 - 1 - 0] == 9.0  # int(0.5) = 0 dropped
    assert stats.p99 == 9.0
    assert stats.mean == 3.9
    std = float(np.std(ordered))  # population standard deviation, as trtexec
    assert stats.cv == pytest.approx(std / 3.9, abs=1e-4)
    assert stats.runs == 10 and stats.threads == 4
    assert bench.summarize([2.0] * 10).cv == 0.0
    with pytest.raises(ValueError):
        bench.summarize([])


def test_the_cpu_api_is_unchanged():
    """The latency block `bench` and `--json` print: the same keys as before, each holding the
    value timing.py's rule gives for the same runs (a renamed or dropped field fails here)."""
    from edgeopt import timing

    times = [4.0, 1.0, 3.0, 2.0, 5.0]
    doc = bench.summarize(times, threads=2).model_dump(mode="json")
    assert {"p50", "p90", "p99", "mean", "cv", "runs", "threads"} <= set(doc)
    ordered = sorted(times)
    assert (doc["p90"], doc["p99"], doc["runs"], doc["threads"], doc["mean"]) == (
        timing.percentile(ordered, 90), timing.percentile(ordered, 99), 5, 2, 3.0)
    assert doc["p50"] == 3.0


def test_measure_onnx_uses_the_same_summary(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgeopt.data.dataset import Dataset

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 8, 8])])
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 9
    model = tmp_path / "relu.onnx"
    onnx.save(proto, str(model))
    data = Dataset({"x": np.random.default_rng(0).normal(size=(4, 1, 8, 8)).astype(np.float32)}, None, tmp_path)
    result = bench.measure_onnx({"a": model}, data, threads=1, warmup_s=0.01, duration_s=0.05, min_runs=12)
    latency = result["a"]
    assert latency.runs >= 12 and latency.threads == 1
    assert latency.min <= latency.p10 <= latency.p50 <= latency.p90 <= latency.p95 <= latency.p99 <= latency.max


# --- engines: trtexec's method ----------------------------------------------------------------


def test_timing_warms_up_by_time_then_runs_for_the_duration():
    session = FakeSession([2.0])
    clock = FakeClock(0.01)  # 10 ms per clock read
    report = bench.time_engine(session, warmup_s=0.1, duration_s=1.0, min_runs=5, clock=clock)
    warmup_runs = session.executed - report.runs
    assert 3 <= warmup_runs <= 10  # ~100 ms of warm-up at one clock read per run
    assert report.duration_s >= 1.0 and report.runs >= 5
    assert report.gpu_compute.p50 == pytest.approx(2.0)
    assert report.host_latency.p50 == pytest.approx(2.15)  # h2d + compute + d2h
    assert report.h2d.p50 == pytest.approx(0.1) and report.d2h.p50 == pytest.approx(0.05)
    assert report.enqueue.p50 == pytest.approx(10.0)  # one clock step around execute
    assert report.throughput_qps == pytest.approx(report.runs / report.duration_s, rel=1e-3)
    assert report.latency_ms() == {"p50": pytest.approx(2.15), "p90": pytest.approx(2.15), "p99": pytest.approx(2.15)}
    assert session.synchronized == session.executed  # every run waits for the stream (trtexec sync)
    assert not any("unstable" in w for w in report.warnings)
    # this fake host takes 10 ms to enqueue 2 ms of GPU work: trtexec's enqueue-bound warning
    assert any("enqueue time" in w for w in report.warnings)


def test_min_runs_win_over_a_short_duration():
    report = bench.time_engine(FakeSession([1.0]), warmup_s=0, duration_s=0.0, min_runs=25, clock=FakeClock(0.0001))
    assert report.runs == 25


def test_percentiles_and_cv_of_gpu_time_from_event_times():
    # 20 runs: compute 1.0 ms 18 times, then 2.0 and 5.0 ms
    script = [1.0] * 18 + [2.0, 5.0]
    report = bench.time_engine(FakeSession(script, h2d=0.0, d2h=0.0), warmup_s=0, duration_s=0, min_runs=20,
                               clock=FakeClock(0.00001))
    assert report.runs == 20
    gpu = report.gpu_compute
    assert gpu.p50 == 1.0 and gpu.p90 == 1.0  # drops int(2.0) = 2 from the top: index 17
    assert gpu.p95 == 2.0 and gpu.p99 == 5.0 and gpu.max == 5.0
    mean = (18 + 2 + 5) / 20
    assert gpu.mean == pytest.approx(mean)
    assert gpu.cv == pytest.approx(float(np.std(script)) / mean, abs=1e-4)
    assert any("GPU compute time is unstable" in w for w in report.warnings)


def test_cv_warning_above_one_percent_only():
    steady = [1.0] * 50 + [1.02] * 50  # cv ~ 1.0 %: at the threshold, no warning
    shaky = [1.0] * 50 + [1.03] * 50  # cv ~ 1.5 %
    quiet = bench.time_engine(FakeSession(steady, h2d=0, d2h=0), warmup_s=0, duration_s=0, min_runs=100,
                              clock=FakeClock(1e-6))
    loud = bench.time_engine(FakeSession(shaky, h2d=0, d2h=0), warmup_s=0, duration_s=0, min_runs=100,
                             clock=FakeClock(1e-6))
    assert quiet.gpu_compute.cv <= 0.01 and not any("unstable" in w for w in quiet.warnings)
    assert loud.gpu_compute.cv > 0.01
    assert any("GPU compute time is unstable, coefficient of variance 1.48%" in w for w in loud.warnings)
    assert "lock the clocks" in loud.warnings[0]


def test_timing_report_serializes_and_prints_like_trtexec():
    report = bench.time_engine(FakeSession([1.0]), warmup_s=0, duration_s=0, min_runs=10, batch=4,
                               clock=FakeClock(1e-6))
    document = report.model_dump(mode="json")
    assert document["batch"] == 4 and document["gpu_compute"]["p50"] == 1.0
    assert bench.EngineTiming.model_validate(document) == report
    lines = report.summary_lines()
    assert lines[0].startswith("Throughput:") and any(line.startswith("GPU Compute Time: min = 1.0 ms") for line in lines)


# --- numpy's percentile is trtexec's rule -----------------------------------------------------


def _trtexec_rule(sorted_ms: list[float], p: float) -> float:
    """trtexec's findPercentile in exact arithmetic: drop int((100 - p) n / 100) from the top."""
    n = len(sorted_ms)
    return sorted_ms[max(n - 1 - (100 - p) * n // 100, 0)]


@pytest.mark.parametrize("p", [50, 90, 95, 99])
def test_numpy_inverted_cdf_equals_trtexecs_rule_for_every_count(p):
    rng = np.random.default_rng(p)
    for n in range(1, 401):
        values = sorted(rng.exponential(1.0, n).tolist())
        assert bench.percentile(values, p) == _trtexec_rule(values, p), (n, p)
    # the other numpy methods do not: linear interpolates between neighbours
    assert float(np.percentile(list(range(1, 11)), 95)) != _trtexec_rule(list(range(1, 11)), 95)


def test_bench_onnx_on_the_example_keeps_samples_and_stats(example_build):
    from pathlib import Path

    doc = api.bench_build(Path(example_build["build_dir"]), duration_s=0.3, batch=3, warmup_s=0.05)
    samples = doc["samples_ms"]
    stats = doc["latency_ms"]
    assert doc["backend"] == "onnxruntime" and doc["batch"] == 3 and doc["threads"] >= 1
    assert stats["runs"] == len(samples) >= 10
    assert stats["min"] == pytest.approx(min(samples), abs=1e-3) and stats["max"] == pytest.approx(max(samples), abs=1e-3)
    assert stats["p50"] == pytest.approx(float(np.median(samples)), abs=1e-3)
    assert doc["samples_per_s"] == pytest.approx(3 * doc["throughput_qps"], rel=1e-3)


def test_interleaved_blocks_alternate_order():
    order = []
    blocks_a, blocks_b = bench.interleaved(lambda: order.append("a"), lambda: order.append("b"),
                                           blocks=4, block_runs=2, warmup_s=0.0)
    assert [len(b) for b in blocks_a] == [2] * 4 and [len(b) for b in blocks_b] == [2] * 4
    timed = order[2:]  # one warm-up run each
    assert timed == list("aabb" "bbaa" "aabb" "bbaa")
