"""`edgeopt release` over two models and two targets: the pairs run in parallel processes sharing
the stage cache, each is packaged, the summary lists all four with their verdicts, and a failed
gate makes the release exit 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO, run_cli

from edgeopt import targets
from edgeopt.package.verify import verify

pytestmark = pytest.mark.slow
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
