"""Running a built engine on the device: `TensorRTSession` (inference, and the stream and event
calls `edgeopt.bench.time_engine` times, as trtexec does) and opening a build directory's engine.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from edgeopt.backends.tensorrt import api as tensorrt_api
from edgeopt.backends.tensorrt.builder import check_engine_matches, read_plan
from edgeopt.backends.tensorrt.plan import BuildPlan
from edgeopt.build_dir import LAYOUT, read_build
from edgeopt.errors import BadInput
from edgeopt.targets import TargetProfile


class TensorRTSession:
    """A deserialized engine with device buffers sized to its current input shapes (the device
    side). `set_shapes` moves to other shapes within the engine's optimization profile.

    Host buffers are pinned (cudaMallocHost), as trtexec's are, so host latency is comparable to
    trtexec's; an int64 input of the ONNX is INT32 in a TensorRT 8.5 engine, and feeds are cast to
    the engine's type when copied into the host buffer. `close` frees every buffer, the stream and
    the events the session made."""

    def __init__(self, engine_bytes: bytes, shapes: dict[str, tuple[int, ...]], *, dla_core: int | None = None,
                 trt: Any = None, cuda: tensorrt_api.Cuda | None = None):
        self.trt = trt or tensorrt_api.module()
        self.cuda = cuda or tensorrt_api.Cuda()
        self.runtime = self.trt.Runtime(self.trt.Logger(self.trt.Logger.WARNING))
        if dla_core is not None:
            self.runtime.DLA_core = dla_core
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise BadInput("TensorRT could not deserialize the engine (built by another TensorRT or GPU?)")
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.stream()
        mode_input = tensorrt_api.flag(self.trt, "TensorIOMode", "INPUT")
        self.names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in self.names if self.engine.get_tensor_mode(n) == mode_input]
        self.outputs = [n for n in self.names if n not in self.inputs]
        self.dtypes = {n: np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(n))) for n in self.names}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.host: dict[str, np.ndarray] = {}
        self.device: dict[str, int] = {}
        self.events: list[int] = []
        self.set_shapes(shapes)

    def set_shapes(self, shapes: dict[str, tuple[int, ...]]) -> None:
        """Set every input's shape and size the buffers to it (outputs follow from the inputs)."""
        missing = [n for n in self.inputs if n not in shapes]
        if missing:
            raise BadInput(f"the engine needs input(s) {', '.join(missing)}")
        for name in self.inputs:
            shape = tuple(int(d) for d in shapes[name])
            if self.context.set_input_shape(name, shape) is False:
                raise BadInput(f"input '{name}': shape {shape} is outside the engine's optimization profile")
            self.shapes[name] = shape
        for name in self.names:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if name in self.host and self.host[name].shape == shape:
                continue
            if name in self.device:
                self.cuda.free(self.device.pop(name))
                self.cuda.free_host(self.host.pop(name))
            self.host[name] = self.cuda.host_array(shape, self.dtypes[name])
            self.device[name] = self.cuda.malloc(self.host[name].nbytes)
            if not self.context.set_tensor_address(name, self.device[name]):
                raise RuntimeError(f"TensorRT refused the device address of tensor '{name}'")

    def copy_inputs(self) -> None:
        for name in self.inputs:
            self.cuda.to_device(self.device[name], self.host[name], self.stream)

    def execute(self) -> None:
        if not self.context.execute_async_v3(self.stream):
            raise RuntimeError("TensorRT execute_async_v3 failed")

    def copy_outputs(self) -> None:
        for name in self.outputs:
            self.cuda.to_host(self.host[name], self.device[name], self.stream)

    def synchronize(self) -> None:
        self.cuda.synchronize(self.stream)

    def event(self) -> int:
        self.events.append(self.cuda.event())
        return self.events[-1]

    def record(self, event: int) -> None:
        self.cuda.record(event, self.stream)

    def elapsed_ms(self, start: int, end: int) -> float:
        return self.cuda.elapsed_ms(start, end)

    def fill(self, feeds: dict[str, np.ndarray]) -> None:
        """Put `feeds` in the input buffers, reshaping the engine first if their shapes differ."""
        shapes = {name: tuple(feeds[name].shape) for name in self.inputs if name in feeds}
        if shapes != self.shapes:
            self.set_shapes(shapes)
        for name in self.inputs:
            self.host[name][...] = feeds[name]

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One synchronous inference on `feeds` (any shapes within the optimization profile)."""
        self.fill(feeds)
        self.copy_inputs()
        self.execute()
        self.copy_outputs()
        self.synchronize()
        return {name: self.host[name].copy() for name in self.outputs}

    def close(self) -> None:
        for ptr in self.device.values():
            self.cuda.free(ptr)
        for array in self.host.values():
            self.cuda.free_host(array)
        for event in self.events:
            self.cuda.destroy_event(event)
        if self.stream:
            self.cuda.destroy_stream(self.stream)
        self.device.clear()
        self.host.clear()
        self.events.clear()
        self.stream = 0


def read_engine(folder: Path, target: TargetProfile) -> tuple[BuildPlan, dict]:
    """The plan and engine.json of a folder holding a built engine, refused (one line) when the
    engine's TensorRT version or compute capability is not the target's."""
    meta_path = folder / LAYOUT.tensorrt_engine_json
    if not meta_path.is_file() or not (folder / LAYOUT.tensorrt_plan).is_file():
        raise BadInput(f"{folder}: no engine was built here (run `edgeopt engine build {folder}` on the device)")
    try:
        metadata = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{meta_path}: not readable ({exc})") from None
    check_engine_matches(metadata, target)
    return read_plan(folder / LAYOUT.tensorrt_plan), metadata


def open_session(folder: Path, plan: BuildPlan, metadata: dict, *, batch: str = "opt", trt: Any = None,
                 cuda: tensorrt_api.Cuda | None = None) -> TensorRTSession:
    """A session on the folder's engine at the plan's min, opt or max shapes."""
    path = folder / plan.engine
    if not path.is_file():
        raise BadInput(f"{path}: the engine file is missing")
    data = path.read_bytes()
    if metadata.get("engine_sha256") and hashlib.sha256(data).hexdigest() != metadata["engine_sha256"]:
        raise BadInput(f"{path}: sha256 differs from {LAYOUT.tensorrt_engine_json} (changed or damaged)")
    shapes = {s.name: getattr(s, batch) for s in plan.inputs}
    return TensorRTSession(data, shapes, dla_core=plan.dla_core, trt=trt, cuda=cuda)


def open_engine(build_dir: Path, *, batch: str = "opt", trt: Any = None,
                cuda: tensorrt_api.Cuda | None = None) -> TensorRTSession:
    """The build directory's engine, refused when it does not match the manifest's target."""
    _, target = read_build(build_dir)
    plan, metadata = read_engine(build_dir, target)
    return open_session(build_dir, plan, metadata, batch=batch, trt=trt, cuda=cuda)
