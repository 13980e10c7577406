"""Progress inside long stages (issue 21, item 6): a real `python -m edgeopt build` of the bundled
example under a pseudo-terminal draws the quantize stage's fractions on stderr while --json keeps
stdout for the document; off a terminal, plain lines; steps reach the callback from real code."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeopt.progress import reporting, step

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _under_a_terminal(args: list[str], env: dict, timeout: float = 300) -> tuple[int, str, str]:
    """Run `args` with stderr on a pseudo-terminal (stdout a pipe); (exit code, stdout, terminal text)."""
    master, slave = pty.openpty()
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, env=env)
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        elif process.poll() is not None:
            break
    stdout = process.stdout.read().decode()
    process.wait(timeout=timeout)
    os.close(master)
    return process.returncode, stdout, ANSI.sub("", b"".join(chunks).decode(errors="replace"))


@pytest.mark.slow
def test_a_build_on_a_terminal_shows_the_quantize_stage_fractions(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "CI"} | {"COLUMNS": "120", "TERM": "xterm",
                                                               "EDGEOPT_CACHE": str(tmp_path / "cache")}  # nothing cached
    code, stdout, terminal = _under_a_terminal(
        [sys.executable, "-m", "edgeopt", "build", "--out", str(tmp_path / "b"), "--latency-seconds", "0.2", "--json"], env)
    assert code == 0, terminal[-2000:]
    assert json.loads(stdout)["status"] == "ok"  # stdout holds the document and nothing else
    fractions = {label: [(int(d), int(t)) for d, t in re.findall(rf"quantize: {re.escape(label)}\s.*?(\d+)/(\d+)", terminal)]
                 for label in ("calibration samples", "candidates built")}
    for label, seen in fractions.items():
        assert seen, (label, terminal[-2000:])
        assert any(done == total for done, total in seen) and all(0 <= done <= total for done, total in seen), label
    assert "ETA" in terminal and "✓ quantize" in terminal


def test_off_a_terminal_progress_is_a_plain_line_now_and_then(monkeypatch, capsys):
    from edgeopt.cli.build import _Progress

    display = _Progress(terminal=False)
    monkeypatch.setattr(display, "PLAIN_EVERY_S", 0.0)
    display("start", "quantize", {})
    display("step", "quantize", {"done": 3, "total": 7, "label": "candidates"})
    display("step", "quantize", {"done": 2, "total": None, "label": "fallback search steps"})
    display("done", "quantize", {"seconds": 1.0})
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "quantize: candidates 3/7\nquantize: fallback search steps 2\n"
    slow = _Progress(terminal=False)  # the default: a short stage prints nothing
    slow("start", "quantize", {})
    slow("step", "quantize", {"done": 1, "total": 7, "label": "candidates"})
    assert capsys.readouterr().err == ""


def test_calibration_reports_every_sample_through_the_route(example_build, tmp_path):
    """Real calibration of the example's FP32 ONNX: the stage's own steps, 1..N of N."""
    from edgeopt.data import Dataset
    from edgeopt.stages.calibration import calibrate

    images = np.load(Path(example_build["data"]["calibration"]["path"]))["image"][:12]
    seen: list[tuple[int, int | None, str]] = []
    with reporting(lambda done, total, label: seen.append((done, total, label))):
        calibrate(Path(example_build["artifacts"]["onnx_fp32"]), Dataset({"image": images}, None, "calib"), "minmax",
                  ["Conv", "MatMul", "Gemm"], tmp_path / "ranges")
    assert [(d, t) for d, t, label in seen if label == "calibration samples"] == [(i, 12) for i in range(1, 13)]
    step(1, 1, "outside any pipeline")  # no route: nothing happens, nothing raises
    assert len(seen) == 12
