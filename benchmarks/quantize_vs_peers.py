"""edgeopt's INT8 against peer INT8 tools on this CPU, in one run, with one thread count.

    python benchmarks/quantize_vs_peers.py [--threads 2] [--seconds 4] [--modelopt-python /work/venv-modelopt/bin/python]

Models (all SYNTHETIC, made for this benchmark; benchmarks/real_models.py has the real pretrained
ones): the bundled digits CNN (as `edgeopt build` exports it), a MobileNetV2-style
depthwise-separable CNN and a BERT-style encoder with random weights (benchmarks/models/build_models.py). Methods:
edgeopt's quantize stage for the host CPU profile; ONNX Runtime quantize_static with its
defaults; ONNX Runtime quantize_dynamic with its defaults; NVIDIA Model Optimizer's ONNX INT8
PTQ (`python -m modelopt.onnx.quantization`, run from its own virtual environment because it
pins an older onnx and onnxruntime-gpu). Every model of one row block is timed interleaved in
the same process (edgeopt.bench), batch 1, so speedups are ratios from the same minutes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "models"))

from edgeopt import bench, targets
from edgeopt.backends.onnxruntime import session as runtime  # noqa: E402
from edgeopt.data.dataset import Dataset  # noqa: E402
from edgeopt.stages.quantize import QuantizeConfig, quantize  # noqa: E402
from edgeopt.metrics.fidelity import compare_outputs  # noqa: E402


def _dataset(path: Path) -> Dataset:
    with np.load(path) as archive:
        arrays = {k: archive[k] for k in archive.files}
    labels = arrays.pop("labels", None)
    return Dataset(arrays, labels, path)


def models(work: Path, only: str | None) -> list[tuple[str, str, Path, Dataset, Dataset]]:
    """(name, task, FP32 ONNX, calibration, evaluation) for the benchmark models (`only`: a name part)."""
    import build_models
    from edgeopt.api import BuildOptions, build

    wanted = lambda name: not only or only.lower() in name.lower()  # noqa: E731
    found = []
    if wanted("digits CNN (bundled)"):
        digits = build(options=BuildOptions(out=work / "digits-build", latency_seconds=0.1, use_cache=False)).to_json()
        root = build_models.ROOT / "calibration"
        found.append(("digits CNN (bundled)", "classification", Path(digits["artifacts"]["onnx_fp32"]),
                      _dataset(root / "digits_calib.npz"), _dataset(root / "digits_eval.npz")))
    for name, task, folder, make in (("synthetic: MobileNetV2-style DW CNN", "classification", "dwcnn", build_models.build_dwcnn),
                                     ("synthetic: BERT-style encoder, random weights", "embedding", "encoder",
                                      build_models.build_encoder)):
        if wanted(name):
            make(work)
            found.append((name, task, work / folder / "model.fp32.onnx", _dataset(work / folder / "calib.npz"),
                          _dataset(work / folder / "eval.npz")))
    return found


class _Reader:
    def __init__(self, data: Dataset):
        self.rows, self.data = iter(range(len(data))), data

    def get_next(self):
        row = next(self.rows, None)
        return None if row is None else self.data.batch(row, row + 1)


def peers(fp32: Path, calib: Dataset, out: Path, modelopt_python: str | None) -> dict[str, tuple[Path | None, float, str]]:
    """{method: (INT8 model or None, seconds, note)} for the peer tools, each with its defaults."""
    from onnxruntime.quantization import quantize_dynamic, quantize_static

    results = {}
    runs = {
        "ORT quantize_static (defaults)": lambda path: quantize_static(str(fp32), str(path), _Reader(calib)),
        "ORT quantize_dynamic (defaults)": lambda path: quantize_dynamic(str(fp32), str(path)),
    }
    for method, run in runs.items():
        path = out / (method.split()[1] + ".onnx")
        started = time.perf_counter()
        try:
            run(path)
            results[method] = (path, time.perf_counter() - started, "")
        except Exception as exc:  # a peer failing is a result too
            results[method] = (None, time.perf_counter() - started, f"failed: {type(exc).__name__}: {str(exc)[:120]}")
    method = "ModelOpt ONNX INT8 (defaults)"
    if not modelopt_python or not Path(modelopt_python).exists():
        results[method] = (None, 0.0, f"not run: {modelopt_python} not found (pip install 'nvidia-modelopt[onnx]' in its own venv)")
        return results
    np.savez(out / "modelopt_calib.npz", **calib.inputs)
    path = out / "modelopt.onnx"
    command = [modelopt_python, "-m", "modelopt.onnx.quantization", "--onnx_path", str(fp32), "--quantize_mode", "int8",
               "--calibration_data_path", str(out / "modelopt_calib.npz"), "--calibration_eps", "cpu",
               "--output_path", str(path)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or not path.exists():
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:160]
        results[method] = (None, seconds, f"failed (exit {done.returncode}): {last}")
    else:
        results[method] = (path, seconds, "")
    return results


def fidelity(fp32: Path, int8: Path, data: Dataset, task: str, threads: int) -> str:
    reference = runtime.run_all(runtime.session(fp32, threads=threads), data)[0]
    fp32_metrics, metrics = compare_outputs(reference, runtime.run_all(runtime.session(int8, threads=threads), data)[0],
                                            data.labels, task)
    if task == "classification":
        return f"top-1 {metrics.accuracy * 100:.1f}% (FP32 {fp32_metrics.accuracy * 100:.1f}%), agree {metrics.agreement * 100:.1f}%"
    return f"cosine mean {metrics.cosine_mean:.4f} min {metrics.cosine_min:.4f}"


def bench_model(name: str, task: str, fp32: Path, calib: Dataset, evaluation: Dataset, args, work: Path) -> list[str]:
    out = Path(tempfile.mkdtemp(dir=work, prefix="q-"))
    started = time.perf_counter()
    result = quantize(fp32, calib, targets.resolve("cpu"), out / "edgeopt",
                      config=QuantizeConfig(task=task, threads=args.threads))
    methods = {f"edgeopt ({result.mode})": (out / "edgeopt" / "model.int8.onnx", time.perf_counter() - started,
                                            f"calibration {result.calibration_seconds:.1f} s")}
    methods.update(peers(fp32, calib, out, args.modelopt_python))
    runnable = {key: value[0] for key, value in methods.items() if value[0] is not None}
    latency = bench.measure_onnx({"FP32": fp32, **runnable}, evaluation, args.threads, duration_s=args.seconds)
    base = latency["FP32"]
    rows = [f"| {name} | FP32 | {base.p50:.3f} | 1.00x | 1.00x | {fidelity(fp32, fp32, evaluation, task, args.threads)} "
            f"| {fp32.stat().st_size / 1e6:.2f} | - | |"]
    for method, (path, seconds, note) in methods.items():
        if path is None:
            rows.append(f"| {name} | {method} | - | - | - | - | - | {seconds:.1f} | {note} |")
            continue
        try:
            quality = fidelity(fp32, path, evaluation, task, args.threads)
        except Exception as exc:
            quality = f"does not run: {type(exc).__name__}"
        timed = latency[method]
        rows.append(f"| {name} | {method} | {timed.p50:.3f} | {base.p50 / timed.p50:.2f}x | {base.p10 / timed.p10:.2f}x | {quality} "
                    f"| {path.stat().st_size / 1e6:.2f} | {seconds:.1f} | {note} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per model block")
    parser.add_argument("--modelopt-python", default="/work/venv-modelopt/bin/python")
    parser.add_argument("--only", help="substring of a model name to run alone")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgeopt-bench-models")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    header = ["| model | method | p50 ms | speedup p50 | speedup p10 | accuracy / fidelity (eval) | MB | quantize s | note |",
              "|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for name, task, fp32, calib, evaluation in models(args.work, args.only):
        rows += bench_model(name, task, fp32, calib.subset(256), evaluation, args, args.work)
        print(rows[-1], file=sys.stderr, flush=True)
    print(f"threads {args.threads}, batch 1, {args.seconds:.0f} s timed per model block, ONNX Runtime CPU EP")
    print("\n".join(header + rows))


if __name__ == "__main__":
    main()
