"""A recording stand-in for the `tensorrt` module in three API shapes (8.5, 10.x, 11.x), and
tiny ONNX models. (A helper module, not a conftest.py: tests/conftest.py owns that name.)

Strict where TensorRT is: the parser reads the real ONNX file, so the network has the model's
inputs with -1 for free dimensions (int64 inputs become INT32 on 8.5, stay INT64 on 10+);
building a network with a free dimension that no optimization profile covers fails as TensorRT
does; add_optimization_profile returns -1 for an invalid profile; set_timing_cache returns False
for a cache of another TensorRT version; a calibration cache whose header is not
'TRT-<this version>-EntropyCalibration2' is ignored and the calibrator asked for data.

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
        self.DataType = enum.Enum("DataType", ["FLOAT", "HALF", "INT8", "INT32", "INT64", "BOOL"])
        self.float32 = self.DataType.FLOAT
        self.ProfilingVerbosity = enum.Enum("ProfilingVerbosity", ["LAYER_NAMES_ONLY", "NONE", "DETAILED"])
        self.LayerInformationFormat = enum.Enum("LayerInformationFormat", ["ONELINE", "JSON"])
        self.built_verbosity = None  # what the last build asked the inspector to keep
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


def expected_cache_header(version: str) -> str:
    """TensorRT's getInferLibVersion() in the cache header: 8.5.2 -> 8502, 10.3.0 -> 100300."""
    major, minor, patch = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    number = major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch
    return f"TRT-{number}-EntropyCalibration2"


class _Network:
    def __init__(self) -> None:
        self.inputs: dict[str, tuple[tuple[int, ...], object]] = {}
        self.outputs: list[str] = []

    def add_input(self, name: str, dtype, shape):
        self.inputs[name] = (tuple(shape), dtype)
        return name

    def add_identity(self, tensor):
        return types.SimpleNamespace(get_output=lambda i: f"{tensor}_identity")

    def mark_output(self, tensor) -> None:
        self.outputs.append(tensor)


class _Builder:
    def __init__(self, trt: FakeTensorRT, logger: object):
        self.trt, self.num_DLA_cores, self.logger = trt, trt.dla_cores, logger
        trt.record("Builder", logger)

    def create_network(self, flags: int = 0):
        self.trt.record("create_network", flags)
        return _Network()

    def create_builder_config(self):
        self.trt.record("create_builder_config")
        return _Config(self.trt)

    def create_optimization_profile(self):
        self.trt.record("create_optimization_profile")
        return _Profile(self.trt)

    def build_serialized_network(self, network: "_Network", config: "_Config"):
        self.trt.record("build_serialized_network")
        error = self.trt.build_fails and "Internal error" or self._check(network, config)
        if error:
            self.logger.log("Severity.ERROR", error)
            return None
        self.trt.built_verbosity = config.__dict__.get("profiling_verbosity")
        return b"FAKE-SERIALIZED-ENGINE"

    def _check(self, network: "_Network", config: "_Config") -> str | None:
        covered = set().union(*(set(p.shapes) for p in config.profiles)) if config.profiles else set()
        for name, (shape, _) in network.inputs.items():
            if -1 in shape and name not in covered:
                return ("Network has dynamic or shape inputs, but no optimization profile has been defined."
                        if not config.profiles else f"{name}: dynamic input is missing dimensions in profile 0.")
        calibrator = config.__dict__.get("int8_calibrator")
        if calibrator is not None:
            header = bytes(calibrator.read_calibration_cache() or b"").split(b"\n", 1)[0].decode()
            if header != expected_cache_header(self.trt.__version__):
                if calibrator.get_batch(list(network.inputs)) is None:
                    return "Calibration failure occurred with no scaling factors detected."
        return None


class _Error:
    def __init__(self, node: str, desc: str, with_name: bool):
        self._node, self._desc = node, desc
        if with_name:
            self.node_name = lambda: node

    def node(self) -> int:
        return -1 if not self._node else 3  # -1: an error not tied to a node

    def desc(self) -> str:
        return self._desc


