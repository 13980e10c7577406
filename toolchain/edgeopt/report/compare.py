"""Baseline vs current: latency as a ratio with a bootstrap confidence interval, accuracy as a
difference, one verdict per metric (improved / unchanged / regressed) against tolerances.

A latency regression needs two things: the median ratio (current / baseline) above 1 + tolerance,
and the confidence interval's lower end above 1 (the slowdown is not noise). On a shared machine
the ratio is best taken block by block from interleaved runs (`block_ratios`); for two stored
runs the ratio of medians is bootstrapped from the raw samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SCHEMA_VERSION = 1
IMPROVED, UNCHANGED, REGRESSED = "improved", "unchanged", "regressed"


def block_ratios(blocks_a: list[list[float]], blocks_b: list[list[float]]) -> np.ndarray:
    """Median of B over median of A for each pair of interleaved blocks."""
    return np.array([np.median(b) / np.median(a) for a, b in zip(blocks_a, blocks_b)])


def _bootstrap(values: np.ndarray, stat, n_boot: int, confidence: float, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    draws = stat(values[rng.integers(0, len(values), size=(n_boot, len(values)))])
    alpha = (1 - confidence) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


def paired_ratio(ratios: np.ndarray, n_boot: int = 4000, confidence: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Median of per-block ratios with a percentile-bootstrap CI."""
    low, high = _bootstrap(np.asarray(ratios, dtype=float), lambda m: np.median(m, axis=1), n_boot, confidence, seed)
    return {"ratio": float(np.median(ratios)), "ci_low": low, "ci_high": high, "method": "bootstrap, median of block ratios"}


def sample_ratio(baseline: list[float], current: list[float], n_boot: int = 4000, confidence: float = 0.95,
                 seed: int = 0) -> dict[str, float]:
    """median(current) / median(baseline) with a bootstrap CI (each sample set resampled on its own)."""
    a, b = np.asarray(baseline, dtype=float), np.asarray(current, dtype=float)
    rng = np.random.default_rng(seed)
    ma = np.median(a[rng.integers(0, len(a), size=(n_boot, len(a)))], axis=1)
    mb = np.median(b[rng.integers(0, len(b), size=(n_boot, len(b)))], axis=1)
    draws = mb / ma
    alpha = (1 - confidence) / 2
    return {"ratio": float(np.median(b) / np.median(a)), "ci_low": float(np.quantile(draws, alpha)),
            "ci_high": float(np.quantile(draws, 1 - alpha)), "method": "bootstrap, ratio of medians"}


def latency_verdict(ratio: float, ci_low: float | None, ci_high: float | None, tolerance: float) -> str:
    """Slower beyond tolerance and beyond noise: regressed; faster likewise: improved."""
    if ratio > 1 + tolerance and (ci_low is None or ci_low > 1):
        return REGRESSED
    if ratio < 1 - tolerance and (ci_high is None or ci_high < 1):
        return IMPROVED
    return UNCHANGED


def accuracy_verdict(delta: float, tolerance: float) -> str:
    """`delta` = current - baseline, higher is better (accuracy, agreement, cosine)."""
    if delta < -tolerance:
        return REGRESSED
    if delta > tolerance:
        return IMPROVED
    return UNCHANGED


ENV_KEYS = {"cpu_model": "another CPU", "cpu_flags": "other CPU flags", "threads": "another thread count",
            "machine": "another architecture", "onnxruntime": "another ONNX Runtime version",
            "tensorrt": "another TensorRT version", "gpu": "another GPU"}


def environment_warnings(baseline: dict, current: dict) -> list[str]:
    """Differences that make a latency comparison unsafe, worded for the top of a report."""
    out = []
    for key, why in ENV_KEYS.items():
        a, b = baseline.get(key), current.get(key)
        if a != b:
            shown = (f"{len(set(a or []) ^ set(b or []))} flags differ" if key == "cpu_flags" else f"{a} -> {b}")
            out.append(f"{why}: {shown}")
    busy = [f"{name} {env['load_1m']:g} on {env['cores']} cores" for name, env in (("baseline", baseline), ("current", current))
            if env.get("load_1m") is not None and env.get("cores") and env["load_1m"] > env["cores"]]
    if busy:  # bootstrap CIs hold within a run; a busier host shifts a whole run
        out.append(f"the host was busy (1-minute load: {'; '.join(busy)}): a latency change may be load, not the change")
    return out


LATENCY_TOLERANCE = 0.05  # slowdown a baseline comparison allows (fraction): the one default
ACCURACY_TOLERANCE = 0.005  # accuracy loss it allows (fraction)


