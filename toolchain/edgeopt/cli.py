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
from edgeopt.errors import EdgeoptError, missing_package, user_line

EXIT_GATE_FAILED = 1
EXIT_INTERRUPTED = 130


def _quiet() -> bool:
    """CI=true or no terminal: plain output, no progress animation."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes") or not sys.stderr.isatty()


def _emit_json(document: dict) -> None:
    click.echo(json.dumps(document, indent=2, default=str))


def handle_errors(command):
    """Turn any exception into one stderr line and its exit code (errors.user_line); the whole
    chain with --debug. Ctrl-C is 130 whatever the library was doing."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        debug = click.get_current_context().find_root().params.get("debug", False)
        try:
            return command(*args, **kwargs)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except BaseException as error:  # noqa: BLE001 - every escape gets one line and a code
            if isinstance(error, SystemExit):
                raise
            if debug and not isinstance(error, KeyboardInterrupt):
                raise
            if (missing := missing_package(error)) is not None:
                click.echo(f"edgeopt: error: {missing}", err=True)
                sys.exit(missing.exit_code)
            line, code = user_line(error)
            if isinstance(error, KeyboardInterrupt) and debug:
                import traceback

                traceback.print_exc()
            click.echo(line, err=True)
            sys.exit(code)

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
        if dims is not None and not all(1 <= d <= 8192 for d in dims):
            raise click.BadParameter(f"'{size}': each side must be 1..8192 pixels", param_hint="--size")
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


