"""The field package called from Python, as a library user would (the CLI tests cover the
command): the feedback document, the recalibration split, the report's plots, the package files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import EVAL
from test_field_feedback import night

from edgeopt.build_dir import LAYOUT
from edgeopt.data.dataset import Dataset
from edgeopt.field import feedback, recalibrate, report, shipped


def test_feedback_judges_night_images_against_the_builds_calibration(example_build, tmp_path):
    with np.load(EVAL, allow_pickle=False) as d:
        np.savez(tmp_path / "night.npz", image=night(d["image"][:100]), labels=d["labels"][:100])
        np.savez(tmp_path / "day.npz", image=d["image"][:100], labels=d["labels"][:100])
    night_doc = feedback.feedback(Path(example_build["build_dir"]), tmp_path / "night.npz")
    day_doc = feedback.feedback(Path(example_build["build_dir"]), tmp_path / "day.npz")
    assert night_doc["verdict"] == "regressed" and night_doc["field"]["alerts"]
    assert day_doc["verdict"] == "unchanged" and day_doc["field"]["alerts"] == []
    relaxed = feedback.feedback(Path(example_build["build_dir"]), tmp_path / "night.npz", saturation=1.0, psi=1e9)
    assert relaxed["field"]["thresholds"]["max_field_psi"] == 1e9
    assert not [a for a in relaxed["field"]["alerts"] if not a.startswith("accuracy")]  # only fidelity may still alert


def test_the_recalibration_split_is_deterministic_and_held_out():
    data = Dataset({"x": np.arange(100, dtype=np.float32)[:, None]}, np.arange(100), "field")
    pick, rest, held_out = recalibrate.split(data, 16)
    again, _, _ = recalibrate.split(data, 16)
    assert held_out and len(pick) == 16 and len(rest) == 84
    assert np.array_equal(pick.inputs["x"], again.inputs["x"])
    assert not set(pick.inputs["x"][:, 0]) & set(rest.inputs["x"][:, 0])
    small, same, held_out = recalibrate.split(data, 200)
    assert not held_out and small is data and same is data


def test_the_histogram_plot_has_a_bar_per_bin_for_each_side():
    import re

    svg = report.histogram_svg("t", [1, 5, 0, 2], [0, 0, 7, 1])
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([0-9.]+)"', svg)]
    assert svg.startswith("<svg") and svg.endswith("</svg>") and len(heights) == 8  # 4 bins, two sides
    assert heights.index(max(heights)) == 6  # the field's bin 2 (7 of 8) is the tallest share
    assert heights[2] == heights[4] == heights[5] == 0.0


def test_a_package_gets_the_stats_the_qdq_model_and_the_monitor(example_build):
    names = [name for name, _, _ in shipped.field_files(Path(example_build["build_dir"]), {})]
    assert names[:2] == [LAYOUT.calib_stats, LAYOUT.int8_onnx]
    assert set(names[2:]) == {LAYOUT.field_monitor_py, LAYOUT.field_capture_py}
    again = [name for name, _, _ in shipped.field_files(Path(example_build["build_dir"]), {LAYOUT.int8_onnx: "x"})]
    assert LAYOUT.int8_onnx not in again  # a GPU package ships the Q/DQ ONNX already