def compare(baseline: dict, current: dict, *, latency_tolerance: float = LATENCY_TOLERANCE,
            accuracy_tolerance: float = ACCURACY_TOLERANCE) -> dict[str, Any]:
    """One comparison of two baseline documents (report.baseline.document)."""
    rows = []
    for precision in ("fp32", "int8"):
        a_samples = (baseline.get("samples_ms") or {}).get(precision)
        b_samples = (current.get("samples_ms") or {}).get(precision)
        a_lat = baseline["metrics"][precision].get("latency_ms")
        b_lat = current["metrics"][precision].get("latency_ms")
        name = f"latency_p50_{precision}"
        if a_samples and b_samples:
            stats = sample_ratio(a_samples, b_samples)
        elif a_lat and b_lat:
            stats = {"ratio": b_lat["p50"] / a_lat["p50"], "ci_low": None, "ci_high": None,
                     "method": "ratio of p50 (no raw samples)"}
        else:
            rows.append({"metric": name, "kind": "latency", "baseline": a_lat and a_lat["p50"],
                         "current": b_lat and b_lat["p50"], "verdict": "not judged",
                         "reason": "latency not measured in " + ("baseline" if not a_lat else "current")})
            continue
        rows.append({"metric": name, "kind": "latency", "baseline": a_lat["p50"] if a_lat else None,
                     "current": b_lat["p50"] if b_lat else None, **stats,
                     "verdict": latency_verdict(stats["ratio"], stats["ci_low"], stats["ci_high"], latency_tolerance)})
        if stats["ci_low"] is None:  # two p50s of a shared machine without a CI: noise can't be told apart
            rows[-1].update(verdict="not judged", reason="no raw latency samples, so no confidence interval")
        if a_samples and b_samples:
            rows[-1]["samples"] = {"baseline": a_samples, "current": b_samples}
    for precision in ("fp32", "int8"):
        for key in ("accuracy", "agreement", "cosine_mean"):
            a = baseline["metrics"][precision].get(key)
            b = current["metrics"][precision].get(key)
            if a is None and b is None:
                continue
            row = {"metric": f"{key}_{precision}", "kind": "accuracy", "baseline": a, "current": b}
            if a is None or b is None:
                row.update(verdict="not judged", reason=f"{key} missing in " + ("baseline" if a is None else "current"))
            else:
                row.update(delta=b - a, verdict=accuracy_verdict(b - a, accuracy_tolerance))
            rows.append(row)
    rows += llm_rows(baseline.get("llm"), current.get("llm"), latency_tolerance, accuracy_tolerance)
    verdicts = [r["verdict"] for r in rows]
    overall = REGRESSED if REGRESSED in verdicts else IMPROVED if IMPROVED in verdicts else UNCHANGED
    return {"name": f"{current['model']} -> {current['target']}", "model": current["model"], "target": current["target"],
            "verdict": overall, "rows": rows,
            "environment_warnings": environment_warnings(baseline.get("environment", {}), current.get("environment", {})),
            "tolerances": {"latency": latency_tolerance, "accuracy": accuracy_tolerance},
            "sensitivity": ((current.get("quantization") or {}).get("fallback") or {}).get("layers")}


# --- decoder-only LLMs (issue 18): decode speed and TTFT as latency, perplexity and agreement as accuracy ---

LLM_KEYS = ("perplexity_fp32", "perplexity", "perplexity_increase", "kl_mean", "agreement", "ttft_ms",
            "decode_tokens_per_s", "token_latency_ms", "model_mb", "precision", "threads", "ttft_samples_ms",
            "token_samples_ms")


def llm_part(llm: dict | None) -> dict | None:
    """What a baseline keeps of a build's `metrics.llm` (raw per-token times included)."""
    return {k: llm.get(k) for k in LLM_KEYS} if llm else None


def _speed_row(metric: str, a: dict, b: dict, samples: str, value: str, tolerance: float) -> dict:
    row = {"metric": metric, "kind": "latency", "baseline": a.get(value), "current": b.get(value)}
    if not (a.get(samples) and b.get(samples)):
        return {**row, "verdict": "not judged", "reason": f"no raw {samples} in " + ("baseline" if not a.get(samples) else "current")}
    stats = sample_ratio(a[samples], b[samples])  # current / baseline time: above 1 is slower (fewer tokens/s)
    return {**row, **stats, "method": stats["method"] + " of per-token times (tokens/s is the inverse)",
            "verdict": latency_verdict(stats["ratio"], stats["ci_low"], stats["ci_high"], tolerance)}


def llm_rows(baseline: dict | None, current: dict | None, latency_tolerance: float, accuracy_tolerance: float) -> list[dict]:
    """Verdicts on decode tokens/s and TTFT (ratio of raw times with a bootstrap CI, as latency),
    on perplexity (relative change, higher is worse) and greedy agreement (difference, as accuracy)."""
    if not baseline and not current:
        return []
    if not baseline or not current:
        return [{"metric": "llm", "kind": "accuracy", "baseline": None, "current": None, "verdict": "not judged",
                 "reason": "LLM metrics missing in " + ("baseline" if not baseline else "current")}]
    rows = [_speed_row("decode_tokens_per_s", baseline, current, "token_samples_ms", "decode_tokens_per_s", latency_tolerance),
            _speed_row("ttft_ms", baseline, current, "ttft_samples_ms", "ttft_ms", latency_tolerance)]
    a, b = baseline.get("perplexity"), current.get("perplexity")
    if a and b:
        change = b / a - 1
        rows.append({"metric": "perplexity", "kind": "accuracy", "baseline": a, "current": b, "delta": change,
                     "verdict": accuracy_verdict(-change, accuracy_tolerance)})
    a, b = baseline.get("agreement"), current.get("agreement")
    if a is not None and b is not None:
        rows.append({"metric": "greedy_agreement", "kind": "accuracy", "baseline": a, "current": b, "delta": b - a,
                     "verdict": accuracy_verdict(b - a, accuracy_tolerance)})
    return rows


def report(comparisons: list[dict]) -> dict[str, Any]:
    """Many builds in one report: one verdict each, and one overall."""
    verdicts = [c["verdict"] for c in comparisons]
    return {"schema_version": SCHEMA_VERSION, "verdict": REGRESSED if REGRESSED in verdicts else
            IMPROVED if IMPROVED in verdicts else UNCHANGED, "comparisons": comparisons}
