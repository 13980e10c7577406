"""version.py: the one version string: the installed distribution's, `edgeopt --version`'s and the
one every build's manifest records (cache keys carry it through host.edgeopt_fingerprint)."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

from conftest import run_cli

from edgeopt.version import __version__


def test_one_version_everywhere(example_build):
    assert version("edgeopt") == __version__  # pyproject reads it from version.py
    assert run_cli("--version").stdout.strip() == f"edgeopt, version {__version__}"
    assert json.loads(Path(example_build["manifest"]).read_text())["edgeopt"] == __version__
