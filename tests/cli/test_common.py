"""cli/common.py: what every command shares. Errors become one stderr line and their exit code
(the whole traceback only with --debug), usage errors one line with the --help hint, image
reader options folded and checked, and CI=true means quiet."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from edgeopt.cli.common import Group, handle_errors, quiet, reader_options
from edgeopt.errors import BadInput, MissingEnvironment


def _group(error: BaseException | None = None):
    """A group built the way cli/__init__.py builds `edgeopt`: Group, --debug, handle_errors."""

    @click.group(cls=Group)
    @click.option("--debug", is_flag=True)
    def group(debug):
        pass

    @group.command()
    @click.option("--count", type=int, default=1)
    @handle_errors
    def fail(count):
        raise error

    @group.command()
    @reader_options
    @handle_errors
    def read(reader):
        click.echo(f"{reader.size} {reader.mean} {reader.std} {reader.layout}")

    return group


def _invoke(group, *args):
    return CliRunner().invoke(group, list(args))


@pytest.mark.parametrize("error, code, line", [
    (BadInput("calibration.npz: no array named 'x'"), 2, "edgeopt: error: calibration.npz: no array named 'x'"),
    (MissingEnvironment("TensorRT is not installed"), 3, "edgeopt: error: TensorRT is not installed"),
    (ModuleNotFoundError("No module named 'torch_pruning'", name="torch_pruning"), 3, "pip install torch-pruning"),
    (RuntimeError("boom"), 70, "edgeopt: internal error: RuntimeError: boom (rerun with --debug for the traceback)"),
    (KeyboardInterrupt(), 130, "edgeopt: interrupted"),
])
def test_an_error_is_one_stderr_line_and_its_exit_code(error, code, line):
    result = _invoke(_group(error), "fail")
    assert result.exit_code == code
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and line in result.stderr
    assert "Traceback" not in result.stderr


def test_debug_lets_the_traceback_through():
    result = _invoke(_group(RuntimeError("boom")), "--debug", "fail")
    assert isinstance(result.exception, RuntimeError)  # the exception itself, for the traceback


def test_a_usage_error_is_one_line_with_the_help_hint():
    result = _invoke(_group(), "fail", "--count", "many")
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "edgeopt: error: Invalid value for '--count': 'many' is not a valid integer. (see group fail --help)"]


def test_reader_options_fold_into_one_reader():
    result = _invoke(_group(), "read", "--size", "32x24", "--mean", "0.5,0.25,0.125", "--std", "0.5", "--layout", "NHWC")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.strip() == "(32, 24) (0.5, 0.25, 0.125) (0.5,) NHWC"
    assert _invoke(_group(), "read", "--size", "64").stdout.strip() == "(64, 64) None None None"


@pytest.mark.parametrize("args, message", [
    (["--size", "0x10"], "'0x10': each side must be 1..8192 pixels"),
    (["--size", "1x2x3"], "'1x2x3': expected HxW or one number"),
    (["--mean", "0.5,a"], "'0.5,a': expected numbers separated by ','"),
])
def test_bad_reader_options_are_usage_errors_naming_the_value(args, message):
    result = _invoke(_group(), "read", *args)
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and message in result.stderr


def test_ci_means_quiet(monkeypatch):
    monkeypatch.setenv("CI", "true")
    assert quiet()
    monkeypatch.setenv("CI", "false")
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    assert not quiet()
