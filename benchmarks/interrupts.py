"""Random interrupts against real builds (issue 15): after each, the build folder holds the
complete previous build or a complete new one, never a partial artifact; after the next run,
no junk folder or temporary file is left anywhere edgeopt writes (the build folder's parent,
the stage cache, the temp directory).

    python benchmarks/interrupts.py --runs 20 --seed 0

Each run is `edgeopt build net.py:make ... --no-cache` (a small conv net, so every stage runs)
interrupted after a random delay between 0.2 s and the measured build time, with SIGINT (Ctrl-C),
SIGTERM or SIGKILL. Prints one row per interrupt and a verdict; exits 1 if anything was partial or
left behind.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FACTORY = '''import torch
class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.c = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.f = torch.nn.Linear(4 * 32 * 32, 10)
    def forward(self, x):
        return self.f(torch.relu(self.c(x)).flatten(1))
def make():
    return Net()
'''
SIGNALS = {"SIGINT": signal.SIGINT, "SIGTERM": signal.SIGTERM, "SIGKILL": signal.SIGKILL}


def _command(work: Path) -> list[str]:
    return [sys.executable, "-m", "edgeopt", "build", "net.py:make", "--calib",
            str(REPO / "calibration" / "digits_calib.npz"), "--input-shape", "image=1x1x32x32",
            "--out", str(work / "out"), "--latency-seconds", "0.1", "--no-cache"]


def _env(work: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "toolchain"), "EDGEOPT_CACHE": str(work / "cache"),
            "TMPDIR": str(work / "tmp"), "CI": "true"}


def build_state(out: Path) -> str:
    """'absent', 'complete' (every manifest entry exists with its hash, nothing unlisted but the
    manifest) or 'PARTIAL: why'."""
    if not out.exists():
        return "absent"
    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        return "PARTIAL: no manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for entry in manifest["artifacts"]:
        path = out / entry["path"]
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != entry["sha256"]:
            return f"PARTIAL: {entry['path']} missing or changed"
    temporary = [p.name for p in out.rglob("*") if p.name.endswith(".tmp")]
    return f"PARTIAL: {temporary}" if temporary else "complete"


def junk(work: Path) -> list[str]:
    """What a finished run must not leave: staging folders, cache work folders, temp files."""
    found = [p.name for p in work.iterdir() if ".partial-" in p.name or ".old-" in p.name or p.suffix == ".tmp"]
    cache = work / "cache"
    found += [f"cache/{p.name}" for p in cache.iterdir() if p.name.startswith(".work-")] if cache.is_dir() else []
    # torch's own compile cache (torchinductor_<user>) is reused across runs: not a leftover.
    found += [f"tmp/{p.name}" for p in (work / "tmp").iterdir() if not p.name.startswith("torchinductor_")]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="edgeopt-interrupts-"))
    (work / "tmp").mkdir()
    (work / "net.py").write_text(FACTORY)
    started = time.perf_counter()
    first = subprocess.run(_command(work), cwd=work, env=_env(work), capture_output=True, text=True)
    build_seconds = time.perf_counter() - started
    if first.returncode != 0:
        print(first.stderr, file=sys.stderr)
        return 1
    print(f"clean build: {build_seconds:.1f} s; {args.runs} interrupts, seed {args.seed}, folder {work}\n")
    print("| # | signal | after s | exit | stderr | build folder after | left behind (before the next run cleans) |")
    print("|---|---|---|---|---|---|---|")
    partial = 0
    for run in range(1, args.runs + 1):
        name = rng.choice(sorted(SIGNALS))
        delay = rng.uniform(0.2, build_seconds)
        process = subprocess.Popen(_command(work), cwd=work, env=_env(work), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        process.send_signal(SIGNALS[name])
        _, stderr = process.communicate(timeout=600)
        state = build_state(work / "out")
        partial += state.startswith("PARTIAL")
        lines = [line for line in stderr.splitlines() if line.strip()]
        shown = lines[-1][:60] if len(lines) == 1 else f"{len(lines)} lines" if lines else ""
        print(f"| {run} | {name} | {delay:.1f} | {process.returncode} | {shown} | {state} | {len(junk(work))} |")
    final = subprocess.run(_command(work), cwd=work, env=_env(work), capture_output=True, text=True)
    left = junk(work)
    print(f"\nafter one more complete build (exit {final.returncode}): build folder {build_state(work / 'out')}, "
          f"partial artifacts seen {partial}, junk left {len(left)} {left if left else ''}")
    return 0 if final.returncode == 0 and partial == 0 and not left else 1


if __name__ == "__main__":
    sys.exit(main())
