"""Fidelity and speed of a causal LM, as deployed (batch 1): perplexity over windows that each start
from an empty cache, KL divergence of the next-token distributions to FP32's, greedy-continuation
agreement (share of N greedy tokens equal to FP32's, per prompt, position by position), time to
first token, decode tokens/s and per-token latency percentiles. Dependency-light: numpy only; the
runners (backends/onnxruntime/genai.py) produce logits and timings, this module judges them.
"""

from __future__ import annotations

import numpy as np

from edgeopt import timing


def windows(ids: list[int], size: int, count: int) -> list[list[int]]:
    """Up to `count` non-overlapping windows of `size` tokens."""
    return [ids[i:i + size] for i in range(0, len(ids) - size + 1, size)][:count]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def score_windows(score, reference_logits: list[np.ndarray] | None, chunks: list[list[int]]) -> dict:
    """score(ids) -> logits (len, vocab). Returns perplexity and, with reference logits, mean KL(ref || candidate)."""
    nll, count, kls, logits_out = 0.0, 0, [], []
    for index, chunk in enumerate(chunks):
        logp = _log_softmax(score(chunk).astype(np.float64))
        logits_out.append(logp)
        targets = np.array(chunk[1:])
        nll -= float(logp[np.arange(len(targets)), targets].sum())
        count += len(targets)
        if reference_logits is not None:
            ref = reference_logits[index]
            kls.append(float((np.exp(ref) * (ref - logp)).sum(-1).mean()))
    return {"perplexity": float(np.exp(nll / max(count, 1))), "tokens": count,
            "kl_mean": float(np.mean(kls)) if kls else None, "log_probs": logits_out}


def agreement(candidate: list[list[int]], reference: list[list[int]]) -> float:
    """Share of greedy tokens equal to the reference's, position by position."""
    equal = sum(sum(a == b for a, b in zip(c, r)) for c, r in zip(candidate, reference))
    total = sum(len(r) for r in reference)
    return equal / total if total else 0.0


def speed(first_token_s: list[float], per_token_s: list[float]) -> dict:
    """TTFT median, decode tokens/s (median over steps after the first), per-token percentiles (ms),
    by the one rule every edgeopt latency uses (timing.py: trtexec's, not numpy's interpolation)."""
    steps = sorted(float(t) * 1000 for t in per_token_s)
    return {"ttft_ms": timing.median(sorted(float(t) * 1000 for t in first_token_s)) if first_token_s else None,
            "decode_tokens_per_s": 1000 / timing.median(steps) if steps else None,
            "token_latency_ms": {"p50": timing.median(steps), "p90": timing.percentile(steps, 90),
                                 "p99": timing.percentile(steps, 99)} if steps else None}


def normalize_answer(text: str) -> str:
    """The answer part of a generation, compared as SQuAD-style exact match does after its own
    normalisation: the first non-empty line, case-folded, whitespace collapsed, trailing
    punctuation and surrounding quotes dropped (a model continues after its answer; the first line
    is what a task prompt asks for)."""
    lines = [line for line in text.strip().splitlines() if line.strip()]
    first = " ".join(lines[0].split()).casefold() if lines else ""
    return first.strip("\"'`").rstrip(".!?,;:").strip()


def exact_match(predictions: list[str], answers: list[str]) -> float:
    """Share of predictions whose normalized answer equals the normalized reference answer."""
    if not answers:
        return 0.0
    return sum(normalize_answer(p) == normalize_answer(a) for p, a in zip(predictions, answers)) / len(answers)


def task_scores(fp32_predictions: list[str], predictions: list[str], answers: list[str], prompts: list[str],
                user_metric=None, metric_name: str | None = None) -> dict:
    """The task metric of FP32 and of the deployed model, and its drop: exact match, or the user's
    `--metric` function(predictions, answers, prompts) -> float, higher is better."""
    if user_metric is None:
        ref, cand, name = exact_match(fp32_predictions, answers), exact_match(predictions, answers), "exact_match"
    else:
        ref, cand, name = user_metric(fp32_predictions, answers, prompts), user_metric(predictions, answers, prompts), metric_name
    return {"metric": name, "tasks": len(answers), "fp32": ref, "value": cand, "drop": ref - cand,
            "examples": [{"prompt": p, "answer": a, "fp32": f, "deployed": d}
                         for p, a, f, d in list(zip(prompts, answers, fp32_predictions, predictions))[:3]]}
