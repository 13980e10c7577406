"""cli/build.py: every option of `edgeopt build` becomes a BuildOptions field by one translation
(build_options), and `--dry-run` on a built example says every stage is cached without building."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import FAST, run_cli

from edgeopt import api
from edgeopt.cli.build import build_options
from edgeopt.pipeline import BuildOptions


def _options(monkeypatch, *args: str) -> dict:
    """What the command hands the library (api.plan, through --dry-run): every decorator applied."""
    seen = {}
    monkeypatch.setattr(api, "plan", lambda model, **options: seen.update(options) or [])
    result = run_cli("build", "--dry-run", *args)
    assert result.exit_code == 0, result.stderr
    return seen


def test_every_option_is_a_build_options_field(monkeypatch):
    options = _options(monkeypatch, "--no-cache", "--eval", "e.npz", "--prune", "0.5", "--prune-ignore", "fc", "--size", "28",
                       "--latency-seconds", "0.5")
    assert set(options) <= set(BuildOptions.model_fields), set(options) - set(BuildOptions.model_fields)
    typed = BuildOptions(**options)
    assert typed.use_cache is False and typed.eval == Path("e.npz") and typed.prune == "0.5"
    assert typed.prune_ignore == ("fc",) and typed.reader.size == (28, 28) and typed.latency_seconds == 0.5
    assert BuildOptions(**_options(monkeypatch)) == BuildOptions()  # the command's defaults are the library's


def test_dry_run_of_a_built_example_serves_every_stage_from_the_cache(example_build):
    result = run_cli("build", "--dry-run", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["stages"]
    assert [(r["name"], r["cached"]) for r in rows] == [(s["name"], True) for s in example_build["stages"]]


def test_build_options_renames_the_commands_own_names():
    assert build_options({"eval_": Path("e.npz"), "no_cache": False, "prune_settings": {"prune": "2:4"}, "target": "l4",
                          "calib": (Path("c.npz"), Path("field"))}) == {
        "eval": Path("e.npz"), "use_cache": True, "prune": "2:4", "target": "l4",
        "calib": Path("c.npz"), "extra_calib": (Path("field"),)}  # --calib repeated: the first, then extra sources
