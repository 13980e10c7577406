"""`edgeopt report` takes what users have (issue 21, item 4): a build folder, a baseline file, a
build's --json output, a device-measured folder and a release folder (every pair, matched by
model and target), for --baseline and --current alike; a folder that is none of these is one
exit-2 line naming what it lacks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli
from helpers.cli_lines import assert_one_line, run

from edgeopt.assemble import slug
from edgeopt.build_dir import LAYOUT
from edgeopt.report import baseline


def _release(folder: Path, *builds: dict) -> Path:
    """A release folder as release.py lays it out: builds/<model>/<target>/ per pair."""
    for build in builds:
        shutil.copytree(build["build_dir"], folder / LAYOUT.release_builds / slug(build["model"]["name"]) / slug(build["target"]["name"]))
    return folder


def test_a_build_folder_reads_as_its_json_output(example_build):
    from_folder = baseline.load_all(example_build["build_dir"])
    assert len(from_folder) == 1
    from_json = baseline.document(example_build)
    for key in ("model", "target", "samples_ms", "gates", "quantization"):
        assert from_folder[0][key] == from_json[key], key
    for precision in ("fp32", "int8"):  # metrics.json has more percentiles than --json prints: the same values
        folder_metrics, json_metrics = from_folder[0]["metrics"][precision], from_json["metrics"][precision]
        latency = folder_metrics.pop("latency_ms")
        assert {k: latency[k] for k in json_metrics.pop("latency_ms")} == example_build["metrics"][precision]["latency_ms"]
        assert folder_metrics == json_metrics
    assert from_folder[0]["samples_ms"]["int8"]  # the raw latency samples the report bootstraps from


def test_report_accepts_a_build_folder_against_a_baseline_file_or_a_json_output(example_build, tmp_path):
    saved = baseline.save(example_build, tmp_path / "base.json")
    (tmp_path / "build.json").write_text(json.dumps(example_build))
    folder = example_build["build_dir"]
    for base, current in ((saved, folder), (folder, saved), (tmp_path / "build.json", folder), (folder, folder)):
        result = run_cli("report", "--baseline", str(base), "--current", str(current), "--format", "json", "--out", str(tmp_path / "r"))
        assert result.exit_code == 0, (base, current, result.stderr)
        report = json.loads((tmp_path / "r" / "report.json").read_text())
        (comparison,) = report["comparisons"]
        rows = {r["metric"]: r for r in comparison["rows"]}
        assert rows["accuracy_int8"]["current"] == example_build["metrics"]["int8"]["accuracy"]


def test_report_compares_release_folders_pair_by_pair(example_build, jetson_build, tmp_path):
    old = _release(tmp_path / "old", jetson_build, example_build)
    new = _release(tmp_path / "new", example_build, jetson_build)
    result = run_cli("report", "--baseline", str(old), "--current", str(new), "--format", "json", "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.stderr
    comparisons = json.loads((tmp_path / "r" / "report.json").read_text())["comparisons"]
    assert sorted((c["model"], c["target"]) for c in comparisons) == sorted(
        (b["model"]["name"], b["target"]["name"]) for b in (example_build, jetson_build))
    # one pair of a release against its own build folder; a pair the baseline lacks is named
    one = run_cli("report", "--baseline", str(old), "--current", jetson_build["build_dir"])
    assert one.exit_code == 0 and jetson_build["target"]["name"] in one.stdout, one.stderr
    partial = _release(tmp_path / "partial", example_build)
    code, lines = run("report", "--baseline", str(partial), "--current", str(new))
    assert_one_line(code, lines, 2, "partial", f"no baseline for digits-cnn/{jetson_build['target']['name']}")


@pytest.mark.parametrize("contents, needle", [
    ({}, "no manifest.json (a build folder), device_results.json"),
    ({"manifest.json": "{}"}, "a build folder without metrics.json"),
    ({"manifest.json": json.dumps({"model": {"name": "m"}, "target": {"name": "t"}}), "metrics.json": "{}"}, "no fp32 and int8 metrics"),
])
def test_a_folder_that_is_no_report_input_is_one_line_naming_what_it_lacks(contents, needle, example_build, tmp_path):
    folder = tmp_path / "f"
    folder.mkdir()
    for name, text in contents.items():
        (folder / name).write_text(text)
    code, lines = run("report", "--baseline", example_build["build_dir"], "--current", str(folder))
    assert_one_line(code, lines, 2, str(folder), needle)
