"""`edgeopt build --target jetson` on the device path: TensorRT present (a fake injected through
the pipeline's backend seam), so the compile stage builds the engine and validate judges the
engine, not the INT8 ONNX. What is checked is edgeopt's decisions and bookkeeping: which ONNX is
parsed with which settings, that the engine's outputs (not ONNX Runtime's) are judged, and that
the build directory, the manifest and the JSON all say "built" with the same engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers.fake_device import FakeCuda, with_engine
from helpers.fake_tensorrt import FakeTensorRT

from edgeopt import api
from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.backends.tensorrt.api import DeviceInfo
from edgeopt.backends.tensorrt.builder import EngineBuilder
from edgeopt.hashing import sha256_file

pytestmark = pytest.mark.slow



def _engine_from(onnx_path, flip_first: bool):
    """The fake engine computes the FP32 model's logits (flipping the top-1 of each batch's first sample when asked)."""
    session = runtime.session(onnx_path, threads=1)

    def fn(inputs):
        logits = session.run(None, {"image": inputs["image"]})[0]
        if flip_first:
            logits[0] = np.roll(logits[0], 1)
        return {"logits": logits}
    return fn


def test_device_build_validates_the_engine(tmp_path, no_tensorrt):
    host_build = api.build(target="jetson", out=tmp_path / "host", latency_seconds=0.1)
    assert host_build.engine.status == "deferred" and host_build.engine.engine is None

    cuda = FakeCuda()
    trt = with_engine(FakeTensorRT("10", "10.3.0.30"), cuda, {"image": ((1, 1, 32, 32), (8, 1, 32, 32))}, ["logits"],
                      _engine_from(host_build.artifacts.onnx_fp32, flip_first=True), compute_ms=[2.5])
    builder = EngineBuilder(trt=trt, device=DeviceInfo("Orin (nvgpu)", "8.7"))
    result = api.build(target="jetson", out=tmp_path / "device", latency_seconds=0.1,
                       backend_options={"engine_builder": builder, "cuda": cuda})

    out = tmp_path / "device"
    assert result.engine.status == "built" and result.engine.engine == str(out / "model.engine")
    assert result.artifacts.deployable == str(out / "model.engine")
    assert trt.args("parse_from_file")[0].endswith("model.int8.onnx")  # explicit INT8: the Q/DQ graph
    assert {f.name for f in trt.args("set_flag")} == {"INT8", "FP16"}
    # the engine's outputs were judged: the first sample of each batch of 8 (the profile's max) flipped
    assert result.metrics["int8"]["agreement"] == pytest.approx(1 - 63 / 500)
    assert "Orin (nvgpu)" in result.metrics["latency_measured_on"]
    # the fake GPU clock: 0.1 ms input copy + 2.5 ms compute + 0.05 ms output copy per run, trtexec's host latency
    assert result.metrics["int8"]["latency_ms"] == pytest.approx({"p50": 2.65, "p90": 2.65, "p99": 2.65})
    assert result.metrics["fp32"]["latency_ms"] is None
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["engine"]["status"] == "built" and manifest["engine"]["engine"] == "model.engine"
    assert manifest["deployable"] == "model.engine"
    listed = {a["path"]: a["sha256"] for a in manifest["artifacts"]}
    assert listed["model.engine"] == sha256_file(out / "model.engine")
    # a deferred host build never shares the compile entry of a device build
    assert [s.cached for s in result.stages if s.name == "compile"] == [False]


def test_data_roles_are_recorded(example_build):
    data = example_build["data"]
    assert data["calibration"]["used_for"] == ["activation ranges", "INT8 recipe and float-layer selection"]
    assert data["evaluation"]["used_for"] == ["reported metrics", "gates"]
    assert data["calibration"]["sha256"] != data["evaluation"]["sha256"]
