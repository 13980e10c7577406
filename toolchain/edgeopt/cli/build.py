"""`edgeopt build`: the whole pipeline for one model and target, with progress and a summary."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import click

from edgeopt.report import baseline as baselines
from edgeopt.cli.common import (EXIT_GATE_FAILED, emit_json, handle_errors, json_option, prune_options, quiet,
                                reader_options, targets_dir_option)


class _Progress:
    """Progress on stderr, never stdout. On a terminal: a line per stage with a bar, the fraction
    and an ETA, fed by the stage's own steps (edgeopt.progress: calibration samples, candidates
    built, timing, fallback search), then a tick with the stage's seconds. Elsewhere (CI, a pipe,
    a log file): a plain line such as "quantize: candidates built 3/7" at most every
    PLAIN_EVERY_S seconds while a stage runs, so a short build prints nothing and a 3-minute
    quantize stage a line per 10 s."""

    PLAIN_EVERY_S = 10.0

    def __init__(self, terminal: bool):
        self._bar = self._task = self._label = None
        self._last_line = 0.0
        if terminal:
            from rich.console import Console
            from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                                       TimeRemainingColumn)

            self._bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=True,
                                 redirect_stdout=False, redirect_stderr=False)  # rich would put its saved stdout
            # back on stop: build()'s redirect_stdout(stderr) would then outlive the build and take the --json document

    def __call__(self, event: str, stage: str, details: dict) -> None:
        if event == "start":
            self._label, self._last_line = None, time.monotonic()
            if self._bar is not None:
                self._bar.start()
                self._task = self._bar.add_task(f"{stage}...", total=None)
        elif event == "step":
            self._step(stage, details["done"], details["total"], details["label"])
        elif event == "done" and self._bar is not None and self._task is not None:
            self._bar.remove_task(self._task)
            self._task = None
            cached = " (cached)" if details.get("cached") else ""
            self._bar.console.print(f"[green]✓[/green] {stage} {details.get('seconds', 0):.2f} s{cached}")

    def _step(self, stage: str, done: int, total: int | None, label: str) -> None:
        if self._bar is None:
            now = time.monotonic()
            if now - self._last_line >= self.PLAIN_EVERY_S:
                sys.stderr.write(f"{stage}: {label} {done}{f'/{total}' if total is not None else ''}\n")
                sys.stderr.flush()
                self._last_line = now
        elif self._task is not None:
            if label != self._label:  # a new kind of step: a fresh bar, so the ETA is its own
                self._label = label
                self._bar.reset(self._task, total=total, completed=done, description=f"{stage}: {label}")
                self._bar.refresh()
            else:
                self._bar.update(self._task, total=total, completed=done)
            if total is not None and done >= total:
                self._bar.refresh()  # the finished fraction is drawn even in a step shorter than a refresh

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


@click.command()
@click.argument("model", required=False)
@click.option("--target", "-t", default="cpu", show_default=True, help="Target profile name or alias; cpu = this host.")
@click.option("--calib", multiple=True, type=click.Path(path_type=Path), help="Calibration data (.npz, an image folder, or .txt/.jsonl texts); repeat to add sources (field samples): those after the first make at most a quarter of the calibration sample.")
@click.option("--eval", "eval_", type=click.Path(path_type=Path), help="Evaluation data (.npz, an image folder, or .txt/.jsonl texts; labels optional).")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Build directory [default: build/<model>/<target>].")
@click.option("--input-shape", "input_shapes", multiple=True, help="NAME=1x3x224x224 or NAME:1x3x224x224 (repeatable).")
@click.option("--task", type=click.Choice(["classification", "embedding", "regression", "detection", "dense", "text-generation"]), help="What the outputs hold (picks the metric) [default: metadata.json / config.json].")
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
@click.option("--latency-tolerance", type=click.FloatRange(min=0), default=baselines.LATENCY_TOLERANCE, show_default=True, help="With --baseline: slowdown allowed (fraction).")
@click.option("--accuracy-tolerance", type=click.FloatRange(min=0), default=baselines.ACCURACY_TOLERANCE, show_default=True, help="With --baseline: accuracy loss allowed (fraction).")
@click.option("--strict", is_flag=True, help="A gate that could not be judged here fails the build (for CI).")
@handle_errors
def build(model, dry_run, as_json, save_baseline, baseline, latency_tolerance, accuracy_tolerance, strict, **params):
    """Build MODEL for one target: load, export, quantize, compile, validate.

    MODEL is a .pt2 (torch.export), a TorchScript .pt, file.py:factory or module:factory, an
    .onnx file, or a Hugging Face folder; without it, the bundled digits example is built.
    """
    from edgeopt import api
    from edgeopt.report.summary import render_build

    options = build_options(params)
    if dry_run:
        rows = api.plan(model, **options)
        if as_json:
            emit_json({"schema_version": 1, "stages": rows})
        else:
            for row in rows:
                click.echo(f"{row['name']:<10} {row['key']}  {'cached' if row['cached'] else 'would run'}")
            if rows and not rows[-1]["cached"]:
                click.echo("(later stages depend on its output: they run too)")
        return
    progress = _Progress(terminal=not quiet())  # on stderr: --json keeps stdout for the document
    # Libraries (the torch exporter among them) print to stdout; keep stdout for our output only.
    try:
        with contextlib.redirect_stdout(sys.stderr):
            result = api.build(model, progress=progress, **options).to_json()
    finally:
        progress.close()
    comparison = baselines.judge_build(result, baseline, save_baseline,
                                       {"latency": latency_tolerance, "accuracy": accuracy_tolerance})
    if as_json:
        emit_json(result)
    else:
        if "llm" in result["metrics"]:  # issue 18: decoder-only LLM builds have their own summary
            from edgeopt.report.summary_llm import render_llm

            click.echo(render_llm(result))
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
    if baselines.build_failed(result, comparison, strict):
        sys.exit(EXIT_GATE_FAILED)


def build_options(params: dict) -> dict:
    """The command's options as BuildOptions fields (the one place their names are translated)."""
    params = dict(params)
    prune_settings = params.pop("prune_settings")
    calib = tuple(params.pop("calib") or ())  # --calib repeated (issue 22): the first, then extra sources
    renamed = {"eval": params.pop("eval_"), "use_cache": not params.pop("no_cache"),
               "calib": calib[0] if calib else None, "extra_calib": calib[1:]}
    return {**params, **renamed, **prune_settings}
