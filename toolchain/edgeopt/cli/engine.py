"""`edgeopt engine build|time`: TensorRT engines, run on the device."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeopt.backends.tensorrt import timing_defaults as TRT_TIMING
from edgeopt.cli.common import EXIT_GATE_FAILED, emit_json, handle_errors, json_option, reader_options


@click.group()
def engine() -> None:
    """TensorRT engines on the device: build, validate, time."""


@engine.command("build")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--eval", "eval_", type=click.Path(path_type=Path),
              help="Evaluation data: then validate the engine against the FP32 ONNX and time it; metrics go into the build directory.")
@click.option("--duration", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="With --eval: seconds of timed runs (trtexec --duration).")
@json_option
@reader_options
@handle_errors
def engine_build(path, eval_, duration, as_json, reader):
    """Build the TensorRT engine of a build directory or package, with this host's TensorRT.

    Run it on the device the target names (a Jetson with the JetPack its profile pins).
    """
    from edgeopt.backends.tensorrt.device import engine_build as build_engine

    build_dir, engine = build_engine(path)
    document = {"schema_version": 1, "build_dir": str(build_dir), "engine": engine.absolute(build_dir).model_dump()}
    lines, gates = [f"engine: {build_dir / engine.engine}", engine.reason or ""], []
    if eval_ is not None:
        from edgeopt.backends.tensorrt.validate import validate_build

        validation, gates = validate_build(build_dir, eval_, reader=reader, duration_s=duration)
        document.update(validation=validation.model_dump(mode="json"), gates=[g.model_dump() for g in gates])
        lines += validation.summary_lines() + [f"gate {g.name}: {g.value} (threshold {g.threshold}) "
                                               f"{'passed' if g.passed else 'FAILED' if g.passed is False else 'not judged'}"
                                               for g in gates]
    if as_json:
        emit_json(document)
    else:
        click.echo("\n".join(lines))
    if any(g.passed is False for g in gates):
        sys.exit(EXIT_GATE_FAILED)


@engine.command("time")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--duration", type=click.FloatRange(min=0), default=float(TRT_TIMING.DURATION_S), show_default=True,
              help="Seconds of timed runs after the warm-up (trtexec --duration).")
@click.option("--warmup", type=click.FloatRange(min=0), default=TRT_TIMING.WARMUP_MS / 1000, show_default=True,
              help="Seconds of warm-up (trtexec --warmUp, which takes ms).")
@json_option
@handle_errors
def engine_time(path, duration, warmup, as_json):
    """Time the engine of a build directory or package as trtexec does, at its opt shapes."""
    from edgeopt.backends.tensorrt.device import time_build

    timing = time_build(path, warmup_s=warmup, duration_s=duration)
    if as_json:
        emit_json({"schema_version": 1, **timing.model_dump(mode="json")})
    else:
        click.echo("\n".join(timing.summary_lines()))


# --- bench and report (regression reports against a baseline) ----------------------------------