class _Parser:
    def __init__(self, trt: FakeTensorRT, network: _Network):
        self.trt, self.network = trt, network
        trt.record("OnnxParser")

    def parse_from_file(self, path: str) -> bool:
        """The network's inputs from the real ONNX file: -1 for a free dimension; int64 is cast
        down to INT32 by the 8.5 parser and kept as INT64 from 10 on."""
        self.trt.record("parse_from_file", path)
        if self.trt.parse_errors:
            return False
        int64 = self.trt.DataType.INT32 if self.trt.shape == "8" else self.trt.DataType.INT64
        types = {TensorProto.FLOAT: self.trt.DataType.FLOAT, TensorProto.FLOAT16: self.trt.DataType.HALF,
                 TensorProto.INT64: int64, TensorProto.INT32: self.trt.DataType.INT32}
        graph = onnx.load(path, load_external_data=False).graph
        initializers = {i.name for i in graph.initializer}
        for value in graph.input:
            if value.name in initializers:
                continue
            tensor = value.type.tensor_type
            shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim)
            self.network.inputs[value.name] = (shape, types[tensor.elem_type])
        return True

    @property
    def num_errors(self) -> int:
        return len(self.trt.parse_errors)

    def get_error(self, i: int) -> _Error:
        node, desc = self.trt.parse_errors[i]
        return _Error(node, desc, with_name=self.trt.shape != "8")


class _Profile:
    def __init__(self, trt: FakeTensorRT):
        self.trt = trt
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, name: str, lo, mid, hi) -> None:
        self.trt.record("set_shape", (name, tuple(lo), tuple(mid), tuple(hi)))
        self.shapes[name] = (tuple(lo), tuple(mid), tuple(hi))

    def valid(self) -> bool:
        """min <= opt <= max, positive, one rank per input (TensorRT checks what it can here)."""
        for lo, mid, hi in self.shapes.values():
            if not len(lo) == len(mid) == len(hi) or any(not 0 < a <= b <= c for a, b, c in zip(lo, mid, hi)):
                return False
        return bool(self.shapes)


class _Cache:
    """A timing cache knows the TensorRT version that wrote it."""

    def __init__(self, trt: FakeTensorRT, blob: bytes):
        self.trt, self.blob = trt, blob

    def serialize(self) -> bytes:
        return f"TIMING-{self.trt.__version__}:".encode()


class _Config:
    """Only the attributes and methods of the shape's release exist."""

    _ATTRS = {"8": {"default_device_type", "DLA_core", "int8_calibrator", "profiling_verbosity"},
              "10": {"default_device_type", "DLA_core", "int8_calibrator", "builder_optimization_level",
                     "profiling_verbosity"},
              "11": {"default_device_type", "DLA_core", "builder_optimization_level", "profiling_verbosity"}}

    def __init__(self, trt: FakeTensorRT):
        object.__setattr__(self, "trt", trt)
        object.__setattr__(self, "profiles", [])

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

    def add_optimization_profile(self, profile: _Profile) -> int:
        self.trt.record("add_optimization_profile")
        if not profile.valid():
            return -1
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def __getattr__(self, name: str):
        if name == "set_calibration_profile" and self.trt.shape != "11":
            return lambda profile: self.trt.record("set_calibration_profile")
        raise AttributeError(name)

    def create_timing_cache(self, blob: bytes) -> _Cache:
        self.trt.record("create_timing_cache", bytes(blob))
        return _Cache(self.trt, bytes(blob))

    def set_timing_cache(self, cache: _Cache, ignore_mismatch: bool) -> bool:
        """False for a cache written by another TensorRT version (unless ignore_mismatch)."""
        self.trt.record("set_timing_cache", ignore_mismatch)
        return ignore_mismatch or not cache.blob or cache.blob == f"TIMING-{self.trt.__version__}:".encode()


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


def static_onnx(path: Path) -> Path:
    """x[1,1,8,8] -> Relu -> y, no free dimension: TensorRT builds it without a profile."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], "static",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])],
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
