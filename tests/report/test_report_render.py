"""The four report formats from one comparison, and the HTML page rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from edgeopt.errors import BadInput
from edgeopt.report import compare
from edgeopt.report.write import write
from test_report_compare import doc


@pytest.fixture(scope="module")
def report():
    current = doc(1.2, accuracy=0.93, seed=5, threads=4)
    current["quantization"] = {"fallback": {"layers": [{"node": f"/conv{i}/Conv", "drop_if_float": 0.01 * (5 - i)} for i in range(5)]}}
    return compare.report([compare.compare(doc(), current), compare.compare(doc(), doc(seed=9))])


def test_all_four_formats(report, tmp_path):
    paths = write(report, ["md", "html", "junit", "json"], tmp_path / "out")
    assert sorted(p.name for p in paths) == ["report.html", "report.json", "report.junit.xml", "report.md"]
    md = (tmp_path / "out" / "report.md").read_text()
    assert "🔴 regressed" in md and "Unsafe comparison**: another thread count: 2 -> 4" in md
    assert "| latency_p50_int8 |" in md and "| digits-cnn -> cpu | ⚪ unchanged |" in md
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["schema_version"] == 1 and data["verdict"] == "regressed"
    suites = ET.parse(tmp_path / "out" / "report.junit.xml").getroot()
    first = suites.findall("testsuite")[0]
    failed = [c.get("name") for c in first.findall("testcase") if c.find("failure") is not None]
    assert "latency_p50_int8" in failed and "accuracy_int8" in failed and "agreement_int8" not in failed
    assert suites.findall("testsuite")[1].get("failures") == "0"
    page = (tmp_path / "out" / "report.html").read_text()
    assert "<script" not in page and "http" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert page.count("<svg") == 2 * 3 + 1  # per build: FP32 and INT8 latency, accuracy; + sensitivity


def test_unknown_format_is_bad_input(report, tmp_path):
    with pytest.raises(BadInput, match="pdf"):
        write(report, ["md", "pdf"], tmp_path)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")
def test_html_renders_in_headless_chromium(report, tmp_path):
    write(report, ["html"], tmp_path)
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
                        "--window-size=1000,1400", f"--screenshot={shot}", f"file://{tmp_path / 'report.html'}"],
                       check=True, capture_output=True, timeout=120)
    from skimage.io import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 900
    assert pixels.std() > 20  # not a blank page
    # the baseline histogram colour (#4c72b0, drawn at 55 % opacity) and the regression red appear
    blended = np.round(0.55 * np.array([0x4C, 0x72, 0xB0]) + 0.45 * np.array([0xFA, 0xFA, 0xFA]))
    assert (np.abs(pixels.astype(int) - blended).sum(axis=-1) < 12).sum() > 200
    assert (np.abs(pixels.astype(int) - [0xC0, 0x39, 0x2B]).sum(axis=-1) < 30).sum() > 50
    if os.environ.get("EDGEOPT_KEEP_SHOT"):  # to look at it: EDGEOPT_KEEP_SHOT=/tmp/report.png
        shutil.copy(shot, os.environ["EDGEOPT_KEEP_SHOT"])
