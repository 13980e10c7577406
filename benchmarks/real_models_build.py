"""Real pretrained models built with `edgeopt build` for --target cpu and --target jetson: FP32 vs
INT8 latency on this CPU (interleaved in one process by the validate stage) and each output's
fidelity. Prints the Markdown table recorded in docs/BENCHMARKS.md.

    PYTHONPATH=toolchain python benchmarks/real_models_build.py [model ...]

Models: efficientnet-lite2, ppocr-det, ppocr-cls, minilm (tests/real_models.py prepares each).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import real_models  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from edgeopt.cli import main  # noqa: E402


def build(args: list[str], target: str, out: Path) -> dict:
    result = CliRunner().invoke(main, ["build", *args, "--target", target, "--out", str(out), "--json",
                                       "--latency-seconds", "3", "--max-accuracy-drop", "1"])
    if result.exit_code != 0:
        raise SystemExit(f"{args[0]} for {target}: exit {result.exit_code}: {result.stderr.strip()}")
    return json.loads(result.stdout)


def _outputs(doc: dict) -> str:
    parts = []
    for row in doc["metrics"]["outputs"]:
        judged = f", {row['metric']} {row['candidate']:.3f}" if row.get("metric") else ""
        parts.append(f"`{row['name'][:24]}` {row['kind']}: cos {row['cosine_mean']:.4f}{judged}")
    return "; ".join(parts)


def main_(names: list[str]) -> None:
    print("| model | target | FP32 p50 ms | INT8 p50 ms | outputs (INT8 vs FP32) | gate value | engine |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            args = real_models.MODELS[name](folder)
            for target in ("cpu", "jetson"):
                doc = build(args, target, folder / target)
                fp32, int8 = doc["metrics"]["fp32"]["latency_ms"], doc["metrics"]["int8"]["latency_ms"]
                gate = doc["gates"][0]
                print(f"| {name} | {doc['target']['name']} | {fp32['p50']:.2f} | {int8['p50']:.2f} | " if fp32 and int8
                      else f"| {name} | {doc['target']['name']} | n/a (GPU) | n/a (GPU) | ", end="")
                print(f"{_outputs(doc)} | {gate['value']} ({gate['note']}) | {doc['engine']['status']} |")


if __name__ == "__main__":
    main_(sys.argv[1:] or list(real_models.MODELS))
