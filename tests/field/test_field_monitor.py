"""The field monitor, calibration statistics and capture on a tiny Q/DQ model with known ranges:
a shifted input saturates and moves the histogram, an in-distribution resample does not; the
monitor is Python 3.8, numpy + ONNX Runtime only; capture keeps protected samples under caps."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgeopt
from edgeopt.build_dir import LAYOUT, Artifact
from edgeopt.data.dataset import Dataset
from edgeopt.field import calib_stats, monitor
from edgeopt.field.capture import Capture, protected

FIELD = Path(edgeopt.__file__).parent / "field"
SCALE = 4.0 / 255  # uint8, zero point 128: representable [-128/255*4, 127/255*4], about [-2.01, 1.99]


def qdq_model(path: Path) -> Path:
    """x -> Tanh-free affine (2x) -> QuantizeLinear -> DequantizeLinear -> y: one quantized activation 'h'."""
    nodes = [helper.make_node("Mul", ["x", "two"], ["h"]),
             helper.make_node("QuantizeLinear", ["h", "s", "zp"], ["hq"]),
             helper.make_node("DequantizeLinear", ["hq", "s", "zp"], ["y"])]
    inits = [numpy_helper.from_array(np.array(2.0, np.float32), "two"),
             numpy_helper.from_array(np.array(SCALE, np.float32), "s"),
             numpy_helper.from_array(np.array(128, np.uint8), "zp")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def data(rows: int, seed: int, scale: float = 0.2, shift: float = 0.0) -> Dataset:
    x = np.random.default_rng(seed).normal(shift, scale, (rows, 16)).astype(np.float32)
    return Dataset({"x": x}, None, Path(f"seed{seed}"))


@pytest.fixture
def stats(tmp_path):
    int8 = qdq_model(tmp_path / "model.int8.onnx")
    result = calib_stats.CalibStatsStage(Artifact.of(int8), data(256, 0)).run(tmp_path)
    assert result.tensors == 1 and result.samples == 256
    return tmp_path


def record(folder: Path, dataset: Dataset) -> dict:
    import json

    doc = json.loads((folder / LAYOUT.calib_stats).read_text())
    recorder = monitor.FieldMonitor(str(folder / LAYOUT.int8_onnx), doc, rate=1.0)
    for row in range(len(dataset)):
        recorder.record(dataset.batch(row, row + 1))
    return recorder.document()["tensors"]["h"]


def test_the_range_is_the_artifacts_own_scale_and_zero_point(tmp_path):
    found = calib_stats.quantized_activations(onnx.load(str(qdq_model(tmp_path / "m.onnx"))))
    assert list(found) == ["h"]
    assert found["h"]["low"] == pytest.approx(-128 * SCALE, rel=1e-6) and found["h"]["high"] == pytest.approx(127 * SCALE, rel=1e-6)


def test_calibration_statistics_are_small_and_in_range(stats):
    import json

    doc = json.loads((stats / LAYOUT.calib_stats).read_text())
    tensor = doc["tensors"]["h"]
    assert len(tensor["histogram"]) == calib_stats.BINS + 2 and sum(tensor["histogram"]) == 256 * 16
    assert tensor["calibration_saturation"] == 0.0  # 2 * N(0, 0.2): 5 sigma inside +-2
    assert (stats / LAYOUT.calib_stats).stat().st_size < 2000  # bounded bytes per tensor


def test_a_shifted_input_saturates_and_moves_the_histogram(stats):
    shifted = record(stats, data(64, 1, scale=0.9, shift=0.6))  # 2x -> mean 1.2, std 1.8: a third above 2
    assert shifted["saturation"] > 0.2 and shifted["psi"] > 1.0


def test_in_distribution_resamples_do_not_move(stats):
    for seed in range(2, 7):
        same = record(stats, data(64, seed))
        assert same["saturation"] == 0.0 and same["psi"] < 0.1, seed


def test_counts_psi_and_saturation_by_hand():
    tensor = {"low": 0.0, "high": 1.0, "scale": 0.1, "bins": 4}
    c = monitor.counts(np.array([-1.0, -0.01, 0.1, 0.5, 0.9, 1.2]), tensor)  # 4 bins of 0.275 from -0.05 to 1.05
    assert c.tolist() == [1, 2, 0, 1, 1, 1]
    assert monitor.saturation(c.tolist(), low=0.0) == pytest.approx(1 / 6)  # below a 0 range is a folded ReLU
    assert monitor.saturation(c.tolist(), low=-1.0) == pytest.approx(2 / 6)
    assert monitor.psi([10, 20, 30], [10, 20, 30]) == 0.0 and monitor.psi([10, 20, 30], [30, 20, 10]) > 0.5


def test_sampling_runs_the_monitor_on_the_rate_share_deterministically(stats):
    import json

    doc = json.loads((stats / LAYOUT.calib_stats).read_text())
    runs = []
    for _ in range(2):
        m = monitor.FieldMonitor(str(stats / LAYOUT.int8_onnx), doc, rate=0.01, seed=3)
        runs.append([m.observe({"x": np.zeros((1, 16), np.float32)}) for _ in range(2000)])
    assert runs[0] == runs[1] and 5 <= sum(runs[0]) <= 40


def test_the_monitor_is_python_3_8_numpy_and_onnxruntime_only():
    import ast

    sources = [FIELD / "monitor.py", FIELD / "capture.py"]
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    ok = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--violations", "--eval-annotations", *map(str, sources)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    allowed = set(sys.stdlib_module_names) | {"numpy", "onnxruntime", "__future__", "capture", "field_capture"}
    for source in sources:
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert {n.split(".")[0] for n in names} - {""} <= allowed, (source.name, names)


def test_capture_keeps_protected_samples_under_its_caps(tmp_path):
    image = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    ids = np.arange(16, dtype=np.int64)[None]
    assert protected({"image": image})["image"].dtype == np.float16
    assert protected({"image": image}, keep_inputs=True)["image"].dtype == np.float32
    assert protected({"input_ids": ids})["input_ids"].dtype == np.int64  # token ids as they are
    capture = Capture(str(tmp_path / "cap"), max_samples=3)
    assert [capture.save({"image": image}) for _ in range(5)] == [True, True, True, False, False]
    assert sorted(p.name for p in (tmp_path / "cap").iterdir()) == [f"field-00000{i}.npz" for i in range(3)]
    small = Capture(str(tmp_path / "small"), max_samples=100, max_bytes=8000)
    saved = sum(small.save({"image": image}) for _ in range(10))
    assert 1 <= saved < 10 and small.bytes <= 8000 and small.summary()["refused"] == 10 - saved
    with np.load(tmp_path / "cap" / "field-000000.npz", allow_pickle=False) as loaded:
        assert loaded["image"].shape == (1, 3, 32, 32) and loaded["image"].dtype == np.float16
    with pytest.raises(ValueError):
        Capture(str(tmp_path / "bad"), max_samples=0)


def test_a_dynamic_int8_model_has_nothing_calibrated(tmp_path):
    """Dynamic INT8 (ranges per input, MiniLM's CPU recipe) has no QuantizeLinear with a stored scale."""
    graph = helper.make_graph([helper.make_node("Mul", ["x", "two"], ["y"])], "dyn",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 16])],
                              [numpy_helper.from_array(np.array(2.0, np.float32), "two")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "dyn.onnx"))
    stats = calib_stats.measure(tmp_path / "dyn.onnx", data(8, 0), tmp_path)
    assert stats["tensors"] == {} and "dynamic" in stats["note"]
    assert (tmp_path / LAYOUT.calib_stats).is_file()


