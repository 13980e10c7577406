"""The accuracy drop's 95% paired-bootstrap interval (issue 20): a drop of one or two samples is
within noise, a systematic one is not, and the gate says which."""

from __future__ import annotations

import numpy as np

from edgeopt.compare import compare, drop_interval
from edgeopt.metrics.fidelity import PrecisionMetrics, ValidateResult
from edgeopt.metrics.outputs import OutputMetrics
from edgeopt.report.gates import evaluate
from edgeopt.targets import Gates


def test_the_interval_holds_the_drop_and_narrows_with_more_samples():
    rng = np.random.default_rng(1)
    losses = (rng.random(400) < 0.03).astype(np.int8)  # 3 % of samples lost
    low, high = drop_interval(losses)
    assert low < losses.mean() < high and low > 0
    wide = drop_interval(losses[:100])
    assert wide[1] - wide[0] > high - low
    assert drop_interval(np.zeros(50)) == [0.0, 0.0]


def test_compare_gives_top1_outputs_an_interval_and_one_flip_is_within_noise_of_a_one_point_budget():
    labels = np.arange(200) % 4
    reference = np.eye(4, dtype=np.float32)[labels] + 0.01
    candidate = reference.copy()
    candidate[0] = np.roll(candidate[0], 1)  # one sample in 200 now wrong: a 0.5 point drop
    judged = compare({"logits": reference}, {"logits": candidate}, labels, {"logits": "class_scores"})
    assert judged["drop"] == 0.005 and judged["drop_ci95"][0] == 0.0 and judged["drop_ci95"][1] >= 0.01
    result = ValidateResult(samples=200, task="classification", fp32=PrecisionMetrics(), int8=PrecisionMetrics(),
                            outputs=[OutputMetrics(**row) for row in judged["outputs"]], drop=judged["drop"],
                            drop_ci95=judged["drop_ci95"], drop_how="top-1")
    gate = evaluate(result, Gates(max_accuracy_drop=0.01))[0]
    assert gate.passed and gate.interval == judged["drop_ci95"] and gate.within_noise
    far = evaluate(result, Gates(max_accuracy_drop=0.2))[0]
    assert far.passed and far.within_noise is False
