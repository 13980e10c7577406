"""Fidelity and speed of a causal LM, as deployed (batch 1): perplexity over windows that each start
from an empty cache, KL divergence of the next-token distributions to FP32's, greedy-continuation
agreement (share of N greedy tokens equal to FP32's, per prompt, position by position), time to
first token, decode tokens/s and per-token latency percentiles. Dependency-light: numpy only; the
runners (backends/onnxruntime/genai.py) produce logits and timings, this module judges them.
"""

from __future__ import annotations

import numpy as np


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
    """TTFT median, decode tokens/s (median over steps after the first), per-token percentiles (ms)."""
    steps = np.array(per_token_s) * 1000
    return {"ttft_ms": float(np.median(first_token_s) * 1000) if first_token_s else None,
            "decode_tokens_per_s": float(1000 / np.median(steps)) if len(steps) else None,
            "token_latency_ms": {p: float(np.percentile(steps, q)) for p, q in (("p50", 50), ("p90", 90), ("p99", 99))}
            if len(steps) else None}