def test_an_activation_folded_into_the_quantizer_is_not_counted_as_clipping(tmp_path):
    """ReLU6 as Clip(0, 6) in FP32; the Q/DQ graph's tensor is the value before it (the quantizer
    does the clip): values above 6 there are the activation's work, only values past 6 after it clip."""
    nodes = [helper.make_node("Mul", ["x", "two"], ["pre"]), helper.make_node("Clip", ["pre", "lo", "hi"], ["h"])]
    inits = [numpy_helper.from_array(np.array(v, np.float32), n) for n, v in (("two", 2.0), ("lo", 0.0), ("hi", 6.0))]
    graph = helper.make_graph(nodes, "fp32", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 16])],
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, [None, 16])], inits)
    assert calib_stats.activation_bounds(helper.make_model(graph), ["h", "x"]) == {"h": [0.0, 6.0]}
    tensor = {"low": 0.0, "high": 6.0, "scale": 6 / 255, "bins": 4}
    values = np.array([-3.0, 1.0, 5.0, 9.0])
    assert monitor.counts(values, tensor)[-1] == 1  # as a plain range: 9 clips
    assert monitor.counts(values, {**tensor, "activation": [0.0, 6.0]})[-1] == 0  # ReLU6 made it 6


def test_exposing_without_onnx_equals_the_onnx_edit(tmp_path):
    """The monitor adds outputs by appending to the serialized model (no onnx on the device):
    the same names and bit-identical values as the model edited with the onnx package."""
    import onnxruntime as ort

    path = qdq_model(tmp_path / "m.onnx")
    edited = onnx.load(str(path))
    edited.graph.output.extend([helper.make_tensor_value_info("h", TensorProto.FLOAT, None)])
    x = {"x": np.random.default_rng(0).normal(size=(4, 16)).astype(np.float32)}
    ours = ort.InferenceSession(monitor.exposing(path.read_bytes(), ["h"]), providers=["CPUExecutionProvider"])
    theirs = ort.InferenceSession(edited.SerializeToString(), providers=["CPUExecutionProvider"])
    assert [o.name for o in ours.get_outputs()] == ["y", "h"]
    assert all(np.array_equal(a, b) for a, b in zip(ours.run(None, x), theirs.run(None, x)))
