"""Validation on the device: the engine's outputs against the FP32 ONNX, batched within the
engine's profile, timed as trtexec does; the build directory's manifest updated.

The fake engine computes the FP32 model's logits itself (numpy), except for one chosen sample,
whose logits it rotates so its top-1 changes: an honest engine validation then reports an
agreement of (N - 1) / N whatever the batching, and any slip in batching, padding or ordering
shows as a different number or an error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers.fake_device import FakeCuda, with_engine
from helpers.fake_tensorrt import FakeTensorRT
from onnx import TensorProto, helper

from edgeopt import targets
from edgeopt.hashing import sha256_file
from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.models.spec import InputSpec, ModelSpec
from edgeopt.backends.tensorrt import api as tensorrt_api
from edgeopt.backends.tensorrt.builder import EngineBuilder, compile_tensorrt
from edgeopt.backends.tensorrt.device import engine_build, time_build
from edgeopt.backends.tensorrt.validate import batch_plan, validate_build, validate_engine
from edgeopt.targets import Range

N = 10
WEIGHTS = np.array([[1.0, 0.2, -0.5], [0.3, 1.1, 0.1], [-0.4, 0.6, 1.3], [0.5, -0.2, 0.4]], dtype=np.float32)
SPEC = ModelSpec(name="clf", inputs=[InputSpec(name="x", shape=(1, 4))], outputs=["logits"])


def _save(graph, path: Path) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.save(model, str(path))
    return path


def classifier_onnx(folder: Path) -> tuple[Path, Path]:
    """x[batch,4] @ W -> logits[batch,3], in FP32 and as a Q/DQ graph (what TensorRT parses)."""
    io = ([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], WEIGHTS.flatten().tolist())
    fp32 = _save(helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["logits"])], "fp32", *io, [w]),
                 folder / "model.fp32.onnx")
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.02]), helper.make_tensor("z", TensorProto.INT8, [], [0]), w]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("MatMul", ["xd", "w"], ["logits"])]
    int8 = _save(helper.make_graph(nodes, "qdq", *io, inits), folder / "model.int8.onnx")
    return fp32, int8


def eval_data(folder: Path) -> tuple[Path, Dataset]:
    x = np.random.default_rng(1).normal(size=(N, 4)).astype(np.float32)
    labels = (x @ WEIGHTS).argmax(axis=1)  # FP32 gets every sample right
    path = folder / "eval.npz"
    np.savez(path, x=x, labels=labels)
    return path, Dataset({"x": x}, labels, path)


def engine_fn(flip: np.ndarray):
    """The FP32 logits, except for the sample equal to `flip`: its logits rotated (top-1 moves)."""
    def fn(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        logits = inputs["x"] @ WEIGHTS
        for row in np.flatnonzero((inputs["x"] == flip).all(axis=1)):
            logits[row] = np.roll(logits[row], 1)
        return {"logits": logits}
    return fn


def _target(batch: Range | None = None):
    target = targets.resolve("jetson")
    if batch is not None:
        target = target.model_copy(update={"build": target.build.model_copy(update={"batch": batch})})
    return target


@pytest.fixture
def device_build(tmp_path, orin, monkeypatch, no_tensorrt):
    """Returns a factory: a host build for `jetson` (optionally another batch range), finished by
    `engine_build` on a fake Orin, plus a fake device whose engine flips sample `flip_index`."""
    # no_tensorrt: the host side

    def make(flip_index: int = 7, batch: Range | None = None, compute_ms=(1.0,)):
        folder = tmp_path / "build"
        folder.mkdir()
        fp32, int8 = classifier_onnx(folder)
        eval_path, data = eval_data(tmp_path)
        target = _target(batch)
        compile_tensorrt(int8, target, SPEC.inputs, folder)
        (folder / "metrics.json").write_text("{}")
        names = ["model.fp32.onnx", "model.int8.onnx", "build_plan.json", "metrics.json"]
        manifest = {
            "schema": 1, "target": {**target.model_dump(mode="json"), "sha256": target.sha256()},
            "model": {"name": "clf", "spec": SPEC.model_dump(mode="json")},
            "artifacts": [{"path": n, "bytes": (folder / n).stat().st_size, "sha256": sha256_file(folder / n)}
                          for n in names],
            "metrics": {"int8": {"agreement": 1.0}}, "gates": [], "engine": {"status": "deferred"},
        }
        (folder / "manifest.json").write_text(json.dumps(manifest))
        cuda = FakeCuda()
        trt = with_engine(FakeTensorRT("10", "10.3.0.30"), cuda, {"x": ((target.build.batch.min, 4),
                                                                        (target.build.batch.max, 4))},
                          ["logits"], engine_fn(data.inputs["x"][flip_index]), compute_ms=list(compute_ms))
        engine_build(folder, builder=EngineBuilder(trt=trt, device=orin), timing_cache_dir=tmp_path / "tc")
        return folder, target, data, eval_path, trt, cuda

    return make


FAST = {"warmup_s": 0.0, "duration_s": 0.0, "min_runs": 10}


def test_batches_stay_in_the_profile():
    assert batch_plan(10, 1, 8) == [(0, 8, 8), (8, 10, 2)]
    assert batch_plan(10, 4, 4) == [(0, 4, 4), (4, 8, 4), (8, 10, 4)]  # last one padded by 2
    assert batch_plan(3, 1, 1) == [(0, 1, 1), (1, 2, 1), (2, 3, 1)]
    with pytest.raises(BadInput):
        batch_plan(3, 0, 4)


def test_engine_agreement_counts_the_one_flipped_sample(device_build):
    folder, target, data, _, trt, cuda = device_build(flip_index=7)
    result = validate_engine(folder, folder / "model.fp32.onnx", data, "classification", target,
                             trt=trt, cuda=cuda, **FAST)
    assert result.engine.agreement == pytest.approx((N - 1) / N)
    assert result.fp32.accuracy == 1.0 and result.engine.accuracy == pytest.approx((N - 1) / N)
    # nine samples match exactly (cosine 1), one does not: the mean is theirs over ten
    assert result.engine.cosine_min < 0.9
    assert result.engine.cosine_mean == pytest.approx((N - 1 + result.engine.cosine_min) / N, abs=1e-5)
    # jetson's profile takes batch 1..8: 8 then 2, then the opt batch (1) for timing
    assert result.batches == [8, 2] and result.padded == 0
    assert [e["x"] for e in trt.executions[:2]] == [(8, 4), (2, 4)]
    assert result.timing.batch == 1 and result.timing.runs >= 10
    assert result.timing.gpu_compute.p50 == 1.0
    assert result.timing.host_latency.p50 == pytest.approx(1.15)  # fake h2d 0.1 + compute + d2h 0.05
    assert result.engine.latency_ms == result.timing.host_latency
    assert cuda.memory == {}  # session closed: every buffer freed


def test_a_static_batch_engine_gets_padded_batches_in_order(device_build):
    folder, target, data, _, trt, cuda = device_build(flip_index=N - 1, batch=Range(min=4, opt=4, max=4))
    result = validate_engine(folder, folder / "model.fp32.onnx", data, "classification", target,
                             trt=trt, cuda=cuda, **FAST)
    assert result.batches == [4, 4, 4] and result.padded == 2
    assert all(e["x"] == (4, 4) for e in trt.executions)
    # the flipped sample is the last real one, inside the padded batch: counted once, padding dropped
    assert result.engine.agreement == pytest.approx((N - 1) / N)
    assert result.timing.batch == 4


def test_no_flip_means_full_agreement(device_build):
    folder, target, data, _, trt, cuda = device_build(flip_index=0)
    other = Dataset({"x": data.inputs["x"][1:]}, data.labels[1:], data.source)  # without the flipped sample
    result = validate_engine(folder, folder / "model.fp32.onnx", other, "classification", target,
                             trt=trt, cuda=cuda, measure_latency=False)
    assert result.engine.agreement == 1.0 and result.engine.max_abs_error < 1e-5 and result.timing is None


def test_an_engine_for_another_tensorrt_is_refused(device_build):
    folder, target, data, _, trt, cuda = device_build()
    meta = json.loads((folder / "engine.json").read_text())
    (folder / "engine.json").write_text(json.dumps({**meta, "tensorrt_version": "10.16.0"}))
    with pytest.raises(BadInput, match="does not match target .*TensorRT 10.16.0 but the target pins 10.3"):
        validate_engine(folder, folder / "model.fp32.onnx", data, "classification", target, trt=trt, cuda=cuda)
    (folder / "engine.json").write_text(json.dumps({**meta, "compute_capability": "7.2"}))
    with pytest.raises(BadInput, match="compute capability 7.2 but the target is 8.7"):
        validate_engine(folder, folder / "model.fp32.onnx", data, "classification", target, trt=trt, cuda=cuda)


def test_a_changed_engine_file_is_refused(device_build):
    folder, target, data, _, trt, cuda = device_build()
    (folder / "model.engine").write_bytes(b"FAKE-SERIALIZED-ENGINE-but-changed")
    with pytest.raises(BadInput, match="sha256 differs from engine.json"):
        validate_engine(folder, folder / "model.fp32.onnx", data, "classification", target, trt=trt, cuda=cuda)


def test_validate_build_records_metrics_in_the_manifest(device_build):
    folder, _, _, eval_path, trt, cuda = device_build(compute_ms=[1.0, 1.0, 1.0, 3.0])
    result, gates = validate_build(folder, eval_path, trt=trt, cuda=cuda, **FAST)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["metrics"]["int8"]["agreement"] == pytest.approx(0.9)
    assert manifest["metrics"]["fp32"]["latency_ms"] is None  # FP32 is not timed on the GPU
    timing = manifest["metrics"]["engine_timing"]
    assert timing["gpu_compute"]["p99"] == 3.0 and any("unstable" in w for w in timing["warnings"])
    assert manifest["host_metrics"] == {"int8": {"agreement": 1.0}}
    assert manifest["engine"]["status"] == "built"
    assert json.loads((folder / "metrics.json").read_text()) == manifest["metrics"]
    listed = {a["path"]: a["sha256"] for a in manifest["artifacts"]}
    for name in ("model.engine", "engine.json", "metrics.json", "model.fp32.onnx"):
        assert listed[name] == sha256_file(folder / name)
    assert gates[0].name == "max_accuracy_drop" and gates[0].value == pytest.approx(0.1) and gates[0].passed is False
    assert manifest["gates"][0]["passed"] is False


def test_cli_engine_build_eval_and_time(device_build, monkeypatch, orin):
    from conftest import run_cli

    folder, _, _, eval_path, trt, cuda = device_build()
    for name in ("model.engine", "engine.json"):
        (folder / name).unlink()
    monkeypatch.setattr(tensorrt_api, "load_tensorrt", lambda: trt)  # now "on the device"
    monkeypatch.setattr(tensorrt_api, "device_info", lambda: orin)
    monkeypatch.setattr(tensorrt_api, "Cuda", lambda: cuda)
    result = run_cli("engine", "build", str(folder), "--eval", str(eval_path), "--duration", "0", "--json")
    assert result.exit_code == 1, result.stderr  # 0.9 agreement fails jetson's 1-point accuracy gate
    document = json.loads(result.stdout)
    assert document["engine"]["status"] == "built" and document["validation"]["engine"]["agreement"] == pytest.approx(0.9)
    assert document["validation"]["timing"]["gpu_compute"]["p50"] == 1.0
    assert document["gates"][0]["passed"] is False

    timed = run_cli("engine", "time", str(folder), "--duration", "0", "--json")
    assert timed.exit_code == 0, timed.stderr
    assert json.loads(timed.stdout)["gpu_compute"]["p50"] == 1.0
    text = run_cli("engine", "time", str(folder), "--duration", "0")
    assert "GPU Compute Time: min = 1.0 ms" in text.stdout
    assert time_build(folder, duration_s=0, trt=trt, cuda=cuda).runs >= 10


@pytest.mark.tensorrt
def test_real_engine_validation(tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (needs an NVIDIA GPU: a Jetson or a GPU host)")
    from helpers.fake_tensorrt import jetson_profile_for_this_host

    target = jetson_profile_for_this_host()
    fp32, int8 = classifier_onnx(tmp_path)
    _, data = eval_data(tmp_path)
    result = compile_tensorrt(int8, target, SPEC.inputs, tmp_path / "out", timing_cache_dir=tmp_path / "tc")
    assert result.status == "built", result.reason
    validation = validate_engine(tmp_path / "out", fp32, data, "classification", target, duration_s=0.3)
    assert validation.engine.agreement >= 0.9 and validation.timing.gpu_compute.p50 > 0
