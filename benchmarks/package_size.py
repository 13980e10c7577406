"""Size of the MiniLM jetson package (issue 21, item 5: lean device packages). Builds the
packaged all-MiniLM-L6-v2 for jetson, packages it and prints the package and artifact sizes.
Run: python benchmarks/package_size.py"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from real_models import minilm  # noqa: E402


def main() -> None:
    work = Path(tempfile.mkdtemp())
    env = dict(os.environ, EDGEOPT_CACHE=str(work / "cache"))
    edgeopt = [sys.executable, "-m", "edgeopt"]
    subprocess.run([*edgeopt, "build", *minilm(work), "--target", "jetson", "--out", str(work / "b"),
                    "--latency-seconds", "0.2"], check=True, env=env, stdout=subprocess.DEVNULL)
    subprocess.run([*edgeopt, "package", str(work / "b"), "--out", str(work / "p")], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    print("| file | MB |\n|---|---|")
    for path in [*sorted((work / "p").iterdir()), work / "b" / "model.fp32.onnx", work / "b" / "model.int8.onnx"]:
        print(f"| {path.name} | {path.stat().st_size / 1e6:.1f} |")


if __name__ == "__main__":
    main()
