"""`edgeopt doctor`: parse and print only; backends/tensorrt/doctor.py does the work."""

from __future__ import annotations

import json

import click


@click.command("doctor")
def doctor() -> None:
    """Report TensorRT, GPU, DLA, power mode and clocks, and build and run a tiny engine."""
    from edgeopt.backends.tensorrt.doctor import doctor as run_doctor
    from edgeopt.errors import EdgeoptError, user_line

    try:
        report = run_doctor()
    except EdgeoptError as exc:
        line, code = user_line(exc)
        click.echo(line, err=True)
        raise SystemExit(code) from None
    click.echo(json.dumps(report, indent=2))
