"""A recording stand-in for the `tensorrt` module in three API shapes (8.5, 10.x, 11.x), and
tiny ONNX models. (A helper module, not a conftest.py: tests/conftest.py owns that name.)

Each shape only has the names its release has (REFERENCE.md and NVIDIA's 10-to-11 migration
guide): TensorRT 11 has no BuilderFlag.INT8/FP16, no calibrators and no `int8_calibrator`;
8.5 has no `builder_optimization_level`. Enum values differ between shapes, as they do between
releases, so code that hard-codes an integer records the wrong member.
"""

from __future__ import annotations

import enum
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from edgeopt.backends.tensorrt.api import DeviceInfo

_FLAGS = {
    "8": ["FP16", "INT8", "DEBUG", "GPU_FALLBACK", "STRICT_TYPES", "REFIT", "DISABLE_TIMING_CACHE", "TF32",
          "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS"],
    "10": ["FP16", "BF16", "INT8", "DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32",
           "SPARSE_WEIGHTS", "SAFETY_SCOPE", "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS",
           "DIRECT_IO", "REJECT_EMPTY_ALGORITHMS", "VERSION_COMPATIBLE", "FP8", "INT4"],
    "11": ["DEBUG", "GPU_FALLBACK", "REFIT", "DISABLE_TIMING_CACHE", "TF32", "SPARSE_WEIGHTS", "SAFETY_SCOPE",
           "VERSION_COMPATIBLE", "STRIP_PLAN", "REFIT_IDENTICAL"],
}
_NETWORK_FLAGS = {"8": ["EXPLICIT_BATCH", "EXPLICIT_PRECISION"], "10": ["EXPLICIT_BATCH", "STRONGLY_TYPED"],
                  "11": ["STRONGLY_TYPED"]}
VERSIONS = {"8": "8.5.2.2", "10": "10.3.0.30", "11": "11.1.0.12"}


class FakeTensorRT(types.ModuleType):
    """Build with `FakeTensorRT("10")`; `calls` records (name, args) in order."""

    def __init__(self, shape: str, version: str | None = None, *, dla_cores: int = 2,
                 parse_errors: list[tuple[str, str]] | None = None, build_fails: bool = False):
        super().__init__("tensorrt")
        self.shape = shape
        self.__version__ = version or VERSIONS[shape]
        self.calls: list[tuple[str, object]] = []
        # Different first values per shape: hard-coded integers would pick the wrong member.
        start = {"8": 0, "10": 3, "11": 7}[shape]
        self.BuilderFlag = enum.IntEnum("BuilderFlag", _FLAGS[shape], start=start)
        self.NetworkDefinitionCreationFlag = enum.IntEnum(
            "NetworkDefinitionCreationFlag", _NETWORK_FLAGS[shape], start=0)
        self.MemoryPoolType = enum.IntEnum("MemoryPoolType", ["WORKSPACE", "DLA_MANAGED_SRAM"], start=start)
        self.DeviceType = enum.IntEnum("DeviceType", ["GPU", "DLA"], start=0)
        self.dla_cores, self.parse_errors, self.build_fails = dla_cores, parse_errors or [], build_fails
        fake = self

        class ILogger:
            def __init__(self) -> None:
                pass

        class Logger(ILogger):
            WARNING = "WARNING"

            def __init__(self, severity: str = "WARNING") -> None:
                self.severity = severity

        self.ILogger, self.Logger = ILogger, Logger
        self.Builder = lambda logger: _Builder(fake, logger)
        self.OnnxParser = lambda network, logger: _Parser(fake, network)
        if shape != "11":
            class IInt8EntropyCalibrator2:
                def __init__(self) -> None:
                    pass

            self.IInt8EntropyCalibrator2 = IInt8EntropyCalibrator2

    def record(self, name: str, args: object = None) -> None:
        self.calls.append((name, args))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def args(self, name: str) -> list[object]:
        return [args for call, args in self.calls if call == name]


class _Builder:
    def __init__(self, trt: FakeTensorRT, logger: object):
        self.trt, self.num_DLA_cores = trt, trt.dla_cores
        trt.record("Builder", logger)

    def create_network(self, flags: int = 0):
        self.trt.record("create_network", flags)
        return object()

    def create_builder_config(self):
        self.trt.record("create_builder_config")
        return _Config(self.trt)

    def create_optimization_profile(self):
        self.trt.record("create_optimization_profile")
        return _Profile(self.trt)

    def build_serialized_network(self, network: object, config: object):
        self.trt.record("build_serialized_network")
        return None if self.trt.build_fails else b"FAKE-SERIALIZED-ENGINE"


class _Error:
    def __init__(self, node: str, desc: str, with_name: bool):
        self._node, self._desc = node, desc
        if with_name:
            self.node_name = lambda: node

    def node(self) -> int:
        return 3

    def desc(self) -> str:
        return self._desc