class _Group(click.Group):
    """Ctrl-C at any moment, including while click parses, is exit 130 with one line (click's own
    "Aborted!" is exit 1, our gate-failed code)."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)  # without standalone mode, ctx.exit(n) returns n
        except click.exceptions.Exit as done:
            sys.exit(done.exit_code)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except (KeyboardInterrupt, click.exceptions.Abort, EOFError):
            interrupted()
        sys.exit(code if isinstance(code, int) and not isinstance(code, bool) else 0)


def interrupted() -> None:
    try:
        sys.stderr.write("edgeopt: interrupted\n")
        sys.stderr.flush()
    finally:
        sys.exit(EXIT_INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
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
@click.option("--input-shape", "input_shapes", multiple=True, help="NAME=1x3x224x224 or NAME:1x3x224x224 (repeatable).")
@click.option("--task", type=click.Choice(["classification", "embedding", "regression", "detection", "dense"]), help="What the outputs hold (picks the metric) [default: metadata.json / config.json].")
@click.option("--precision", type=click.Choice(["int8", "fp16", "fp32"]), default="int8", show_default=True, help="fp16/fp32 skip quantization; CPUs refuse fp16 unless FP16-native.")
@click.option("--metric", help="path/metric.py:function(fp32_outputs, candidate_outputs, labels) -> float, higher is better; the gate and fallback use it.")
@click.option("--seq-len", type=click.IntRange(min=1), help="Texts: tokens per sample [default: the target's build.seq_len.opt].")
@click.option("--trust-remote-code", is_flag=True, help="Hugging Face folders: allow the folder's own Python code (auto_map).")
@click.option("--trust-pickle", is_flag=True, help=".pt2 models: allow pickled parts (unpickling runs code stored in the file).")
@click.option("--force", is_flag=True, help="Let --out replace a folder that is not an edgeopt build.")
@click.option("--calib-samples", type=click.IntRange(min=1), default=256, show_default=True, help="Calibration samples (deterministic sample).")
@click.option("--calib-method", type=click.Choice(["minmax", "entropy", "percentile"]), default="minmax", show_default=True,
              help="activation ranges; with minmax, CNNs on CPU targets also try percentile ranges (selection data picks)")
@click.option("--max-accuracy-drop", type=click.FloatRange(min=0), help="Override the target's accuracy gate (fraction, 0.01 = 1 point).")
@click.option("--latency-seconds", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds of timed runs per model when measuring host latency.")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Stage cache folder [default: $EDGEOPT_CACHE or ~/.cache/edgeopt].")
@click.option("--no-cache", is_flag=True, help="Run every stage, ignoring and not writing the cache.")
@click.option("--dry-run", is_flag=True, help="Print the stages, their cache keys and which the cache serves; build nothing.")
@targets_dir_option
@json_option
@reader_options
@prune_options
@click.option("--save-baseline", type=click.Path(path_type=Path), help="Store this build's metrics, latency samples and environment as a baseline file.")
@click.option("--baseline", type=click.Path(path_type=Path), help="Compare with a baseline file; a regression fails the build (exit 1).")
@click.option("--latency-tolerance", type=click.FloatRange(min=0), default=0.05, show_default=True, help="With --baseline: slowdown allowed (fraction).")
@click.option("--accuracy-tolerance", type=click.FloatRange(min=0), default=0.005, show_default=True, help="With --baseline: accuracy loss allowed (fraction).")
@click.option("--strict", is_flag=True, help="A gate that could not be judged here fails the build (for CI).")
@handle_errors
def build(model, target, calib, eval_, out, input_shapes, calib_samples, calib_method, max_accuracy_drop,
          latency_seconds, cache_dir, no_cache, dry_run, targets_dir, as_json, reader, task, seq_len, trust_remote_code, prune_settings,
          precision, metric, save_baseline, baseline, latency_tolerance, accuracy_tolerance, strict, trust_pickle=False, force=False):
    """Build MODEL for one target: load, export, quantize, compile, validate.

    MODEL is a .pt2 (torch.export), a TorchScript .pt, file.py:factory or module:factory, an
    .onnx file, or a Hugging Face folder; without it, the bundled digits example is built.
    """
    from edgeopt import api
    from edgeopt.report.summary import render_build

    options = dict(target=target, calib=calib, eval=eval_, out=out, input_shapes=input_shapes,
                   calib_samples=calib_samples, calib_method=calib_method, max_accuracy_drop=max_accuracy_drop,
                   latency_seconds=latency_seconds, cache_dir=cache_dir, use_cache=not no_cache, targets_dir=targets_dir,
                   reader=reader, task=task, seq_len=seq_len, trust_remote_code=trust_remote_code, precision=precision, metric=metric,
                   trust_pickle=trust_pickle, force=force, **prune_settings)
    if dry_run:
        rows = api.plan(model, **options)
        if as_json:
            _emit_json({"schema_version": 1, "stages": rows})
        else:
            for row in rows:
                click.echo(f"{row['name']:<10} {row['key']}  {'cached' if row['cached'] else 'would run'}")
            if rows and not rows[-1]["cached"]:
                click.echo("(later stages depend on its output: they run too)")
        return
    progress = _Progress(enabled=not _quiet() and not as_json)
    # Libraries (the torch exporter among them) print to stdout; keep stdout for our output only.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = api.build(model, progress=progress, **options).to_json()
    finally:
        progress.close()
    from edgeopt.report import baseline as baselines, gates as judging

    result["not_judged"] = judging.not_judged(result["gates"])
    comparison = None
    if baseline is not None:
        comparison = baselines.judge(result, baseline, {"latency": latency_tolerance, "accuracy": accuracy_tolerance})
        result["baseline_comparison"] = {**{k: v for k, v in comparison.items() if k != "sensitivity"},  # no raw samples
                                         "rows": [{k: v for k, v in r.items() if k != "samples"} for r in comparison["rows"]]}
    if save_baseline is not None:
        baselines.save(result, save_baseline)
    if as_json:
        _emit_json(result)
    else:
        click.echo(render_build(result))
        if comparison is not None:
            from edgeopt.report.render_markdown import change

            click.echo(f"  baseline   {baseline}: {comparison['verdict']}")
            for row in comparison["rows"]:
                click.echo(f"             {row['metric']}: {change(row)} -> {row['verdict']}")
            for warning in comparison["environment_warnings"]:
                click.echo(f"  warning    unsafe comparison: {warning}")
        if save_baseline is not None:
            click.echo(f"  baseline   saved to {save_baseline}")
    if (result["status"] != "ok" or judging.failed(result["gates"], strict)
            or (comparison is not None and comparison["verdict"] == "regressed")):
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
        _emit_json({"schema_version": 1, "targets": rows, "host": host})
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
        _emit_json({"schema_version": 1, **body})
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
    from edgeopt.backends.tensorrt.device import time_build

    timing = time_build(path, warmup_s=warmup, duration_s=duration)
    if as_json:
        _emit_json({"schema_version": 1, **timing.model_dump(mode="json")})
    else:
        click.echo("\n".join(timing.summary_lines()))


# --- bench and report (regression reports against a baseline) ----------------------------------


@main.command("bench")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--duration", type=click.FloatRange(min=0), default=3.0, show_default=True, help="Seconds of timed runs after a 0.2 s warm-up.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per inference (free batch dimension).")
@json_option
@handle_errors
def bench_command(build_dir, duration, batch, as_json):
    """Time the deployable artifact of BUILD_DIR on this host: percentiles, CV, throughput, raw samples."""
    from edgeopt.bench import bench_build

    doc = bench_build(build_dir, duration_s=duration, batch=batch)
    if as_json:
        _emit_json(doc)
        return
    lat = doc.get("latency_ms") or doc.get("host_latency")
    click.echo(f"{doc['model']} ({doc['backend']}, batch {doc.get('batch', 1)}, threads {doc.get('threads', 1)})")
    click.echo(f"  median {lat['p50']} ms  p90 {lat['p90']}  p95 {lat['p95']}  p99 {lat['p99']}  mean {lat['mean']}  "
               f"min {lat['min']}  max {lat['max']}  CV {lat['cv']:.2%}")
    click.echo(f"  {lat['runs']} runs in {doc['duration_s']} s, throughput {doc['throughput_qps']} inferences/s")


@main.command("report")
@click.option("--baseline", "baselines", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Baseline file (or `edgeopt build --json` output); repeat, paired in order with --current.")
@click.option("--current", "currents", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Current baseline file or build JSON; repeat for many builds in one report.")
@click.option("--format", "formats", default="md", show_default=True, help="Comma-separated: md,html,junit,json.")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for the report files [default: print Markdown].")
@click.option("--latency-tolerance", type=click.FloatRange(min=0), default=0.05, show_default=True)
@click.option("--accuracy-tolerance", type=click.FloatRange(min=0), default=0.005, show_default=True)
@handle_errors
def report_command(baselines, currents, formats, out, latency_tolerance, accuracy_tolerance):
    """Compare current builds with baselines: ratio with CI and a verdict per metric. Exit 1 on a regression."""
    from edgeopt.errors import BadInput
    from edgeopt.report import baseline as stored, compare, render_markdown
    from edgeopt.report.write import write

    if len(baselines) != len(currents):
        raise BadInput(f"--baseline given {len(baselines)} times but --current {len(currents)} times: pair them")
    doc = compare.report([compare.compare(stored.load_any(a), stored.load_any(b), latency_tolerance=latency_tolerance,
                                          accuracy_tolerance=accuracy_tolerance) for a, b in zip(baselines, currents)])
    if out is None:
        click.echo(render_markdown.render(doc))
    else:
        for path in write(doc, [f.strip() for f in formats.split(",") if f.strip()], out):
            click.echo(str(path))
    if doc["verdict"] == "regressed":
        sys.exit(EXIT_GATE_FAILED)


# --- release: package, verify, release, matrix (issue 14) ------------------------------------


@main.command("package")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("dist"), show_default=True,
              help="Folder the .tar.gz is written to.")
@click.option("--version", "version", help="Release version, part of the package name.")
@click.option("--layout", type=click.Choice(["bundle", "triton"]), default="bundle", show_default=True,
              help="bundle: the device package; triton: a Triton Inference Server model repository.")
@click.option("--eval", "eval_", type=click.Path(path_type=Path),
              help="GPU targets: evaluation data shipped for on-device validation [default: the build's].")
@json_option
@handle_errors
def package_command(build_dir, out, version, layout, eval_, as_json):
    """A reproducible .tar.gz of BUILD_DIR for deployment (with SHA256SUMS)."""
    from edgeopt.stages.package import package

    result = package(build_dir, out, version=version, layout=layout, eval_path=eval_)
    _emit_json(result.model_dump(mode="json")) if as_json else click.echo(f"{result.path}  ({result.bytes:,} bytes, sha256 {result.sha256})")


@main.command("verify")
@click.argument("package_path", metavar="PACKAGE", type=click.Path(path_type=Path))
@click.option("--device", is_flag=True, help="Also require this host (TensorRT and GPU, or CPU) to be the target's (exit 3 without TensorRT).")
@json_option
@handle_errors
def verify_command(package_path, device, as_json):
    """Check a package's files, schemas and (on a device) TensorRT and GPU; exit 1 naming what differs."""
    from edgeopt.package_verify import verify

    result = verify(package_path, device=device)
    lines = [f"{result.package}: {result.files} files, " + ("ok" if result.ok else "FAILED")] + [f"  {p}" for p in result.problems]
    lines += [f"  device: {result.device.get('note') or result.device}"] if result.device else []
    _emit_json(result.model_dump(mode="json") | {"ok": result.ok}) if as_json else click.echo("\n".join(lines))
    sys.exit(0 if result.ok else EXIT_GATE_FAILED)


