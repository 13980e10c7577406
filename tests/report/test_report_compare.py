"""The comparison statistics: bootstrap CIs cover the truth, verdicts follow the tolerances."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from edgeopt.report import compare


def doc(latency_scale: float = 1.0, accuracy: float = 0.95, seed: int = 0, **env) -> dict:
    rng = np.random.default_rng(seed)
    samples = {p: (rng.lognormal(np.log(base), 0.15, 400) * latency_scale).tolist() for p, base in (("fp32", 0.7), ("int8", 0.3))}
    metrics = {p: {"accuracy": accuracy, "agreement": 1.0 if p == "int8" else None, "cosine_mean": None,
                   "latency_ms": {"p50": float(np.median(samples[p]))}} for p in ("fp32", "int8")}
    return {"schema_version": 1, "model": "digits-cnn", "target": "cpu", "metrics": metrics, "samples_ms": samples,
            "environment": {"cpu_model": "Xeon", "threads": 2, "onnxruntime": "1.22.0", **env}}


def test_block_ratios_and_bootstrap_ci_cover_the_injected_ratio():
    rng = np.random.default_rng(1)
    a = [rng.lognormal(0, 0.2, 20).tolist() for _ in range(40)]
    b = [(np.asarray(x) * 1.1 * rng.lognormal(0, 0.02, 20)).tolist() for x in a]
    stats = compare.paired_ratio(compare.block_ratios(a, b))
    assert stats["ci_low"] < 1.1 < stats["ci_high"]
    assert stats["ci_low"] > 1.05
    assert compare.latency_verdict(stats["ratio"], stats["ci_low"], stats["ci_high"], 0.05) == "regressed"


@pytest.mark.parametrize(("scale", "verdict"), [(1.0, "unchanged"), (1.02, "unchanged"), (1.15, "regressed"), (0.8, "improved")])
def test_latency_verdicts_against_the_5_percent_tolerance(scale, verdict):
    result = compare.compare(doc(), doc(scale, seed=7))
    row = next(r for r in result["rows"] if r["metric"] == "latency_p50_int8")
    assert row["verdict"] == verdict
    assert row["ci_low"] <= row["ratio"] <= row["ci_high"]
    assert row["ratio"] == pytest.approx(np.median(doc(scale, seed=7)["samples_ms"]["int8"]) /
                                         np.median(doc()["samples_ms"]["int8"]))


def test_a_wide_ci_is_not_a_regression_even_above_tolerance():
    assert compare.latency_verdict(1.08, 0.97, 1.2, 0.05) == "unchanged"
    assert compare.latency_verdict(1.08, None, None, 0.05) == "regressed"  # no samples: the point estimate only


def test_accuracy_delta_and_tolerance():
    result = compare.compare(doc(accuracy=0.95), doc(accuracy=0.94), accuracy_tolerance=0.005)
    row = next(r for r in result["rows"] if r["metric"] == "accuracy_int8")
    assert row["delta"] == pytest.approx(-0.01) and row["verdict"] == "regressed"
    assert result["verdict"] == "regressed"
    assert compare.compare(doc(accuracy=0.95), doc(accuracy=0.947))["verdict"] == "unchanged"


def test_environment_differences_are_flagged():
    result = compare.compare(doc(), doc(threads=4, cpu_model="EPYC", tensorrt="10.3"))
    warnings = " | ".join(result["environment_warnings"])
    assert "another thread count: 2 -> 4" in warnings and "another CPU: Xeon -> EPYC" in warnings
    assert "another TensorRT version: None -> 10.3" in warnings
    assert compare.compare(doc(), doc())["environment_warnings"] == []


def test_a_busy_host_is_flagged():
    quiet, busy = doc(cores=2, load_1m=0.4), doc(cores=2, load_1m=5.5)
    assert compare.compare(quiet, quiet)["environment_warnings"] == []
    warnings = compare.compare(quiet, busy)["environment_warnings"]
    assert warnings == ["the host was busy (1-minute load: current 5.5 on 2 cores): a latency change may be load, not the change"]


def test_latency_missing_on_one_side_is_not_judged_with_a_reason():
    current = copy.deepcopy(doc())
    current["samples_ms"] = {}
    current["metrics"]["int8"]["latency_ms"] = None
    row = next(r for r in compare.compare(doc(), current)["rows"] if r["metric"] == "latency_p50_int8")
    assert row["verdict"] == "not judged" and row["reason"] == "latency not measured in current"


def test_many_builds_one_verdict_each_and_overall():
    report = compare.report([compare.compare(doc(), doc(seed=3)), compare.compare(doc(), doc(1.3, seed=4))])
    assert [c["verdict"] for c in report["comparisons"]] == ["unchanged", "regressed"]
    assert report["verdict"] == "regressed" and report["schema_version"] == compare.SCHEMA_VERSION