class _Parser:
    def __init__(self, trt: FakeTensorRT, network: object):
        self.trt = trt
        trt.record("OnnxParser")

    def parse_from_file(self, path: str) -> bool:
        self.trt.record("parse_from_file", path)
        return not self.trt.parse_errors

    @property
    def num_errors(self) -> int:
        return len(self.trt.parse_errors)

    def get_error(self, i: int) -> _Error:
        node, desc = self.trt.parse_errors[i]
        return _Error(node, desc, with_name=self.trt.shape != "8")


class _Profile:
    def __init__(self, trt: FakeTensorRT):
        self.trt = trt

    def set_shape(self, name: str, lo, mid, hi) -> None:
        self.trt.record("set_shape", (name, tuple(lo), tuple(mid), tuple(hi)))


class _Cache:
    def __init__(self, blob: bytes):
        self.blob = blob

    def serialize(self) -> bytes:
        return b"TIMING:" + self.blob


class _Config:
    """Only the attributes and methods of the shape's release exist."""

    _ATTRS = {"8": {"default_device_type", "DLA_core", "int8_calibrator"},
              "10": {"default_device_type", "DLA_core", "int8_calibrator", "builder_optimization_level"},
              "11": {"default_device_type", "DLA_core", "builder_optimization_level"}}

    def __init__(self, trt: FakeTensorRT):
        object.__setattr__(self, "trt", trt)

    def __setattr__(self, name: str, value: object) -> None:
        if name not in self._ATTRS[self.trt.shape]:
            raise AttributeError(f"IBuilderConfig of TensorRT {self.trt.__version__} has no attribute {name}")
        self.trt.record(f"config.{name}", value)
        object.__setattr__(self, name, value)

    def set_memory_pool_limit(self, pool, size: int) -> None:
        self.trt.record("set_memory_pool_limit", (pool, size))

    def set_flag(self, flag) -> None:
        assert isinstance(flag, self.trt.BuilderFlag), f"set_flag got {flag!r}, not a BuilderFlag member"
        self.trt.record("set_flag", flag)

    def add_optimization_profile(self, profile) -> int:
        self.trt.record("add_optimization_profile")
        return 0

    def __getattr__(self, name: str):
        if name == "set_calibration_profile" and self.trt.shape != "11":
            return lambda profile: self.trt.record("set_calibration_profile")
        raise AttributeError(name)

    def create_timing_cache(self, blob: bytes) -> _Cache:
        self.trt.record("create_timing_cache", bytes(blob))
        return _Cache(bytes(blob))

    def set_timing_cache(self, cache: _Cache, ignore_mismatch: bool) -> bool:
        self.trt.record("set_timing_cache", ignore_mismatch)
        return True


@pytest.fixture
def orin() -> DeviceInfo:
    return DeviceInfo(name="Orin (nvgpu)", compute_capability="8.7")


def _save(model: onnx.ModelProto, path: Path) -> Path:
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def qdq_onnx(path: Path) -> Path:
    """x[batch,1,8,8] -> Q -> DQ -> Conv(DQ(int8 weights)) -> Relu -> y: a minimal explicit-INT8 graph."""
    weight = helper.make_tensor("w_q", TensorProto.INT8, [2, 1, 3, 3], np.ones(18, dtype=np.int8).tolist())
    inits = [
        weight,
        helper.make_tensor("x_scale", TensorProto.FLOAT, [], [0.02]),
        helper.make_tensor("x_zero", TensorProto.INT8, [], [0]),
        helper.make_tensor("w_scale", TensorProto.FLOAT, [], [0.01]),
        helper.make_tensor("w_zero", TensorProto.INT8, [], [0]),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["x_q"], name="quant_x"),
        helper.make_node("DequantizeLinear", ["x_q", "x_scale", "x_zero"], ["x_dq"], name="dequant_x"),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zero"], ["w"], name="dequant_w"),
        helper.make_node("Conv", ["x_dq", "w"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["y"], name="relu"),
    ]
    graph = helper.make_graph(
        nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2, 8, 8])], inits,
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def fp32_onnx(path: Path) -> Path:
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "fp32",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 1, 8, 8])],
    )
    return _save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


@pytest.fixture
def qdq_model(tmp_path) -> Path:
    return qdq_onnx(tmp_path / "model.int8.onnx")


@pytest.fixture
def fp32_model(tmp_path) -> Path:
    return fp32_onnx(tmp_path / "model.onnx")


def jetson_profile_for_this_host():
    """The `jetson` profile re-pinned to the installed TensorRT and GPU, for real-TensorRT tests."""
    from edgeopt import targets
    from edgeopt.backends.tensorrt import api as tensorrt_api

    version, device = tensorrt_api.version(), tensorrt_api.device_info()
    base = targets.resolve("jetson")
    return base.model_copy(update={
        "software": base.software.model_copy(update={"tensorrt": ".".join(version.split(".")[:2])}),
        "device": base.device.model_copy(update={"compute_capability": device.compute_capability}),
    })
