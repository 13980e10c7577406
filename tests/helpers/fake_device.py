"""A stand-in for the device side: the CUDA runtime (memory, copies, one stream, events on a
scripted GPU clock) and TensorRT's runtime (deserialize, execution context, name-based tensors).

The fake engine reads its inputs from the fake device memory at the addresses the session set,
computes `fn(inputs)` and writes the outputs back there, so a session that copies the wrong
buffer, keeps stale shapes or loses the order of samples gets wrong outputs, as on a GPU.
"""

from __future__ import annotations

import enum
from typing import Callable

import numpy as np

from helpers.fake_tensorrt import FakeTensorRT

Fn = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


class FakeCuda:
    """Device memory is a dict of byte buffers; GPU time advances by `h2d_ms` per input copy,
    the engine's scripted compute time per execution and `d2h_ms` per output copy."""

    def __init__(self, h2d_ms: float = 0.1, d2h_ms: float = 0.05, compute_capability: str = "8.7"):
        self.cc = compute_capability
        self.memory: dict[int, bytearray] = {}
        self.h2d_ms, self.d2h_ms = h2d_ms, d2h_ms
        self.now_ms = 0.0
        self.events: dict[int, float] = {}
        self._next = 1
        self.pinned: dict[int, np.ndarray] = {}  # host buffers from host_array, by data pointer
        self.streams: set[int] = set()
        self.destroyed: list[tuple[str, int]] = []

    def compute_capability(self) -> str:
        return self.cc

    def malloc(self, nbytes: int) -> int:
        ptr, self._next = self._next, self._next + 1
        self.memory[ptr] = bytearray(max(nbytes, 1))
        return ptr

    def free(self, ptr: int) -> None:
        del self.memory[ptr]

    def to_device(self, ptr: int, array: np.ndarray, stream: int) -> None:
        data = np.ascontiguousarray(array).tobytes()
        assert len(data) <= len(self.memory[ptr]), "copy larger than the device buffer"
        self.memory[ptr][: len(data)] = data
        self.now_ms += self.h2d_ms

    def to_host(self, array: np.ndarray, ptr: int, stream: int) -> None:
        array[...] = np.frombuffer(bytes(self.memory[ptr][: array.nbytes]), dtype=array.dtype).reshape(array.shape)
        self.now_ms += self.d2h_ms

    def host_array(self, shape: tuple[int, ...], dtype) -> np.ndarray:
        array = np.zeros(shape, dtype=dtype)
        self.pinned[array.ctypes.data] = array
        return array

    def free_host(self, array: np.ndarray) -> None:
        assert self.pinned.pop(array.ctypes.data) is array, "free_host of a buffer host_array did not make"

    def stream(self) -> int:
        self.streams.add(7)
        return 7

    def destroy_stream(self, stream: int) -> None:
        self.streams.remove(stream)
        self.destroyed.append(("stream", stream))

    def destroy_event(self, event: int) -> None:
        del self.events[event]
        self.destroyed.append(("event", event))

    def synchronize(self, stream: int) -> None:
        pass

    def event(self) -> int:
        ptr, self._next = self._next, self._next + 1
        self.events[ptr] = 0.0
        return ptr

    def record(self, event: int, stream: int) -> None:
        self.events[event] = self.now_ms

    def elapsed_ms(self, start: int, end: int) -> float:
        return self.events[end] - self.events[start]


class _Engine:
    def __init__(self, trt: "FakeTensorRT", inputs: dict[str, tuple[tuple, tuple]], outputs: list[str]):
        self.trt, self.inputs, self.outputs = trt, inputs, outputs
        self.names = list(inputs) + outputs
        self.num_io_tensors = len(self.names)

    def get_tensor_name(self, i: int) -> str:
        return self.names[i]

    def get_tensor_mode(self, name: str):
        return self.trt.TensorIOMode.INPUT if name in self.inputs else self.trt.TensorIOMode.OUTPUT

    def get_tensor_dtype(self, name: str):
        return self.trt.engine_dtypes.get(name, self.trt.DataType.FLOAT)

    def create_engine_inspector(self) -> "_Inspector":
        return _Inspector(self.trt)

    def create_execution_context(self) -> "_Context":
        return _Context(self)


