"""metrics/language.py on logits whose answers are known: perplexity, KL, agreement, and per-token
latency by timing.py's rule (the one every edgeopt latency uses)."""

from __future__ import annotations

import numpy as np
import pytest

from edgeopt import timing
from edgeopt.metrics.language import agreement, score_windows, speed, windows


def test_uniform_logits_have_the_vocabulary_as_perplexity_and_no_kl_to_themselves():
    vocab = 50
    chunks = windows(list(range(40)), 10, 3)
    assert chunks == [list(range(0, 10)), list(range(10, 20)), list(range(20, 30))]
    uniform = score_windows(lambda ids: np.zeros((len(ids), vocab)), None, chunks)
    assert uniform["perplexity"] == pytest.approx(vocab) and uniform["tokens"] == 27 and uniform["kl_mean"] is None
    again = score_windows(lambda ids: np.zeros((len(ids), vocab)), uniform["log_probs"], chunks)
    assert again["kl_mean"] == pytest.approx(0.0, abs=1e-12)


def test_a_model_sure_of_the_next_token_scores_near_one_and_diverges_from_uniform():
    vocab, chunks = 20, [[1, 2, 3, 4, 5, 6]]

    def sure(ids):  # row i predicts ids[i + 1] with logit 20
        logits = np.zeros((len(ids), vocab))
        logits[np.arange(len(ids) - 1), ids[1:]] = 20.0
        return logits

    uniform = score_windows(lambda ids: np.zeros((len(ids), vocab)), None, chunks)
    scored = score_windows(sure, uniform["log_probs"], chunks)
    assert scored["perplexity"] < 1.001 and scored["kl_mean"] > 1.0


def test_agreement_counts_positions_and_speed_uses_trtexecs_percentile_rule():
    assert agreement([[1, 2, 3], [4, 5]], [[1, 9, 3], [4, 5]]) == 0.8
    per_token = [0.001 * k for k in range(1, 11)]  # 1..10 ms
    result = speed([0.2, 0.1, 0.3], per_token)
    steps = sorted(t * 1000 for t in per_token)
    assert result["ttft_ms"] == pytest.approx(200.0)
    assert result["token_latency_ms"]["p90"] == timing.percentile(steps, 90) == pytest.approx(9.0)  # numpy: 9.1
    assert result["decode_tokens_per_s"] == pytest.approx(1000 / 5.5)
