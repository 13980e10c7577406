"""The bundled digits example: trained weights load, reach the documented accuracy, and the
calibration / evaluation splits have the documented layout and do not overlap."""

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "digits"
CALIB = ROOT / "calibration" / "digits_calib.npz"
EVAL = ROOT / "calibration" / "digits_eval.npz"


def _load_model_module():
    spec = importlib.util.spec_from_file_location("digits_example_model", EXAMPLE / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _load_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in data.files}


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(2)
    return _load_model_module().build()


@pytest.mark.parametrize("path, n", [(CALIB, 256), (EVAL, 500)])
def test_split_layout(path, n):
    data = _load_npz(path)
    assert set(data) == {"image", "labels"}
    assert data["image"].dtype == np.float32
    assert data["image"].shape == (n, 1, 32, 32)
    assert data["labels"].dtype == np.int64
    assert data["labels"].shape == (n,)
    assert set(np.unique(data["labels"]).tolist()) == set(range(10))
    assert np.isfinite(data["image"]).all()


def test_calibration_and_evaluation_are_disjoint():
    def hashes(images):
        return [hashlib.sha256(np.ascontiguousarray(s).tobytes()).hexdigest() for s in images]

    calib = hashes(_load_npz(CALIB)["image"])
    evals = hashes(_load_npz(EVAL)["image"])
    assert len(set(calib)) == len(calib)
    assert len(set(evals)) == len(evals)
    assert not set(calib) & set(evals)


def test_parameter_count(model):
    n_params = sum(p.numel() for p in model.parameters())
    assert 500_000 <= n_params <= 2_000_000
    metadata = json.loads((EXAMPLE / "metadata.json").read_text())
    assert metadata["params"] == n_params


def test_build_returns_eval_mode_logits(model):
    assert not model.training
    with torch.no_grad():
        out = model(torch.zeros(2, 1, 32, 32))
    assert out.shape == (2, 10)
    assert out.dtype == torch.float32


def test_eval_top1(model):
    data = _load_npz(EVAL)
    with torch.no_grad():
        logits = model(torch.from_numpy(data["image"]))
    top1 = (logits.argmax(1).numpy() == data["labels"]).mean()
    assert top1 >= 0.97, f"eval top-1 {top1:.4f} < 0.97"