# What TensorRT 10's inspector reports with ProfilingVerbosity.DETAILED (abridged): per layer its
# type and the format/datatype of each input and output. Without DETAILED: layer names only.
DETAILED_LAYERS = [
    {"Name": "quant_x", "LayerType": "Scale", "Inputs": [{"Name": "x", "Format/Datatype": "Row major linear FP32"}],
     "Outputs": [{"Name": "x_q", "Format/Datatype": "Four wide channel vectorized row major Int8 format"}]},
    {"Name": "conv + relu", "LayerType": "CaskConvolution",
     "Outputs": [{"Name": "y_int", "Format/Datatype": "Channel major FP16 format where channel % 8 == 0"}]},
    {"Name": "dequant_y", "LayerType": "Reformat", "Outputs": [{"Name": "y", "Format/Datatype": "Row major linear FP32"}]},
]


class _Inspector:
    def __init__(self, trt):
        self.trt = trt

    def get_engine_information(self, fmt) -> str:
        import json

        assert fmt == self.trt.LayerInformationFormat.JSON
        detailed = self.trt.built_verbosity == self.trt.ProfilingVerbosity.DETAILED
        layers = self.trt.engine_layers if detailed else [layer["Name"] for layer in self.trt.engine_layers]
        return json.dumps({"Layers": layers, "Bindings": self.trt.engine_outputs})


class _Context:
    def __init__(self, engine: _Engine):
        self.engine, self.trt = engine, engine.trt
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.addresses: dict[str, int] = {}

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        lo, hi = self.engine.inputs[name]
        self.trt.device_calls.append(("set_input_shape", name, tuple(shape)))
        if len(shape) != len(lo) or any(not a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return False
        self.shapes[name] = tuple(shape)
        return True

    def _outputs(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.trt.engine_fn(inputs)

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        if name in self.engine.inputs:
            return self.shapes[name]
        zeros = {n: np.zeros(s, dtype=self._nptype(n)) for n, s in self.shapes.items()}
        return tuple(self._outputs(zeros)[name].shape)

    def _nptype(self, name: str):
        return self.trt.nptype(self.engine.get_tensor_dtype(name))

    def set_tensor_address(self, name: str, ptr: int) -> bool:
        if name not in self.engine.names:
            return False
        self.addresses[name] = ptr
        return True

    def execute_async_v3(self, stream: int) -> bool:
        cuda = self.trt.cuda
        inputs = {}
        for name, shape in self.shapes.items():
            dtype = np.dtype(self._nptype(name))
            size = int(np.prod(shape)) * dtype.itemsize
            inputs[name] = np.frombuffer(bytes(cuda.memory[self.addresses[name]][:size]), dtype=dtype).reshape(shape)
        for name, value in self._outputs(inputs).items():
            data = np.ascontiguousarray(value, dtype=np.float32).tobytes()
            cuda.memory[self.addresses[name]][: len(data)] = data
        self.trt.executions.append({n: a.shape for n, a in inputs.items()})
        script = self.trt.compute_ms
        cuda.now_ms += script[(len(self.trt.executions) - 1) % len(script)]
        return True


class _Runtime:
    def __init__(self, trt: "FakeTensorRT"):
        self.trt = trt

    def deserialize_cuda_engine(self, data: bytes):
        if data != b"FAKE-SERIALIZED-ENGINE":
            return None
        return _Engine(self.trt, self.trt.engine_inputs, self.trt.engine_outputs)

    def __setattr__(self, name: str, value) -> None:
        assert name in ("trt", "DLA_core"), f"IRuntime has no attribute {name}"
        object.__setattr__(self, name, value)


def with_engine(trt: FakeTensorRT, cuda: FakeCuda, inputs: dict[str, tuple[tuple, tuple]], outputs: list[str],
                fn: Fn, compute_ms: list[float] | None = None) -> FakeTensorRT:
    """Give a FakeTensorRT the runtime half: its engines take `inputs` ({name: (min, max)}) and
    compute `fn`; every execution takes the next of `compute_ms` on the fake GPU clock."""
    trt.cuda, trt.engine_inputs, trt.engine_outputs, trt.engine_fn = cuda, inputs, outputs, fn
    trt.compute_ms = compute_ms or [1.0]
    trt.executions, trt.device_calls = [], []
    trt.TensorIOMode = enum.Enum("TensorIOMode", ["INPUT", "OUTPUT"])
    trt.engine_dtypes = {}
    trt.engine_layers = DETAILED_LAYERS
    trt.nptype = lambda dtype: {"FLOAT": np.float32, "HALF": np.float16, "INT8": np.int8, "INT32": np.int32,
                                "INT64": np.int64, "BOOL": np.bool_}[dtype.name]
    trt.Runtime = lambda logger: _Runtime(trt)
    return trt
