"""Gates not judged, --strict, the INT8-slower warning, and baselines saved and judged by the CLI."""

from __future__ import annotations

import copy
import json

import pytest

from conftest import FAST, run_cli
from edgeopt import bench
from edgeopt.errors import BadInput
from edgeopt.metrics.fidelity import PrecisionMetrics, ValidateResult
from edgeopt.report import baseline, gates
from edgeopt.report.summary import render_build
from edgeopt.targets import Gates


def _metrics(fp32_ms: float | None, int8_ms: float | None) -> ValidateResult:
    lat = lambda p50: bench.summarize([p50] * 5) if p50 else None  # noqa: E731
    return ValidateResult(samples=10, task="classification",
                          fp32=PrecisionMetrics(accuracy=0.9, latency_ms=lat(fp32_ms)),
                          int8=PrecisionMetrics(accuracy=0.89, agreement=0.95, latency_ms=lat(int8_ms)))


def test_latency_gates_judge_p50_and_speedup():
    results = {g.name: g for g in gates.evaluate(_metrics(1.0, 0.4), Gates(max_latency_ms=0.5, min_speedup=3.0))}
    assert results["max_accuracy_drop"].passed is True
    assert results["max_latency_ms"].value == 0.4 and results["max_latency_ms"].passed is True
    assert results["min_speedup"].value == 2.5 and results["min_speedup"].passed is False


def test_latency_gates_without_latency_are_not_judged_with_a_reason_and_strict_fails_them():
    results = [g.model_dump() for g in gates.evaluate(_metrics(None, None), Gates(max_latency_ms=0.5, min_speedup=2.0))]
    assert gates.not_judged(results) == [{"name": "max_latency_ms", "reason": "latency not measurable on this host"},
                                         {"name": "min_speedup", "reason": "latency not measurable on this host"}]
    assert gates.failed(results) == []
    assert gates.failed(results, strict=True) == ["max_latency_ms", "min_speedup"]


def test_summary_lists_not_judged_gates_and_warns_when_int8_is_slower(example_build):
    result = copy.deepcopy(example_build)
    result["gates"].append({"name": "max_latency_ms", "threshold": 2.0, "value": None, "passed": None,
                            "note": "latency not measurable on this host"})
    result["metrics"]["int8"]["latency_ms"] = dict(result["metrics"]["fp32"]["latency_ms"])
    result["metrics"]["int8"]["latency_ms"]["p50"] = result["metrics"]["fp32"]["latency_ms"]["p50"] / 0.94
    text = render_build(result)
    assert "max_latency_ms: n/a vs 2 -> not judged (latency not measurable on this host)" in text
    assert "not judged max_latency_ms (passes unless --strict)" in text
    assert "warning    INT8 is slower than FP32 on this host: speedup 0.94x" in text
    assert "slower than FP32" not in render_build(example_build)


def test_build_saves_a_baseline_and_judges_against_it(example_build, tmp_path):
    out, saved = example_build["build_dir"], tmp_path / "base.json"
    result = run_cli("build", "--out", out, *FAST, "--save-baseline", str(saved))
    assert result.exit_code == 0, result.stderr
    doc = baseline.load(saved)
    assert doc["metrics"]["int8"]["accuracy"] == example_build["metrics"]["int8"]["accuracy"]
    assert doc["environment"]["libraries"]["onnxruntime"] and doc["environment"]["machine"]
    result = run_cli("build", "--out", out, *FAST, "--baseline", str(saved), "--strict")
    assert result.exit_code == 0 and "baseline   " in result.stdout and "-> unchanged" in result.stdout
    # a baseline twice as fast and 5 points more accurate: the same build is now a regression
    faster = copy.deepcopy(doc)
    assert set(doc["samples_ms"]) == {"fp32", "int8"}  # the build kept its raw samples
    for p in ("fp32", "int8"):
        faster["metrics"][p]["latency_ms"]["p50"] /= 2
        faster["metrics"][p]["accuracy"] += 0.05
        faster["samples_ms"][p] = [t / 2 for t in faster["samples_ms"][p]]
    (tmp_path / "faster.json").write_text(json.dumps(faster))
    result = run_cli("build", "--out", out, *FAST, "--baseline", str(tmp_path / "faster.json"))
    assert result.exit_code == 1 and "accuracy_int8: -5.00 pts -> regressed" in result.stdout
    # raw samples on both sides: the latency ratio is judged, with its confidence interval
    assert "latency_p50_int8: 2.0" in result.stdout and "latency_p50_int8: 2.000x -> not judged" not in result.stdout
    assert any("latency_p50_int8" in line and "regressed" in line for line in result.stdout.splitlines())
    report = run_cli("report", "--baseline", str(tmp_path / "faster.json"), "--current", str(saved),
                     "--baseline", str(saved), "--current", str(saved), "--format", "md,junit,json", "--out", str(tmp_path / "r"))
    assert report.exit_code == 1
    written = json.loads((tmp_path / "r" / "report.json").read_text())
    assert [c["verdict"] for c in written["comparisons"]] == ["regressed", "unchanged"]


def test_bad_baseline_files_name_the_file(tmp_path):
    with pytest.raises(BadInput, match="not found \\(baseline file"):
        baseline.load(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text('{"schema_version": 99}')
    with pytest.raises(BadInput, match="x.json: schema_version 99"):
        baseline.load(tmp_path / "x.json")
    result = run_cli("report", "--baseline", str(tmp_path / "x.json"), "--current", str(tmp_path / "x.json"))
    assert result.exit_code == 2 and "x.json" in result.stderr


def test_validate_keeps_the_raw_latency_samples_in_its_folder(example_build, tmp_path):
    from pathlib import Path

    from edgeopt.build_dir import LAYOUT
    from edgeopt.data.npz import read_npz
    from edgeopt.models.spec import InputSpec
    from edgeopt.backends.onnxruntime.validate import validate
    from conftest import EVAL

    build = Path(example_build["build_dir"])
    data = read_npz(EVAL, [InputSpec(name="image", shape=(1, 1, 32, 32))]).subset(40)
    result = validate(build / LAYOUT.fp32_onnx, build / LAYOUT.int8_onnx, data, "classification",
                      latency_on_host=True, threads=1, latency_seconds=0.1, folder=tmp_path)
    samples = json.loads((tmp_path / LAYOUT.latency_samples).read_text())
    assert samples["unit"] == "ms" and samples["threads"] == 1
    assert len(samples["int8"]) == result.int8.latency_ms.runs and len(samples["fp32"]) == result.fp32.latency_ms.runs
    assert min(samples["int8"]) == pytest.approx(result.int8.latency_ms.min, abs=1e-3)
    current = baseline.document({**example_build, "build_dir": str(tmp_path)})
    assert current["samples_ms"]["int8"] == samples["int8"]  # baselines pick the file up from the build dir
