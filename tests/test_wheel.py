"""`python -m build` makes the wheel and sdist the README's device install names, and the wheel
works without the repository: shipped profiles, the bundled example, the release commands.

`--no-isolation` uses the setuptools already installed (no download, ~2 s) when it is recent
enough; otherwise (a fresh Python 3.12+ venv has none) the isolated build fetches it. CI's
workflow (docs/ci.md) runs the isolated `python -m build`."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, version

import pytest
from conftest import REPO

import edgeopt

try:
    ISOLATION = [] if int(version("setuptools").split(".")[0]) < 77 else ["--no-isolation"]
except (PackageNotFoundError, ValueError):  # no setuptools here: let build make its own environment
    ISOLATION = []

pytestmark = pytest.mark.slow


def test_wheel_and_sdist_build_and_the_wheel_runs_without_the_repository(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", *ISOLATION, "--outdir", str(dist), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    wheel = dist / f"edgeopt-{edgeopt.__version__}-py3-none-any.whl"
    assert sorted(p.name for p in dist.iterdir()) == [wheel.name, f"edgeopt-{edgeopt.__version__}.tar.gz"]
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"edgeopt/_shipped/targets/jetson-orin-nano-8gb.yaml", "edgeopt/_shipped/calibration/digits_eval.npz",
            "edgeopt/_shipped/examples/digits/weights.pt", "edgeopt/package/bundle.py", "edgeopt/package/triton.py",
            "edgeopt/release.py"} <= names
    entry_points = zipfile.ZipFile(wheel).read(f"edgeopt-{edgeopt.__version__}.dist-info/entry_points.txt").decode()
    assert re.search(r"^edgeopt = edgeopt\.__main__:run$", entry_points, re.M)

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed wheel, not the repository's toolchain/
    run = subprocess.run([sys.executable, "-m", "edgeopt", "targets", "list", "--json"], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    listed = json.loads(run.stdout)["targets"]
    jetson = next(t for t in listed if t["name"] == "jetson-orin-nano-8gb")
    assert jetson["source"].startswith(str(site)) and "jetson" in jetson["aliases"]
    for command in ("package", "verify", "release", "matrix"):
        assert subprocess.run([sys.executable, "-m", "edgeopt", command, "--help"], cwd=tmp_path, env=env,
                              capture_output=True, timeout=120).returncode == 0
