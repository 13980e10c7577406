"""Power of edgeopt's latency regression verdict on a shared, noisy host.

20 A/A comparisons (the same artifact in two sessions) must report 0 regressions; 20 comparisons
with a 10 % slowdown injected into the current side must be caught at least 19 times; each
comparison's measurement must take under 10 s. A and B run in interleaved blocks
(edgeopt.bench.interleaved), the verdict comes from the median of per-block ratios with a
bootstrap CI (edgeopt.report.compare), tolerance 5 %.

    PYTHONPATH=toolchain python -m edgeopt build --out /tmp/example
    PYTHONPATH=toolchain python benchmarks/regression_power.py /tmp/example
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from edgeopt import bench
from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.build_dir import LAYOUT
from edgeopt.report import compare


def slowed(run, factor: float, runs: int = 200):
    """`run`, then a busy wait of `factor` x its median time (measured here, quietly): +`factor`
    on the median, as extra compute would add, without scaling the neighbours' bursts too."""
    times = bench.run_for(run, 0.05, 0.0, runs)
    extra = sorted(times)[len(times) // 2] * factor / 1000

    def wrapped():
        run()
        end = time.perf_counter() + extra
        while time.perf_counter() < end:
            pass
    return wrapped


def one(path: Path, threads: int, slowdown: float, blocks: int, block_runs: int, tolerance: float) -> dict:
    a = runtime.session(path, threads=threads)
    b = runtime.session(path, threads=threads)
    feed = bench.random_feed(a)
    run_a = lambda: a.run(None, feed)  # noqa: E731
    run_b = slowed(lambda: b.run(None, feed), slowdown) if slowdown else (lambda: b.run(None, feed))
    start = time.perf_counter()
    blocks_a, blocks_b = bench.interleaved(run_a, run_b, blocks=blocks, block_runs=block_runs)
    seconds = time.perf_counter() - start
    stats = compare.paired_ratio(compare.block_ratios(blocks_a, blocks_b))
    return {**stats, "seconds": seconds,
            "verdict": compare.latency_verdict(stats["ratio"], stats["ci_low"], stats["ci_high"], tolerance)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("build_dir", type=Path)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--blocks", type=int, default=40)
    parser.add_argument("--block-runs", type=int, default=20)
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()
    path = args.build_dir / LAYOUT.ort_deployable
    print(f"artifact {path}, threads {args.threads}, {args.blocks} blocks x {args.block_runs} runs per side, "
          f"tolerance {args.tolerance:.0%}")
    print("| case | trials | regressed | improved | unchanged | ratio median (min-max) | CI width median | seconds max |")
    print("|---|---|---|---|---|---|---|---|")
    for label, slowdown in (("A/A", 0.0), ("A/B +10%", 0.10)):
        rows = [one(path, args.threads, slowdown, args.blocks, args.block_runs, args.tolerance) for _ in range(args.trials)]
        count = {v: sum(r["verdict"] == v for r in rows) for v in ("regressed", "improved", "unchanged")}
        ratios = sorted(r["ratio"] for r in rows)
        widths = sorted(r["ci_high"] - r["ci_low"] for r in rows)
        print(f"| {label} | {len(rows)} | {count['regressed']} | {count['improved']} | {count['unchanged']} | "
              f"{ratios[len(ratios) // 2]:.3f} ({ratios[0]:.3f}-{ratios[-1]:.3f}) | {widths[len(widths) // 2]:.3f} | "
              f"{max(r['seconds'] for r in rows):.2f} |", flush=True)


if __name__ == "__main__":
    main()
