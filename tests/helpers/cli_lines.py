"""The CLI as the reliability tests see it: exit code and the non-empty stderr lines."""

from __future__ import annotations

from click.testing import CliRunner

from edgeopt.cli import main


def run(*args: str, env: dict | None = None) -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False, env=env)
    return result.exit_code, [line for line in result.stderr.splitlines() if line.strip()]


def assert_one_line(code: int, lines: list[str], expected_code: int, *needles: str) -> None:
    """The contract for every refusal: this exit code, exactly one line, no traceback, the needles in it."""
    assert code == expected_code, lines
    assert len(lines) == 1, lines
    assert "Traceback" not in lines[0]
    for needle in needles:
        assert needle in lines[0], lines
