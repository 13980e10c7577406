"""Size of a jetson package (issue 21, item 5: lean device packages). Builds the packaged
all-MiniLM-L6-v2 (default) or EfficientNet-Lite0/2 for jetson, packages it and prints the package
and artifact sizes, and the size the same package would have with model.fp32.onnx added back
(what a TensorRT package shipped before it stopped carrying the FP32 ONNX): the same files,
re-archived by package/archive.py, plus the FP32 ONNX.
Run: python benchmarks/package_size.py [--model minilm|efficientnet-lite0|efficientnet-lite2]"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from real_models import efficientnet_lite2, minilm  # noqa: E402


def with_fp32(package: Path, fp32: Path, dest: Path) -> Path:
    """The package's own files plus `fp32`, archived the way edgeopt archives (archive.write_archive)."""
    from edgeopt.package.archive import write_archive

    with tarfile.open(package) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        root = members[0].name.split("/", 1)[0]
        entries = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in members}
    entries[fp32.name] = fp32
    write_archive(dest, root, entries, executable=frozenset({"run_on_device.sh", "run_on_device.py"}))
    return dest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="minilm", choices=["minilm", "efficientnet-lite0", "efficientnet-lite2"])
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp())
    env = dict(os.environ, EDGEOPT_CACHE=str(work / "cache"))
    edgeopt = [sys.executable, "-m", "edgeopt"]
    model_args = minilm(work) if args.model == "minilm" else efficientnet_lite2(work, variant=int(args.model[-1]))
    built = subprocess.run([*edgeopt, "build", *model_args, "--target", "jetson", "--out", str(work / "b"),
                            "--latency-seconds", "0.2"], env=env, stdout=subprocess.DEVNULL)
    if built.returncode not in (0, 1):  # 1: a gate failed; the build folder is written and packages alike
        sys.exit(f"edgeopt build failed (exit {built.returncode})")
    subprocess.run([*edgeopt, "package", str(work / "b"), "--out", str(work / "p")], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    package = next((work / "p").iterdir())
    before = with_fp32(package, work / "b" / "model.fp32.onnx", work / "with-fp32" / package.name)
    manifest = json.loads((work / "b" / "manifest.json").read_text())
    failed = [f"{g['name']} {g.get('value')} > {g.get('threshold')}" for g in manifest["gates"] if g.get("passed") is False]
    gates = "gates passed" if not failed else "gate failed: " + "; ".join(failed)
    print(f"{args.model} for jetson ({gates})\n| file | MB |\n|---|---|")
    rows = [(f"{package.name} (as packaged, no FP32 ONNX)", package), (f"{package.name} with model.fp32.onnx added", before),
            ("model.fp32.onnx", work / "b" / "model.fp32.onnx"), ("model.int8.onnx", work / "b" / "model.int8.onnx")]
    for label, path in rows:
        print(f"| {label} | {path.stat().st_size / 1e6:.1f} |")


if __name__ == "__main__":
    main()
