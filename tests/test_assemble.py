"""Default build folders: two different builds of one model and target never share a folder."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli

from edgeopt.assemble import default_out
from edgeopt.pipeline import BuildOptions


def test_default_folder_is_plain_for_the_default_build():
    assert default_out(BuildOptions(), "digits cnn", "cpu-x86-avx2") == Path("build/digits-cnn/cpu-x86-avx2")


def test_options_that_change_the_artifact_change_the_folder():
    folders = {
        default_out(BuildOptions(**options), "m", "t")
        for options in ({}, {"prune": "0.5"}, {"prune": "0.25"}, {"prune": "2:4"}, {"calib_method": "entropy"},
                        {"calib_samples": 64}, {"calib": Path("a.npz")}, {"calib": Path("b.npz")},
                        {"max_accuracy_drop": 0.02}, {"seq_len": 64})
    }
    assert len(folders) == 10
    assert default_out(BuildOptions(prune="0.5"), "m", "t") == Path("build/m/t-prune0.5")
    # options that do not change the artifact keep the folder
    assert default_out(BuildOptions(use_cache=False, latency_seconds=9), "m", "t") == Path("build/m/t")


def test_the_folder_digest_has_at_least_16_hex_digits():
    """8 hex digits is the width behind Olive's cache collision (Olive #1936)."""
    digest = default_out(BuildOptions(calib_samples=64), "m", "t").name.rpartition("-")[2]
    assert len(digest) >= 16 and int(digest, 16) >= 0


def test_dry_run_lists_keys_and_cache_hits(example_build, tmp_path):
    result = run_cli("build", "--dry-run", "--json", "--out", str(tmp_path / "x"), "--latency-seconds", "0.2")
    rows = json.loads(result.stdout)["stages"]
    assert [r["name"] for r in rows] == ["load", "export", "quantize", "calib_stats", "compile", "validate"]
    assert all(r["cached"] for r in rows) and all(len(r["key"]) == 64 for r in rows)
    assert not (tmp_path / "x").exists()  # a dry run builds nothing
    cold = run_cli("build", "--dry-run", "--json", "--calib-method", "percentile")
    rows = json.loads(cold.stdout)["stages"]
    assert [r["cached"] for r in rows][-1] is False and rows[-1]["name"] == "quantize"
