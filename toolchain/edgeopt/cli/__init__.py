"""The `edgeopt` command: parse options, call the library, print, choose the exit code.

Exit codes (DESIGN.md): 0 success; 1 a gate failed; 2 bad input or usage; 3 the host lacks
something required (TensorRT); 130 interrupted; 70 an internal error (a bug: rerun with --debug).
"""

from __future__ import annotations

import click

from edgeopt.version import __version__
from edgeopt.cli.build import build
from edgeopt.cli.cache import cache
from edgeopt.cli.common import Group
from edgeopt.cli.doctor import doctor
from edgeopt.cli.engine import engine
from edgeopt.cli.feedback import feedback_command
from edgeopt.cli.measure import bench_command, report_command
from edgeopt.cli.release import keygen_command, matrix_command, package_command, release_command, verify_command
from edgeopt.cli.targets import targets


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgeopt")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """edgeopt: a fine-tuned model to a validated INT8 artifact for an edge device."""


for command in (build, targets, engine, bench_command, report_command, package_command, verify_command,
                release_command, matrix_command, cache, doctor, keygen_command, feedback_command):
    main.add_command(command)
