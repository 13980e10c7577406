"""Structured pruning on the bundled digits example: ratios 0.25/0.5/0.75, with and without
recovery, against the unpruned model. Accuracy, params, MACs, host latency FP32 and INT8.

Every variant is a real `edgeopt build` (prune -> export -> quantize -> compile -> validate) for
the host's CPU profile; the recovery variants distill on the calibration split (256 images,
disjoint from the 500-image evaluation split). All FP32 and INT8 models are then timed together
with edgeopt.bench.measure_onnx (interleaved blocks of runs in one process, so a slow patch of a
shared host hits every model alike): at batch 1, where a model this small is dominated by
per-run overhead, and at a larger batch, where the MACs show.

    python benchmarks/prune.py --seconds 20 --batch 32 --json /tmp/prune.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from edgeopt import bench
from edgeopt.data.npz import read_npz
from edgeopt.models.spec import InputSpec
from edgeopt.api import BuildOptions, build

REPO = Path(__file__).resolve().parents[1]
CALIB = REPO / "calibration" / "digits_calib.npz"
EVAL = REPO / "calibration" / "digits_eval.npz"


class Batched:
    """A view of a Dataset whose row i is a batch of `size` samples (measure_onnx feeds row by row)."""

    def __init__(self, data, size: int):
        self.data, self.size = data, size

    def __len__(self) -> int:
        return len(self.data) // self.size

    def batch(self, start: int, stop: int) -> dict:
        return self.data.batch(start * self.size, stop * self.size)


def variants(ratios: list[float], steps: int) -> list[tuple[str, float | None, bool]]:
    rows = [("unpruned", None, False)]
    for ratio in ratios:
        rows += [(f"{ratio:g}", ratio, False), (f"{ratio:g} + recovery", ratio, True)]
    return rows


def run_builds(args, work: Path) -> list[dict]:
    results = []
    for name, ratio, recovery in variants(args.ratios, args.steps):
        options = BuildOptions(target=args.target, out=work / name.replace(" ", ""), latency_seconds=0.1,
                               prune=str(ratio) if ratio else "none", cache_dir=args.cache_dir,
                               finetune_data=CALIB if recovery else None, finetune_steps=args.steps if recovery else 0)
        doc = build(options=options).to_json()
        print(f"built {name}: FP32 top-1 {doc['metrics']['fp32']['accuracy']}", flush=True)
        results.append({"name": name, "ratio": ratio, "recovery": recovery, "doc": doc})
    return results


def time_all(results: list[dict], threads: int, seconds: float, batch: int) -> dict:
    evaluation = read_npz(EVAL, [InputSpec(name="image", shape=(1, 1, 32, 32))])
    models = {}
    for row in results:
        models[(row["name"], "fp32")] = Path(row["doc"]["artifacts"]["onnx_fp32"])
        models[(row["name"], "int8")] = Path(row["doc"]["artifacts"]["deployable"] or row["doc"]["artifacts"]["onnx_int8"])
    keys = {f"{name}|{precision}": path for (name, precision), path in models.items()}
    data = evaluation if batch == 1 else Batched(evaluation, batch)
    latency = bench.measure_onnx(keys, data, threads, duration_s=seconds)
    return {key: value.model_dump() for key, value in latency.items()}


def table(results: list[dict], timings: dict[int, dict], threads: int) -> str:
    batches = sorted(timings)
    head = "| variant | params | MACs | FP32 top-1 | INT8 top-1 |" + "".join(
        f" FP32 p50 ms b{b} | INT8 p50 ms b{b} |" for b in batches)
    lines = [f"threads {threads}; p50 per run (speedup vs unpruned at the same precision and batch)", head,
             "|" + "---|" * (5 + 2 * len(batches))]
    base = results[0]["name"]
    for row in results:
        doc = row["doc"]
        prune = doc["prune"]
        macs = prune["after"]["macs"] if prune else results[1]["doc"]["prune"]["before"]["macs"]
        cells = [row["name"], f"{doc['model']['params']:,}", f"{macs / 1e6:.1f} M",
                 f"{doc['metrics']['fp32']['accuracy'] * 100:.1f}%", f"{doc['metrics']['int8']['accuracy'] * 100:.1f}%"]
        for b in batches:
            for precision in ("fp32", "int8"):
                mine, ref = timings[b][f"{row['name']}|{precision}"]["p50"], timings[b][f"{base}|{precision}"]["p50"]
                cells.append(f"{mine:.3f} ({ref / mine:.2f}x)")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    parser.add_argument("--steps", type=int, default=300, help="recovery distillation steps")
    parser.add_argument("--target", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds for all models together, per batch")
    parser.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--json", type=Path, help="write the raw results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = run_builds(args, Path(tmp))
        timings = {b: time_all(results, args.threads, args.seconds, b) for b in args.batch}
    print(table(results, timings, args.threads))
    if args.json:
        slim = [{k: v for k, v in r.items() if k != "doc"} | {"prune": r["doc"]["prune"], "metrics": r["doc"]["metrics"],
                                                              "params": r["doc"]["model"]["params"]} for r in results]
        args.json.write_text(json.dumps({"results": slim, "latency": timings}, indent=2, default=str))


if __name__ == "__main__":
    main()
