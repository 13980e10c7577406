"""edgeopt.yaml: strict schema with errors naming the file and key, the pairs, the CI matrix."""

from __future__ import annotations

import json

import pytest
from conftest import run_cli

from edgeopt.errors import BadInput
from edgeopt.project import load_project

PROJECT = """\
models:
  digits: {}
  tiny:
    source: tiny.py:build
    calib: data/calib.npz
    eval: /abs/eval.npz
    prune: 0.5
targets: [cpu, jetson]
"""


def test_pairs_matrix_and_paths(tmp_path):
    (tmp_path / "tiny.py").write_text("")
    path = tmp_path / "edgeopt.yaml"
    path.write_text(PROJECT)
    project = load_project(path)
    assert project.pairs() == [("digits", "cpu"), ("digits", "jetson"), ("tiny", "cpu"), ("tiny", "jetson")]
    assert project.pairs(targets=("jetson",)) == [("digits", "jetson"), ("tiny", "jetson")]
    tiny = project.models["tiny"]
    assert tiny.prune == "0.5" and tiny.precision == "int8" and tiny.metric == "accuracy"
    assert project.path(tiny.calib) == tmp_path / "data/calib.npz" and str(project.path(tiny.eval)) == "/abs/eval.npz"
    assert project.source(tiny) == str(tmp_path / "tiny.py:build") and project.source(project.models["digits"]) is None
    result = run_cli("matrix", "--project", str(path))
    assert result.exit_code == 0 and json.loads(result.stdout) == {"include": [{"target": "cpu"}, {"target": "jetson"}]}
    pairs = json.loads(run_cli("matrix", "-p", str(path), "--by", "pair").stdout)["include"]
    assert len(pairs) == 4 and pairs[3] == {"model": "tiny", "target": "jetson"}


@pytest.mark.parametrize("text, line", [
    ("models: {a: {sorce: x.py:f}}\ntargets: [cpu]\n", "unknown key 'models.a.sorce'"),
    ("models: {a: {precision: fp8}}\ntargets: [cpu]\n", "key 'models.a.precision': Input should be"),
    ("models: {a: {}}\ntargets: []\n", "key 'targets': "),
    ("models: {a: {}}\n", "missing key 'targets'"),
    ("models: {a: {}}\ntargets: [cpu]\njobs: 4\n", "unknown key 'jobs'"),
    ("models: {a: {}}\ntargets: [cpu]\noptions: {latency_seconds: -1}\n", "key 'options.latency_seconds': "),
])
def test_schema_errors_name_the_file_and_key(text, line, tmp_path):
    """The wording of target profiles' errors (targets.describe_error): unknown, missing, or why."""
    path = tmp_path / "edgeopt.yaml"
    path.write_text(text)
    with pytest.raises(BadInput) as error:
        load_project(path)
    assert str(error.value).startswith(f"{path}: {line}")
    result = run_cli("matrix", "-p", str(path))
    assert result.exit_code == 2 and result.stderr.startswith(f"edgeopt: error: {path}: {line}")
    assert len(result.stderr.splitlines()) == 1


def test_unknown_model_or_target_filter_is_bad_input(tmp_path):
    path = tmp_path / "edgeopt.yaml"
    path.write_text(PROJECT)
    result = run_cli("release", "-p", str(path), "--target", "t4")
    assert result.exit_code == 2 and "--target t4: not in the project" in result.stderr
    assert run_cli("matrix", "-p", str(tmp_path / "missing.yaml")).exit_code == 2
