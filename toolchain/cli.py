"""The `edgeopt` command: parse options, call the library, print, choose the exit code.

Exit codes (DESIGN.md): 0 success; 1 a gate failed; 2 bad input or usage; 3 the host lacks
something required (TensorRT); 130 interrupted; 70 an internal error (a bug: rerun with --debug).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from pathlib import Path

import click

import edgeopt
from edgeopt.errors import EdgeoptError

EXIT_GATE_FAILED = 1
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130


def _quiet() -> bool:
    """CI=true or no terminal: plain output, no progress animation."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or not sys.stderr.isatty()


def _emit_json(document: dict) -> None:
    click.echo(json.dumps(document, indent=2, default=str))


def handle_errors(command):
    """Turn library errors into one stderr line and their exit code; tracebacks only with --debug."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return command(*args, **kwargs)
        except EdgeoptError as error:
            if debug:
                raise
            click.echo(f"edgeopt: error: {error}", err=True)
            sys.exit(error.exit_code)
        except KeyboardInterrupt:
            click.echo("edgeopt: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as error:  # a bug in edgeopt or a library: say so in one line
            if debug:
                raise
            first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            click.echo(f"edgeopt: internal error: {type(error).__name__}: {first} (rerun with --debug for the traceback)", err=True)
            sys.exit(EXIT_INTERNAL)

    return wrapper


targets_dir_option = click.option(
    "--targets-dir", type=click.Path(path_type=Path), envvar=None,
    help="Extra folder of target profiles (also: EDGEOPT_TARGETS).")
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON document on stdout.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(edgeopt.__version__, prog_name="edgeopt")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
def main(debug: bool) -> None:
    """edgeopt: a fine-tuned model to a validated INT8 artifact for an edge device."""


class _Progress:
    """Stage progress on stderr: a spinner on a terminal, nothing in CI (the summary says it all)."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._status = None
        if enabled:
            from rich.console import Console

            self._console = Console(stderr=True)

    def __call__(self, event: str, stage: str, details: dict) -> None:
        if not self.enabled:
            return
        if event == "start":
            self._status = self._console.status(f"{stage}...")
            self._status.start()
        elif self._status is not None:
            self._status.stop()
            cached = " (cached)" if details.get("cached") else ""
            self._console.print(f"[green]✓[/green] {stage} {details.get('seconds', 0):.2f} s{cached}")

    def close(self) -> None:
        if self._status is not None:
            self._status.stop()


@main.command()
@click.argument("model", required=False)
@click.option("--target", "-t", default="cpu", show_default=True, help="Target profile name or alias; cpu = this host.")
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration data (.npz).")
@click.option("--eval", "eval_", type=click.Path(path_type=Path), help="Evaluation data (.npz, optional labels).")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Build directory [default: build/<model>/<target>].")
@click.option("--input-shape", "input_shapes", multiple=True, help="NAME=1x3x224x224 (repeatable), for models without metadata.")
@click.option("--calib-samples", type=click.IntRange(min=1), default=256, show_default=True, help="Calibration samples (deterministic sample).")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True)
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0), help="Override the target's accuracy gate (fraction, 0.01 = 1 point).")
@click.option("--latency-seconds", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds of timed runs per model when measuring host latency.")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Stage cache folder [default: $EDGEOPT_CACHE or ~/.cache/edgeopt].")
@click.option("--no-cache", is_flag=True, help="Run every stage, ignoring and not writing the cache.")
@targets_dir_option
@json_option
@handle_errors
def build(model, target, calib, eval_, out, input_shapes, calib_samples, calib_method, max_accuracy_drop,
          latency_seconds, cache_dir, no_cache, targets_dir, as_json):
    """Build MODEL for one target: load, export, quantize, compile, validate.

    MODEL is a .pt2 (torch.export), a TorchScript .pt, file.py:factory or module:factory, an
    .onnx file, or a Hugging Face folder; without it, the bundled digits example is built.
    """
    from edgeopt.pipeline import BuildOptions, build as run_build
    from edgeopt.report.summary import render_build

    options = BuildOptions(model=model, target=target, calib=calib, eval=eval_, out=out, input_shapes=input_shapes,
                           calib_samples=calib_samples, calib_method=calib_method, max_accuracy_drop=max_accuracy_drop,
                           latency_seconds=latency_seconds, cache_dir=cache_dir, use_cache=not no_cache, targets_dir=targets_dir)
    progress = _Progress(enabled=not _quiet() and not as_json)
    # Libraries (the torch exporter among them) print to stdout; keep stdout for our output only.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = run_build(options, progress)
    finally:
        progress.close()
    if as_json:
        _emit_json(result)
    else:
        click.echo(render_build(result))
    if result["status"] != "ok":
        sys.exit(EXIT_GATE_FAILED)


@main.group()
def targets() -> None:
    """List and inspect target device profiles."""


@targets.command("list")
@targets_dir_option
@json_option
@handle_errors
def targets_list(targets_dir, as_json):
    """All known target profiles (shipped and user)."""
    from edgeopt import targets as target_profiles

    profiles = target_profiles.load_all(targets_dir)
    host = target_profiles.host_profile(profiles).name
    rows = [{"name": p.name, "backend": p.backend, "product": p.device.product, "aliases": p.aliases,
             "tensorrt": p.software.tensorrt, "host": p.name == host, "source": p.source} for p in profiles.values()]
    if as_json:
        _emit_json({"targets": rows, "host": host})
        return
    for row in rows:
        extras = ", ".join(filter(None, [f"alias {', '.join(row['aliases'])}" if row["aliases"] else "",
                                         f"TensorRT {row['tensorrt']}" if row["tensorrt"] else "",
                                         "this host (cpu)" if row["host"] else ""]))
        click.echo(f"{row['name']:<24} {row['backend']:<12} {row['product']}" + (f"  [{extras}]" if extras else ""))


@targets.command("show")
@click.argument("name")
@targets_dir_option
@json_option
@handle_errors
def targets_show(name, targets_dir, as_json):
    """One target profile, after alias and host resolution."""
    from edgeopt import targets as target_profiles

    import yaml

    profile = target_profiles.resolve(name, targets_dir)
    body = profile.model_dump(mode="json")
    if as_json:
        _emit_json(body)
    else:
        click.echo(yaml.safe_dump(body, sort_keys=False).rstrip())


@main.group()
def engine() -> None:
    """TensorRT engines: finish a build on the device."""


@engine.command("build")
@click.argument("path", type=click.Path(path_type=Path))
@json_option
@handle_errors
def engine_build(path, as_json):
    """Build the TensorRT engine of a build directory or package, with this host's TensorRT.

    Run it on the device the target names (a Jetson with the JetPack its profile pins).
    """
    from edgeopt.stages.engine import engine_build as build_engine

    result = build_engine(path)
    if as_json:
        _emit_json(result.summary())
    else:
        click.echo(f"engine: {result.engine_path}\n{result.reason}")


if __name__ == "__main__":
    main()
