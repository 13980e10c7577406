"""`edgeopt feedback` on the bundled example build: in-distribution evaluation data raises no
alert, the same digits made to look like a dark noisy camera do (exit 1), the four formats,
thresholds from flags, bad input (exit 2), a device's field_stats.json from the packaged monitor
run as a script, what a package carries (never a capture), and `--calib` repeated."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import CALIB, EVAL, run_cli
from helpers.cli_lines import assert_one_line, run

from edgeopt.build_dir import LAYOUT
from edgeopt.data.build_data import EXTRA_SHARE, with_extra
from edgeopt.data.dataset import Dataset
from edgeopt.field.capture import Capture
from edgeopt.package.bundle import package


def night(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Darker, lower contrast, sensor noise: what a camera at night hands the model."""
    noise = np.random.default_rng(seed).normal(0, 0.5, images.shape)
    return (images * 0.3 + noise).astype(np.float32)


@pytest.fixture(scope="module")
def night_npz(tmp_path_factory):
    with np.load(EVAL, allow_pickle=False) as d:
        path = tmp_path_factory.mktemp("field") / "night.npz"
        np.savez(path, image=night(d["image"][:200]), labels=d["labels"][:200])
    return path


def feedback(*args: str):
    return run_cli("feedback", *args)


def test_a_build_carries_its_calibration_statistics(example_build):
    folder = Path(example_build["build_dir"])
    manifest = json.loads((folder / LAYOUT.manifest).read_text())
    listed = {a["path"] for a in manifest["artifacts"]}
    assert LAYOUT.calib_stats in listed
    stats = json.loads((folder / LAYOUT.calib_stats).read_text())
    assert len(stats["tensors"]) >= 8 and stats["samples"] == 256
    assert (folder / LAYOUT.calib_stats).stat().st_size / len(stats["tensors"]) < 1500  # bytes per tensor


def test_in_distribution_data_raises_no_alert(example_build):
    result = feedback(example_build["build_dir"], "--field", str(EVAL), "--json")
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["verdict"] == "unchanged" and doc["field"]["alerts"] == []
    rows = {r["metric"]: r for r in doc["comparisons"][0]["rows"]}
    assert rows["accuracy logits"]["current"] > 0.98  # labels: the task metric on the field data


def test_a_night_camera_alerts_in_all_four_formats(example_build, night_npz, tmp_path):
    out = tmp_path / "report"
    result = feedback(example_build["build_dir"], "--field", str(night_npz), "--format", "md,html,junit,json", "--out", str(out))
    assert result.exit_code == 1, result.stderr
    doc = json.loads((out / "report.json").read_text())
    assert doc["verdict"] == "regressed" and any(a.startswith("psi ") for a in doc["field"]["alerts"])
    md = (out / "report.md").read_text()
    assert "field feedback" in md and "🔴 regressed" in md and doc["field"]["alerts"][0] in md
    html = (out / "report.html").read_text()
    assert html.count("<svg") >= 3 and "PSI vs calibration" in html
    suites = ET.fromstring((out / "report.junit.xml").read_text())
    assert sum(int(s.get("failures")) for s in suites) == len(doc["field"]["alerts"])


