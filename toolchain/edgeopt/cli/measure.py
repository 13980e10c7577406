"""`edgeopt bench` times a build on this host; `edgeopt report` compares builds with baselines."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from edgeopt.cli.common import EXIT_GATE_FAILED, emit_json, handle_errors, json_option
from edgeopt.report.baseline import ACCURACY_TOLERANCE, LATENCY_TOLERANCE


@click.command("bench")
@click.argument("build_dir", type=click.Path(path_type=Path))
@click.option("--duration", type=click.FloatRange(min=0), default=3.0, show_default=True, help="Seconds of timed runs after a 0.2 s warm-up.")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per inference (free batch dimension).")
@json_option
@handle_errors
def bench_command(build_dir, duration, batch, as_json):
    """Time the deployable artifact of BUILD_DIR on this host: percentiles, CV, throughput, raw samples."""
    from edgeopt.api import bench_build

    doc = bench_build(build_dir, duration_s=duration, batch=batch)
    if as_json:
        emit_json(doc)
        return
    if doc.get("kind") == "causal-lm":  # an LLM build: tokens, not inferences
        tok = doc["token_latency_ms"]
        click.echo(f"{doc['model']} ({doc['backend']}, threads {doc['threads']}, {doc['prompt_tokens']}-token prompt, "
                   f"{doc['new_tokens']} new tokens, {doc['runs']} runs)")
        click.echo(f"  TTFT {doc['ttft_ms']:.1f} ms  decode {doc['decode_tokens_per_s']:.1f} tok/s  per token p50 "
                   f"{tok['p50']:.2f} ms  p90 {tok['p90']:.2f}  p99 {tok['p99']:.2f}")
        click.echo(f"  peak RSS {doc['peak_rss_mb']:.0f} MB ({doc['rss_before_load_mb']:.0f} MB before loading)  "
                   f"model {doc['model_bytes'] / 2**20:.1f} MB")
        return
    lat = doc.get("latency_ms") or doc.get("host_latency")
    click.echo(f"{doc['model']} ({doc['backend']}, batch {doc.get('batch', 1)}, threads {doc.get('threads', 1)})")
    click.echo(f"  median {lat['p50']} ms  p90 {lat['p90']}  p95 {lat['p95']}  p99 {lat['p99']}  mean {lat['mean']}  "
               f"min {lat['min']}  max {lat['max']}  CV {lat['cv']:.2%}")
    click.echo(f"  {lat['runs']} runs in {doc['duration_s']} s, throughput {doc['throughput_qps']} inferences/s")


@click.command("report")
@click.option("--baseline", "baselines", multiple=True, required=True, type=click.Path(path_type=Path),
              help="Baseline file, `edgeopt build --json` output, build folder, device-measured folder or release "
                   "folder (pairs matched by model and target); repeat, paired in order with --current.")
@click.option("--current", "currents", multiple=True, required=True, type=click.Path(path_type=Path),
              help="The same kinds as --baseline; repeat for many builds in one report.")
@click.option("--format", "formats", default="md", show_default=True, help="Comma-separated: md,html,junit,json.")
@click.option("--out", type=click.Path(path_type=Path), help="Folder for the report files [default: print Markdown].")
@click.option("--latency-tolerance", type=click.FloatRange(min=0), default=LATENCY_TOLERANCE, show_default=True)
@click.option("--accuracy-tolerance", type=click.FloatRange(min=0), default=ACCURACY_TOLERANCE, show_default=True)
@handle_errors
def report_command(baselines, currents, formats, out, latency_tolerance, accuracy_tolerance):
    """Compare current builds with baselines: ratio with CI and a verdict per metric. Exit 1 on a regression."""
    from edgeopt.errors import BadInput
    from edgeopt.report import baseline as stored
    from edgeopt.report import compare, render_markdown
    from edgeopt.report.write import write

    if len(baselines) != len(currents):
        raise BadInput(f"--baseline given {len(baselines)} times but --current {len(currents)} times: pair them")
    pairs = [pair for a, b in zip(baselines, currents) for pair in stored.paired(a, b)]
    doc = compare.report([compare.compare(a, b, latency_tolerance=latency_tolerance, accuracy_tolerance=accuracy_tolerance)
                          for a, b in pairs])
    if out is None:
        click.echo(render_markdown.render(doc))
    else:
        for path in write(doc, [f.strip() for f in formats.split(",") if f.strip()], out):
            click.echo(str(path))
    if doc["verdict"] == "regressed":
        sys.exit(EXIT_GATE_FAILED)


# --- release: package, verify, release, matrix (issue 14) ------------------------------------