@main.command("release")
@click.option("--project", "-p", type=click.Path(path_type=Path), default=Path("edgeopt.yaml"), show_default=True)
@click.option("--jobs", "-j", type=click.IntRange(min=1), help="Builds run in parallel [default: the CPU count].")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("dist"), show_default=True,
              help="Folder for packages, builds and the summary.")
@click.option("--version", "version", help="Release version, part of every package name.")
@click.option("--model", "models", multiple=True, help="Only this model (repeatable; CI matrix jobs).")
@click.option("--target", "-t", "targets_", multiple=True, help="Only this target (repeatable; CI matrix jobs).")
@json_option
@handle_errors
def release_command(project, jobs, out, version, models, targets_, as_json):
    """Build, validate and package every (model, target) pair of the project file; exit 1 if any gate failed."""
    from edgeopt.release import run_release

    result = run_release(project, out, jobs=jobs, version=version, models=models, targets=targets_)
    _emit_json(result.model_dump(mode="json")) if as_json else click.echo(f"{result.markdown}\nsummary: {result.summary_path}")
    sys.exit(result.exit_code)


@main.command("matrix")
@click.option("--project", "-p", type=click.Path(path_type=Path), default=Path("edgeopt.yaml"), show_default=True)
@click.option("--by", type=click.Choice(["target", "pair"]), default="target", show_default=True,
              help="target: one CI job per target (runners with that device); pair: one per (model, target).")