def test_flags_override_the_profiles_thresholds(example_build, night_npz):
    result = feedback(example_build["build_dir"], "--field", str(night_npz), "--max-field-psi", "50",
                      "--max-field-saturation", "1", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["field"]["thresholds"]["max_field_psi"] == 50


def test_bad_input_is_one_line_and_exit_2(example_build, tmp_path):
    build = example_build["build_dir"]
    assert_one_line(*run("feedback", build, "--field", str(tmp_path / "missing.npz")), 2, "--field data not found")
    assert_one_line(*run("feedback", build, "--field", str(EVAL), "--rebuild"), 2, "--rebuild needs --out")
    assert_one_line(*run("feedback", build, "--field", str(EVAL), "--format", "pdf", "--out", str(tmp_path / "r")), 2, "--format")
    other = tmp_path / "field_stats.json"
    other.write_text(json.dumps({"kind": "field_stats", "model_sha256": "0" * 64, "tensors": {}}))
    assert_one_line(*run("feedback", build, "--field", str(other)), 2, "another model")
    assert_one_line(*run("feedback", str(tmp_path), "--field", str(EVAL)), 2, "manifest.json")
    capture = tmp_path / "cap"
    capture.mkdir()
    (capture / "field-000000.npz").symlink_to(EVAL)  # a link leaving the folder the user named
    assert_one_line(*run("feedback", build, "--field", str(capture)), 2, "leaving")
    assert not (tmp_path / "r").exists()


def test_the_packaged_monitor_runs_as_a_script_and_feedback_reads_its_report(example_build, tmp_path):
    """A CPU package as a device has it: field_monitor.py with numpy and ONNX Runtime, on samples
    its capture kept (float16 tensors); the workstation judges the field_stats.json it writes."""
    build = Path(example_build["build_dir"])
    (build / "captured").mkdir(exist_ok=True)  # a capture folder left in the build: never packaged
    (build / "captured" / "field-000000.npz").write_bytes(b"not for shipping")
    result = package(build, tmp_path / "dist")
    assert {LAYOUT.calib_stats, LAYOUT.int8_onnx, LAYOUT.field_monitor_py, LAYOUT.field_capture_py} <= set(result.files)
    assert not any("captured" in name or name.startswith("field-") for name in result.files)
    with tarfile.open(result.path) as tar:
        tar.extractall(tmp_path / "device", filter="data")
    device = tmp_path / "device" / result.name
    capture = Capture(str(tmp_path / "seen"), max_samples=40)
    with np.load(EVAL, allow_pickle=False) as d:
        for image in night(d["image"][:60]):
            capture.save({"image": image[None]})
    assert capture.saved == 40  # the cap
    script = subprocess.run([sys.executable, "-I", str(device / LAYOUT.field_monitor_py), str(device / LAYOUT.int8_onnx),
                             str(device / LAYOUT.calib_stats), "--field", str(tmp_path / "seen"), "--out",
                             str(tmp_path / "field_stats.json")], capture_output=True, text=True, cwd=tmp_path)
    assert script.returncode == 0, script.stderr
    stats = json.loads((tmp_path / "field_stats.json").read_text())
    assert stats["sampled"] == 40 and max(t["psi"] for t in stats["tensors"].values()) > 0.25
    judged = feedback(str(build), "--field", str(tmp_path / "field_stats.json"), "--json")
    assert judged.exit_code == 1 and json.loads(judged.stdout)["field"]["fidelity"] is None
    replayed = feedback(str(build), "--field", str(tmp_path / "seen"), "--json")  # the capture folder itself
    assert replayed.exit_code == 1 and json.loads(replayed.stdout)["field"]["samples"] == 40


def test_other_calibration_sources_get_a_bounded_deterministic_share():
    rng = np.random.default_rng(0)
    base = Dataset({"x": rng.normal(size=(300, 4)).astype(np.float32)}, None, Path("calib.npz"))
    field = Dataset({"x": rng.normal(50, 1, size=(200, 4)).astype(np.float32)}, None, Path("field.npz"))
    mixed, used = with_extra(base, [field], 256, seed=0)
    again, _ = with_extra(base, [field], 256, seed=0)
    assert len(mixed) == 256 and used[0]["samples"] == int(256 * EXTRA_SHARE) == 64
    assert int((mixed.inputs["x"][:, 0] > 25).sum()) == 64 and mixed.sha256 == again.sha256
    wrong = Dataset({"x": np.zeros((10, 5), np.float32)}, None, Path("wrong.npz"))
    with pytest.raises(Exception, match="per-sample shape"):
        with_extra(base, [wrong], 256, seed=0)


@pytest.mark.slow
def test_rebuild_with_field_samples_reports_before_and_after(example_build, night_npz, tmp_path):
    out = tmp_path / "feedback"
    result = feedback(example_build["build_dir"], "--field", str(night_npz), "--rebuild", "--out", str(out), "--format", "json,md")
    assert result.exit_code == 1, result.stderr  # the deployed build alerts; the rebuilt one is reported beside it
    doc = json.loads((out / "report.json").read_text())
    names = [c["name"] for c in doc["comparisons"]]
    assert len(names) == 3 and "before -> after" in names[1] and "evaluation" in names[2]
    rebuilt = json.loads((Path(doc["field"]["rebuild"]["build_dir"]) / LAYOUT.manifest).read_text())
    assert rebuilt["data"]["calibration"]["extra"][0]["samples"] == 64
    field_rows = {r["metric"]: r for r in doc["comparisons"][1]["rows"]}
    assert field_rows["tensor alerts"]["current"] < field_rows["tensor alerts"]["baseline"]
    eval_rows = {r["metric"]: r for r in doc["comparisons"][2]["rows"]}
    assert eval_rows["accuracy logits"]["current"] >= eval_rows["accuracy logits"]["baseline"] - 0.002
    with np.load(out / "field_calib.npz", allow_pickle=False) as kept:
        assert sorted(kept.files) == ["image"]  # model inputs only: no labels
