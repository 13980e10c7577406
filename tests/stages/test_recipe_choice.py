"""Recipe choice with statistics (issue 20 item 2): a continuous, label-free fidelity loss per
output kind, compared per sample between candidates with a paired bootstrap, so a slower recipe
wins only when it is more faithful beyond noise; selection stays on held-apart calibration rows
(and, on the real digits CNN, tests/stages/test_quantize.py's first test checks the scorer saw
only those rows and the result carries the margin)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.compare import fidelity_losses, paired_difference
from edgeopt.data.npz import read_npz
from edgeopt.models.spec import InputSpec
from edgeopt.stages.quantize import split_calibration
from edgeopt.stages.recipe_choice import NOISE, Candidate, choose

REPO = Path(__file__).resolve().parents[2]


def test_fidelity_losses_by_kind_have_known_values():
    logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    assert np.allclose(fidelity_losses("class_scores", logits, logits + 5.0), 0.0)  # softmax is shift-invariant
    p = np.exp(logits[0]) / np.exp(logits[0]).sum()
    q = np.array([1 / 3, 1 / 3, 1 / 3])
    kl = fidelity_losses("class_scores", logits, np.zeros_like(logits))
    assert kl[0] == pytest.approx(float((p * np.log(p / q)).sum())) and kl[1] == pytest.approx(0.0)
    probabilities = np.array([[0.7, 0.2, 0.1]])  # rows already summing to 1 are not softmaxed again
    assert fidelity_losses("class_scores", probabilities, np.array([[0.5, 0.3, 0.2]]))[0] == pytest.approx(
        0.7 * np.log(0.7 / 0.5) + 0.2 * np.log(0.2 / 0.3) + 0.1 * np.log(0.1 / 0.2))
    embedding = np.array([[1.0, 0.0], [3.0, 4.0]])
    assert np.allclose(fidelity_losses("embedding", embedding, np.array([[0.0, 1.0], [6.0, 8.0]])), [1.0, 0.0])
    boxes = np.array([[3.0, 4.0]])
    assert fidelity_losses("boxes", boxes, boxes * 1.1)[0] == pytest.approx(0.1)


def test_a_consistent_small_gain_is_beyond_noise_and_one_or_two_samples_are_not():
    rng = np.random.default_rng(0)
    base = rng.gamma(2.0, 0.01, 64)
    consistent = paired_difference(base * 0.9, base)  # 10 % less loss on every sample
    assert consistent["b_worse"] and not consistent["a_worse"] and consistent["ci95"][1] < 0
    lucky = base.copy()
    lucky[:2] *= 0.2  # far better on two samples, the same on the other 62
    noisy = base + rng.normal(0, 0.01, 64)
    for other in (lucky, noisy):
        verdict = paired_difference(other, base)
        assert not verdict["a_worse"] and not verdict["b_worse"], verdict  # within noise


def _candidate(mode: str, ms: float, losses: np.ndarray) -> Candidate:
    return Candidate(mode=mode, accuracy_drop=0.0, relative_l2=float(losses.mean()), latency_p50_ms=ms, bytes=1,
                     within_budget=True, fidelity=float(losses.mean()), losses=losses.tolist())


def test_a_slower_tie_wins_only_when_more_faithful_beyond_noise():
    rng = np.random.default_rng(1)
    base = rng.gamma(2.0, 0.01, 64)
    fast = _candidate("dynamic", 7.0, base)
    better = _candidate("dynamic-smooth0.8", 7.3, base * 0.6)  # within NOISE of the fastest, clearly more faithful
    slightly = _candidate("dynamic-unfused", 7.2, np.where(np.arange(64) < 2, base * 0.1, base))  # 2 samples' luck
    chosen, why, selection = choose([fast, better, slightly], encoder=True, measured=True)
    assert chosen.mode == "dynamic-smooth0.8" and selection.decided_by == "fidelity beyond noise"
    assert selection.runner_up == "dynamic" and selection.difference < 0 and selection.ci95[1] < 0
    assert "beyond noise" in why and "95% CI" in why and selection.samples == 64

    chosen, why, selection = choose([fast, slightly], encoder=True, measured=True)
    assert chosen.mode == "dynamic" and selection.decided_by.startswith("speed")  # point estimate lower, not beyond noise
    assert selection.ci95[0] < 0 < selection.ci95[1] or selection.ci95[0] <= 0 <= selection.ci95[1]

    fastest_best = _candidate("dynamic-smooth0.8", 6.9, base * 0.6)
    chosen, why, selection = choose([fast, fastest_best], encoder=True, measured=True)
    assert chosen.mode == "dynamic-smooth0.8" and selection.decided_by == "speed, and fidelity beyond noise"
    assert selection.ci95[1] < 0 and "more faithful beyond noise" in why

    far = _candidate("dynamic-smooth0.5", 7.0 * (1 + NOISE) * 1.05, base * 0.1)  # outside the speed window
    assert choose([fast, far], encoder=True, measured=True)[0].mode == "dynamic"
    # not timed here: the most faithful by the same loss, margin reported
    chosen, why, selection = choose([fast, better, slightly], encoder=True, measured=False)
    assert chosen.mode == "dynamic-smooth0.8" and selection.decided_by == "most faithful beyond noise"


def test_candidates_dump_without_their_per_sample_losses():
    candidate = _candidate("dynamic", 1.0, np.ones(3))
    assert "losses" not in candidate.model_dump() and candidate.fidelity == 1.0


def test_selection_rows_are_disjoint_from_range_rows_and_cover_the_calibration_set():
    image = [InputSpec(name="image", shape=(1, 1, 32, 32))]
    calib = read_npz(REPO / "calibration" / "digits_calib.npz", image)
    ranges, selection, roles = split_calibration(calib, 0.25)
    as_rows = lambda d: {row.tobytes() for row in d.inputs["image"]}
    assert not as_rows(ranges) & as_rows(selection)
    assert len(ranges) + len(selection) == len(calib) and as_rows(ranges) | as_rows(selection) == as_rows(calib)


@pytest.mark.parametrize("gain, kept", [(0.5, True), (1.0, False)])
def test_a_partial_float_set_is_kept_only_when_it_lowers_the_loss_beyond_noise(tmp_path, gain, kept):
    """Outside the budget, one sample less dropped is luck unless the fidelity loss falls too
    (EfficientNet-Lite1 once kept 8 float convs for one sample of 36)."""
    from edgeopt.stages.sensitivity import LayerRow, Score, _float_top

    base = np.random.default_rng(2).gamma(2.0, 0.01, 64)

    class Scorer:  # every trial: a lower drop than all-INT8, never within the budget
        def score(self, path):
            return Score(drop=0.3, relative_l2=0.0, how="stub", losses=(base * gain).tolist())

    def quantize(floated, out):
        out.write_text(str(len(floated)))
        return out

    table = [LayerRow(node=f"conv{i}", op_type="Conv", rank=i + 1) for i in range(4)]
    start = Score(drop=0.5, relative_l2=0.0, how="stub", losses=base.tolist())
    result, path = _float_top(quantize, table, Scorer(), start, 0.01, tmp_path, None, 0, True, "added-error")
    assert not result.met and (path is not None) == kept and bool(result.float_layers) == kept
