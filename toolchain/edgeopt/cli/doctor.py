"""`edgeopt doctor`: parse and print only; backends/tensorrt/doctor.py does the work."""

from __future__ import annotations

import json

import click

from edgeopt.cli.common import handle_errors


@click.command("doctor")
@handle_errors
def doctor() -> None:
    """Report TensorRT, GPU, DLA, power mode and clocks, and build and run a tiny engine."""
    from edgeopt.backends.tensorrt.doctor import doctor as run_doctor

    click.echo(json.dumps(run_doctor(), indent=2))
