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


def _numbers(kind, text: str | None):
    if text is None:
        return None
    try:
        return tuple(kind(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(f"'{text}': expected numbers separated by ','") from None


def reader_options(command):
    """--size/--mean/--std/--layout for image data, folded into one ReaderOptions (`reader`)."""

    @functools.wraps(command)
    def wrapper(*args, size=None, mean=None, std=None, layout=None, **kwargs):
        from edgeopt.data import ReaderOptions

        dims = _numbers(int, size)
        if dims is not None and len(dims) not in (1, 2):
            raise click.BadParameter(f"'{size}': expected HxW or one number", param_hint="--size")
        reader = ReaderOptions(size=(dims * 2)[:2] if dims else None, mean=_numbers(float, mean),
                               std=_numbers(float, std), layout=layout)
        return command(*args, reader=reader, **kwargs)

    for option in reversed([
        click.option("--size", help="Images: resize to HxW (e.g. 224x224) [default: model metadata or input shape]."),
        click.option("--mean", help="Images: per-channel mean after scaling to [0, 1], e.g. 0.485,0.456,0.406."),
        click.option("--std", help="Images: per-channel std, e.g. 0.229,0.224,0.225."),
        click.option("--layout", type=click.Choice(["NCHW", "NHWC"], case_sensitive=False), help="Images: tensor layout."),
    ]):
        wrapper = option(wrapper)
    return wrapper


def prune_options(command):
    """--prune, --prune-importance, --prune-ignore, --finetune-data/-steps, folded into `prune_settings`."""

    @functools.wraps(command)
    def wrapper(*args, prune=None, prune_importance="magnitude", prune_ignore=(), finetune_data=None,
                finetune_steps=None, **kwargs):
        settings = {"prune": prune, "prune_importance": prune_importance, "prune_ignore": tuple(prune_ignore),
                    "finetune_data": finetune_data, "finetune_steps": finetune_steps or 0}
        return command(*args, prune_settings=settings, **kwargs)

    for option in reversed([
        click.option("--prune", help="Channel ratio to remove (0.5), '2:4' sparsity (Ampere+ targets), or 'none' "
                                     "[default: the target's build.prune]."),
        click.option("--prune-importance", type=click.Choice(["magnitude", "bn", "taylor"]), default="magnitude",
                     show_default=True, help="How channels are ranked (taylor uses the fine-tune or calibration data)."),
        click.option("--prune-ignore", multiple=True, help="Module name pruning leaves untouched (repeatable)."),
        click.option("--finetune-data", type=click.Path(path_type=Path),
                     help="Data for a recovery fine-tune after pruning (distillation from the unpruned model; labels optional)."),
        click.option("--finetune-steps", type=click.IntRange(min=1), help="Recovery steps [default: 300 with --finetune-data]."),
    ]):
        wrapper = option(wrapper)
    return wrapper


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
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration data (.npz, an image folder, or .txt/.jsonl texts).")
@click.option("--eval", "eval_", type=click.Path(path_type=Path), help="Evaluation data (.npz, an image folder, or .txt/.jsonl texts; labels optional).")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Build directory [default: build/<model>/<target>].")
@click.option("--input-shape", "input_shapes", multiple=True, help="NAME=1x3x224x224 (repeatable), for models without metadata.")
@click.option("--task", type=click.Choice(["classification", "embedding", "regression"]),
              help="Hugging Face folders: what the model outputs [default: from config.json / modules.json].")
@click.option("--seq-len", type=click.IntRange(min=1), help="Texts: tokens per sample [default: the target's build.seq_len.opt].")
@click.option("--trust-remote-code", is_flag=True, help="Hugging Face folders: allow the folder's own Python code (auto_map).")
@click.option("--calib-samples", type=click.IntRange(min=1), default=256, show_default=True, help="Calibration samples (deterministic sample).")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True)
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0), help="Override the target's accuracy gate (fraction, 0.01 = 1 point).")
@click.option("--latency-seconds", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds of timed runs per model when measuring host latency.")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Stage cache folder [default: $EDGEOPT_CACHE or ~/.cache/edgeopt].")
@click.option("--no-cache", is_flag=True, help="Run every stage, ignoring and not writing the cache.")
@targets_dir_option
@json_option
@reader_options
@prune_options
@handle_errors
def build(model, target, calib, eval_, out, input_shapes, calib_samples, calib_method, max_accuracy_drop,
          latency_seconds, cache_dir, no_cache, targets_dir, as_json, reader, task, seq_len, trust_remote_code, prune_settings):
    """Build MODEL for one target: load, export, quantize, compile, validate.

    MODEL is a .pt2 (torch.export), a TorchScript .pt, file.py:factory or module:factory, an
    .onnx file, or a Hugging Face folder; without it, the bundled digits example is built.
    """
    from edgeopt.pipeline import BuildOptions, build as run_build
    from edgeopt.report.summary import render_build

    options = BuildOptions(model=model, target=target, calib=calib, eval=eval_, out=out, input_shapes=input_shapes,
                           calib_samples=calib_samples, calib_method=calib_method, max_accuracy_drop=max_accuracy_drop,
                           latency_seconds=latency_seconds, cache_dir=cache_dir, use_cache=not no_cache, targets_dir=targets_dir,
                           reader=reader, task=task, seq_len=seq_len, trust_remote_code=trust_remote_code,
                           **prune_settings)
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
    from edgeopt.stages.engine import engine_build as build_engine

    result = build_engine(path)
    document, lines, gates = result.summary(), [f"engine: {result.engine_path}", result.reason], []
    if eval_ is not None:
        from edgeopt.stages.validate_engine import validate_build

        validation, gates = validate_build(result.engine_path.parent, eval_, reader=reader, duration_s=duration)
        document.update(validation=validation.model_dump(mode="json"), gates=[g.model_dump() for g in gates])
        lines += validation.summary_lines() + [f"gate {g.name}: {g.value} (threshold {g.threshold}) "
                                               f"{'passed' if g.passed else 'FAILED' if g.passed is False else 'not judged'}"
                                               for g in gates]
    if as_json:
        _emit_json(document)
    else:
        click.echo("\n".join(lines))
    if any(g.passed is False for g in gates):
        sys.exit(EXIT_GATE_FAILED)


@engine.command("time")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--duration", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="Seconds of timed runs after the warm-up (trtexec --duration).")
@click.option("--warmup", type=click.FloatRange(min=0), default=0.2, show_default=True,
              help="Seconds of warm-up (trtexec --warmUp, which takes ms).")
@json_option
@handle_errors
def engine_time(path, duration, warmup, as_json):
    """Time the engine of a build directory or package as trtexec does, at its opt shapes."""
    from edgeopt.stages.engine import time_build

    timing = time_build(path, warmup_s=warmup, duration_s=duration)
    if as_json:
        _emit_json(timing.model_dump(mode="json"))
    else:
        click.echo("\n".join(timing.summary_lines()))


if __name__ == "__main__":
    main()
