"""The prune stage on the bundled digits model: channels physically removed, rounding to the
target's multiple, head and ignored layers, 2:4 masks, recovery by distillation, and the build."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeopt import targets
from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.data.npz import read_npz
from edgeopt.errors import BadInput
from edgeopt.models import torch_loader
from edgeopt.models.source import resolve_source
from edgeopt.stages.export import export_onnx
from edgeopt.build_dir import LAYOUT
from edgeopt.stages.prune import PruneConfig, parse_prune
from edgeopt.stages.prune_torch import apply_2_4, mask_2_4, prune, sparsity_2_4_ok

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import CALIB, EVAL, FAST, build_json, run_cli  # noqa: E402

CONVS = ["features.0", "features.3", "features.7", "features.10", "features.14"]


@pytest.fixture(scope="module")
def digits():
    source = resolve_source(None)
    spec = torch_loader.model_spec(source)
    model = torch_loader.load_module(source)
    return model, spec, read_npz(CALIB, spec.inputs), read_npz(EVAL, spec.inputs)


def _run(model, spec, config, folder, calib, evaluation, finetune=None):
    return prune(model, spec, config, folder, eval_data=evaluation, importance_data=calib, finetune_data=finetune)


@pytest.mark.parametrize("multiple", [8, 16])
def test_half_the_channels_are_physically_removed(digits, tmp_path, multiple):
    model, spec, calib, evaluation = digits
    original = {k: v.clone() for k, v in model.state_dict().items()}
    # shapes are the point here, not accuracy: a sample of the data measures before/after quicker
    result = _run(model, spec, PruneConfig(mode="channels", ratio=0.5, channel_multiple=multiple), tmp_path,
                  calib.subset(32), evaluation.subset(64))
    pruned = torch.export.load(str(tmp_path / LAYOUT.pruned_model))
    shapes = {k: tuple(v.shape) for k, v in pruned.state_dict.items()}
    params = sum(int(np.prod(shapes[f"{layer}.weight"])) for layer in CONVS + ["classifier.1", "classifier.3"])
    assert params <= 0.6 * sum(original[f"{layer}.weight"].numel() for layer in CONVS + ["classifier.1", "classifier.3"])
    assert result.after.params <= 0.6 * result.before.params and result.after.macs < 0.5 * result.before.macs
    for layer in CONVS + ["classifier.1"]:
        assert shapes[f"{layer}.weight"][0] % multiple == 0, (layer, shapes[f"{layer}.weight"])
    assert shapes["classifier.3.weight"][0] == 10 and result.head == "classifier.3"
    assert all(torch.equal(original[k], v) for k, v in model.state_dict().items()), "the input model was changed"


@pytest.mark.slow
def test_ignored_layer_is_untouched_and_the_pruned_model_exports(digits, tmp_path):
    model, spec, calib, evaluation = digits
    config = PruneConfig(mode="channels", ratio=0.5, ignore=("features.3",))
    result = _run(model, spec, config, tmp_path, calib, evaluation)
    pruned = torch.export.load(str(tmp_path / LAYOUT.pruned_model)).module()
    weights = dict(pruned.named_parameters())
    assert torch.equal(weights["features.3.weight"], model.features[3].weight)
    assert result.protected == ["features.0"] and result.layers["features.7"][0] == 32
    onnx_path = tmp_path / "pruned.onnx"
    export_onnx(pruned, spec, onnx_path, evaluation)
    logits = runtime.run_all(runtime.session(onnx_path, threads=2), evaluation)[0]
    assert logits.shape == (len(evaluation), 10)
    assert (logits.argmax(1) == evaluation.labels).mean() == pytest.approx(result.after.accuracy, abs=0.005)


def test_unknown_ignore_name_is_bad_input(digits, tmp_path):
    model, spec, calib, evaluation = digits
    with pytest.raises(BadInput, match="--prune-ignore features.99"):
        _run(model, spec, PruneConfig(mode="channels", ratio=0.5, ignore=("features.99",)), tmp_path, calib, evaluation)


def test_2_4_masks_keep_exactly_two_of_every_four():
    torch.manual_seed(0)
    for weight in (torch.randn(16, 32, 3, 3), torch.randn(8, 64)):
        mask = mask_2_4(weight)
        groups = mask.movedim(1, -1).reshape(-1, 4)
        assert torch.equal(groups.sum(dim=1), torch.full((len(groups),), 2.0))
        kept = (weight * mask).movedim(1, -1).reshape(-1, 4).abs()
        dropped = (weight * (1 - mask)).movedim(1, -1).reshape(-1, 4).abs()
        assert (kept.max(dim=1).values >= dropped.max(dim=1).values).all()  # the largest two survive


def test_2_4_on_the_model_skips_ineligible_layers(digits):
    import copy

    model = copy.deepcopy(digits[0])
    masks = apply_2_4(model, skip={"classifier.3"})
    assert sorted(masks) == sorted(f"{n}.weight" for n in CONVS[1:] + ["classifier.1"])  # 1 input channel: no
    for name, parameter in model.named_parameters():
        if name in masks:
            zeros = (parameter.movedim(1, -1).reshape(-1, 4) == 0).sum(dim=1)
            assert (zeros == 2).all() and sparsity_2_4_ok(parameter.detach())
    assert (model.features[0].weight != 0).all()


@pytest.mark.slow
def test_recovery_finetune_raises_accuracy_of_an_aggressive_prune(digits, tmp_path):
    model, spec, calib, evaluation = digits
    config = PruneConfig(mode="channels", ratio=0.75, finetune_steps=60)
    result = _run(model, spec, config, tmp_path, calib, evaluation, finetune=calib)
    assert result.accuracy_pruned < 0.5, "0.75 of the channels gone should hurt before recovery"
    assert result.after.accuracy >= 0.9 and result.after.accuracy >= result.accuracy_pruned + 0.3
    assert result.recovery.used_labels and result.recovery.loss_last < result.recovery.loss_first


def test_parse_prune_values():
    cpu, orin = targets.resolve("cpu-x86-avx2"), targets.resolve("jetson")
    assert parse_prune("0.5", cpu) == ("channels", 0.5)
    assert parse_prune(None, cpu) is None and parse_prune("none", cpu) is None
    assert parse_prune("2:4", orin) == ("2:4", None)
    for bad in ("1.5", "half", "0.0001x"):
        with pytest.raises(BadInput):
            parse_prune(bad, cpu)


def test_2_4_on_a_volta_target_is_refused_in_one_line():
    result = run_cli("build", "--prune", "2:4", "--target", "jetson-xavier-nx")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "jetson-xavier-nx (Volta) does not accelerate 2:4" in lines[0]


@pytest.mark.slow
def test_build_with_pruning_reports_before_and_after(tmp_path):
    code, doc, stderr = build_json("--prune", "0.5", "--finetune-data", str(CALIB), "--finetune-steps", "40",
                                   "--target", "cpu-x86-avx2", "--out", str(tmp_path / "b"), *FAST)
    assert code == 0, stderr
    assert [s["name"] for s in doc["stages"]] == ["load", "prune", "export", "quantize", "calib_stats", "compile", "validate", "unpruned"]
    assert doc["model"]["params_before_prune"] == 666282 and doc["model"]["params"] < 0.6 * 666282
    section = doc["prune"]
    assert section["before"]["params"] == 666282 and section["after"]["params"] == doc["model"]["params"]
    assert section["recovery"]["steps"] == 40 and section["after"]["accuracy"] > section["accuracy_pruned"]
    assert section["after"]["accuracy"] == pytest.approx(doc["metrics"]["fp32"]["accuracy"], abs=0.005)
    assert section["after"]["onnx_bytes"] < 0.5 * section["before"]["onnx_bytes"]
    if doc["metrics"]["fp32"]["latency_ms"]:  # host matches the target's architecture
        assert section["before"]["latency_ms"]["p50"] > 0 and section["latency_speedup"] > 0
    assert (Path(doc["build_dir"]) / LAYOUT.pruned_model).is_file() and (Path(doc["build_dir"]) / "unpruned.fp32.onnx").is_file()


@pytest.mark.slow
def test_channel_counts_round_to_the_nearest_multiple_never_to_zero(digits, tmp_path):
    """Torch-Pruning's round_to floors: 0.75 of 32 at multiple 16 would keep 0 and prune nothing."""
    model, spec, calib, evaluation = digits
    result = _run(model, spec, PruneConfig(mode="channels", ratio=0.75, channel_multiple=16), tmp_path, calib, evaluation)
    assert [result.layers[name][0] for name in CONVS] == [16, 16, 16, 16, 32]
    result = _run(model, spec, PruneConfig(mode="channels", ratio=0.25, channel_multiple=16), tmp_path, calib, evaluation)
    assert [result.layers[name][0] for name in CONVS] == [32, 32, 48, 48, 96]
