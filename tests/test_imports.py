"""Every module imports on its own in a fresh interpreter (catches import cycles)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import edgeopt


@pytest.mark.slow
def test_every_module_imports_alone():
    names = [m.name for m in pkgutil.walk_packages(edgeopt.__path__, "edgeopt.") if m.name != "edgeopt.__main__"]
    script = "import importlib, sys\nfor n in sys.argv[1:]:\n    importlib.import_module(n)\n"
    for name in names:
        result = subprocess.run([sys.executable, "-c", script, name], capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr[-500:]}"


def test_cli_does_not_import_torch():
    """`edgeopt --help` and cached builds stay fast: the CLI module must not pull in torch."""
    result = subprocess.run([sys.executable, "-c", "import sys, edgeopt.cli, edgeopt.pipeline; print('torch' in sys.modules)"],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
