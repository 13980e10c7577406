"""`edgeopt feedback`: field data against a build's calibration; exit 1 on an alert."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeopt.cli.common import EXIT_GATE_FAILED, emit_json, handle_errors, json_option


@click.command("feedback")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--field", "field", required=True, type=click.Path(path_type=Path),
              help="Field data: a device's field_stats.json, a folder of captured .npz/.npy samples, or .npz / image folder / .txt/.jsonl.")
@click.option("--rebuild", is_flag=True, help="Also build with field samples in the calibration set (a bounded share) and report before/after.")
@click.option("--field-samples", type=click.IntRange(min=1, max=64), default=64, show_default=True,
              help="With --rebuild: field samples added to calibration (deterministic sample).")
@click.option("--format", "formats", default="md", show_default=True, help="Comma-separated: md,html,junit,json.")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for the report files (and the rebuilt build) [default: print Markdown].")
@click.option("--max-field-saturation", type=click.FloatRange(0, 1), help="Override the target's gate: share of a tensor's values outside its range.")
@click.option("--max-field-psi", type=click.FloatRange(min=0), help="Override the target's gate: PSI of a tensor against calibration.")
@json_option
@handle_errors
def feedback_command(build_dir, field, rebuild, field_samples, formats, out, max_field_saturation, max_field_psi, as_json):
    """Replay field data through FP32 and BUILD_DIR's deployed artifact: per-tensor saturation and
    PSI against calibration, per-output fidelity, accuracy where labels exist. Exit 1 on an alert."""
    from edgeopt.errors import BadInput
    from edgeopt.field import feedback, report

    names = [f.strip() for f in formats.split(",") if f.strip()]
    if rebuild and out is None:
        raise BadInput("--rebuild needs --out: the rebuilt build and the field samples it calibrates on go there")
    if out is not None:  # refuse a bad --format or --out before the replay
        report.check_out(names, out)
    doc = feedback.feedback(build_dir, field, saturation=max_field_saturation, psi=max_field_psi)
    if rebuild:
        from edgeopt.field import recalibrate

        doc = recalibrate.rebuild(doc, out, field_samples)
    if as_json:
        emit_json(doc)
    elif out is None:
        click.echo(report.markdown(doc))
    if out is not None:
        for path in report.write(doc, names, out):
            if not as_json:
                click.echo(str(path))
    if doc["verdict"] == "regressed":
        sys.exit(EXIT_GATE_FAILED)