@handle_errors
def matrix_command(project, by):
    """The project's pairs as JSON for a CI matrix (GitHub Actions: fromJSON)."""
    from edgeopt.project import load_project

    click.echo(json.dumps(load_project(project).matrix(by), separators=(",", ":")))


@main.group()
def cache() -> None:
    """Inspect and trim the stage cache."""


@cache.command("info")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Stage cache folder [default: $EDGEOPT_CACHE or ~/.cache/edgeopt].")
@json_option
@handle_errors
def cache_info(cache_dir, as_json):
    """Entries and size per stage."""
    from edgeopt.cache import cache_info as info

    document = info(cache_dir)
    if as_json:
        _emit_json(document)
        return
    click.echo(f"{document['path']}: {document['entries']} entries, {document['bytes'] / 1e6:.1f} MB")
    for stage, numbers in sorted(document["stages"].items()):
        click.echo(f"  {stage:<12} {numbers['entries']:>5} entries  {numbers['bytes'] / 1e6:>9.1f} MB")


def _bytes(text: str | None) -> int | None:
    if text is None:
        return None
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    number, unit = text.strip().upper().rstrip("B"), ""
    if number and number[-1] in units:
        number, unit = number[:-1], number[-1]
    try:
        return int(float(number) * units[unit])
    except ValueError:
        raise click.BadParameter(f"'{text}': expected a size such as 500M or 2G", param_hint="--max-size") from None


@cache.command("clear")
@click.option("--cache-dir", type=click.Path(path_type=Path), help="Stage cache folder [default: $EDGEOPT_CACHE or ~/.cache/edgeopt].")
@click.option("--max-size", help="Keep the newest entries up to this size (500M, 2G); without it, remove all.")
@json_option
@handle_errors
def cache_clear(cache_dir, max_size, as_json):
    """Remove cache entries, oldest first."""
    from edgeopt.cache import cache_clear as clear

    document = clear(cache_dir, _bytes(max_size))
    if as_json:
        _emit_json(document)
    else:
        click.echo(f"{document['path']}: removed {document['removed']} entries ({document['freed_bytes'] / 1e6:.1f} MB), "
                   f"{document['bytes'] / 1e6:.1f} MB left")


if __name__ == "__main__":
    main()
