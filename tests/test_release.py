"""`edgeopt release` over two models and two targets: the pairs run in parallel processes sharing
the stage cache, each is packaged, the summary lists all four with their verdicts, and a failed
gate makes the release exit 1 (slow: real builds in spawned processes). Fast: each pair's build
options come from the project file, a pair that cannot be built is a row (never an exception), and
the exit code ranks bad input over a failed gate over success."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

from edgeopt import release, targets
from edgeopt.project import load_project
from edgeopt.package.verify import verify

TINY = REPO / "tests" / "data" / "release-project"  # hyphenated: not an importable package name


def _project(folder: Path, target_names: list[str], models: dict | None = None) -> Path:
    shutil.copytree(TINY, folder / "tiny")
    shutil.copyfile(REPO / "calibration/digits_calib.npz", folder / "tiny" / "calib.npz")
    path = folder / "edgeopt.yaml"
    path.write_text(yaml.safe_dump({
        "models": models if models is not None else {
            "digits": {}, "tiny": {"source": "tiny/tiny.py:build", "calib": str(REPO / "calibration/digits_calib.npz"),
                                   "eval": str(REPO / "calibration/digits_eval.npz")}},
        "targets": target_names, "options": {"latency_seconds": 0.2}}))
    return path


@pytest.mark.slow
def test_release_two_models_two_targets_in_parallel(tmp_path):
    project = _project(tmp_path, ["cpu", "jetson"])
    result = run_cli("release", "-p", str(project), "-o", str(tmp_path / "dist"), "--jobs", "2", "--version", "3.1", "--json")
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["rows"]
    assert [(r["model"], r["target"], r["status"]) for r in rows] == [
        ("digits", "cpu", "ok"), ("digits", "jetson", "ok"), ("tiny", "cpu", "ok"), ("tiny", "jetson", "ok")]
    assert len({r["pid"] for r in rows}) == 2  # two worker processes
    assert any(a["started"] < b["finished"] and b["started"] < a["finished"]
               for a in rows for b in rows if a["pid"] != b["pid"])  # and they overlapped in time
    assert {r["engine"] for r in rows if r["target"] == "jetson"} == {"deferred"}
    tiny_cpu = rows[2]
    assert tiny_cpu["metric"] == "accuracy" and 0.85 < tiny_cpu["metric_value"] <= 1.0  # a real, fitted model
    for row in rows:
        assert Path(row["package"]).name.endswith("-3.1.tar.gz") and verify(Path(row["package"])).ok
    summary = (tmp_path / "dist" / "release.md").read_text()
    assert "4 builds, all gates passed" in summary
    for row in rows:
        assert f"| {row['model']} | {row['target']} | ok | max_accuracy_drop pass |" in summary


@pytest.mark.slow
def test_a_failed_gate_fails_the_release(tmp_path, monkeypatch):
    """A copy of this host's CPU profile with an impossible latency gate: measured, judged, failed."""
    host = targets.resolve("cpu")
    profile = yaml.safe_load(Path(host.source).read_text())
    profile.setdefault("gates", {})["max_latency_ms"] = 1e-6
    profile.pop("aliases", None)
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "cpu-strict.yaml").write_text(yaml.safe_dump(profile))
    monkeypatch.setenv("EDGEOPT_TARGETS", str(tmp_path / "profiles"))
    project = _project(tmp_path, ["cpu-strict"], models={"digits": {}})
    result = run_cli("release", "-p", str(project), "-o", str(tmp_path / "dist"))
    assert result.exit_code == 1, result.stderr
    assert "1 builds, 1 failed" in result.stdout and "| digits | cpu-strict | **gate_failed** |" in result.stdout
    assert "max_latency_ms FAIL" in result.stdout


def test_each_pair_gets_its_build_options_from_the_project(tmp_path):
    project = load_project(_project(tmp_path, ["cpu", "jetson"]))
    options = release._pair_options(project, "tiny", "jetson", tmp_path / "dist")
    assert options["model"] == f"{tmp_path / 'tiny' / 'tiny.py'}:build"  # resolved against the project folder
    assert options["out"] == tmp_path / "dist" / "builds" / "tiny" / "jetson"
    assert options["latency_seconds"] == 0.2 and options["calib"] == REPO / "calibration/digits_calib.npz"
    assert release._pair_options(project, "digits", "cpu", tmp_path)["model"] is None  # the bundled example


def test_a_pair_that_cannot_be_built_is_a_row_with_its_exit_code(tmp_path):
    row = release.build_pair("broken", "cpu", {"model": str(tmp_path / "missing.onnx"), "target": "cpu"}, "accuracy",
                             tmp_path / "packages", None)
    assert row["status"] == "error" and row["exit_code"] == 2 and "missing.onnx" in row["error"]
    assert row["finished"] >= row["started"] and not (tmp_path / "packages").exists()


@pytest.mark.parametrize("statuses, codes, expected", [
    (["ok", "ok"], [], 0), (["ok", "gate_failed"], [], 1), (["gate_failed", "error"], [2], 2),
    (["error", "error"], [2, 70], 70), (["error"], [None], 2)])
def test_the_release_exit_code_ranks_errors_over_gates(statuses, codes, expected):
    rows = [{"status": s} for s in statuses]
    for row, code in zip([r for r in rows if r["status"] == "error"], codes):
        if code is not None:
            row["exit_code"] = code
    assert release.exit_code(rows) == expected
