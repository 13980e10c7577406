"""`edgeopt build`: the whole pipeline for one model and target, with progress and a summary."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import click

from edgeopt.report import baseline as baselines
from edgeopt.cli.common import (EXIT_GATE_FAILED, emit_json, handle_errors, json_option, prune_options, quiet,
                                reader_options, targets_dir_option)


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
    progress = _Progress(enabled=not quiet() and not as_json)
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
