"""The device runner's runtime half: the CUDA runtime through ctypes, an engine session with pinned
buffers, the engine inspector's layer report, timing as trtexec does, and `doctor` (what this
device has, a tiny engine built and run).

Shipped beside run_on_device.py in TensorRT packages; like it, Python >= 3.8 with only numpy and
the system TensorRT. The toolchain's TensorRT backend builds on this module (not a copy of it), and
timing.py, shipped beside it, holds the statistics the host uses too. Polygraphy would cover much
of it but is not part of JetPack: see docs/TENSORRT.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import json
import os
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

if __package__:  # edgeopt.device_runtime (the toolchain, its tests)
    from .timing import summary, time_runs
else:  # beside run_on_device.py on the device, which put this folder on sys.path
    from timing import summary, time_runs


class Refused(Exception):
    """One line for the user, and the exit code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


# --- does this device match the plan ---------------------------------------------------------


def version_matches(installed: str, pinned: str) -> bool:
    """'10.3.0.30' satisfies a pin of '10.3' or '10.3.0'; '10.16.1' does not satisfy '10.1'."""
    want = pinned.split(".")
    return installed.split(".")[: len(want)] == want


def capability_matches(installed: str, pinned: Optional[str]) -> bool:
    """A profile without a compute capability pins none: its plan says "unknown" (plan.py), and
    any GPU matches. The one rule for the device runner, the builder and `engine build`."""
    return pinned in (None, "", "unknown") or installed == pinned


# --- CUDA runtime through ctypes -------------------------------------------------------------


def cudart_candidates() -> List[str]:
    """The loader's path, JetPack's /usr/local/cuda, and pip's nvidia-cuda-runtime wheels
    (site-packages/nvidia/<pkg>/lib, which the loader does not search)."""
    names = [ctypes.util.find_library("cudart") or "", "libcudart.so", "libcudart.so.13", "libcudart.so.12",
             "libcudart.so.11.0", "/usr/local/cuda/lib64/libcudart.so"]
    for entry in sys.path:
        names += sorted(glob.glob(os.path.join(entry or ".", "nvidia", "*", "lib", "libcudart.so*")))
    return [n for n in names if n]


class Cuda:
    """Memory, pinned host buffers (cudaMallocHost, as trtexec), copies, a stream, events."""

    def __init__(self, lib: Any = None):
        self.lib = lib or self._load()

    @staticmethod
    def _load() -> Any:
        for name in cudart_candidates():
            try:
                return ctypes.CDLL(name)
            except OSError:
                continue
        raise Refused("the CUDA runtime (libcudart) was not found: it comes with JetPack", 3)

    def _check(self, status: int, call: str) -> None:
        if status != 0:
            self.lib.cudaGetErrorString.restype = ctypes.c_char_p
            raise RuntimeError("CUDA {} failed: {}".format(call, self.lib.cudaGetErrorString(status).decode()))

    def compute_capability(self) -> str:
        count, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        if self.lib.cudaGetDeviceCount(ctypes.byref(count)) != 0 or count.value < 1:
            raise Refused("no CUDA GPU is usable on this device", 3)
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(major), 75, 0), "cudaDeviceGetAttribute")
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(minor), 76, 0), "cudaDeviceGetAttribute")
        return "{}.{}".format(major.value, minor.value)

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        self._check(self.lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def host_array(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        count = int(np.prod(shape))
        nbytes = max(count * np.dtype(dtype).itemsize, 1)
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMallocHost(ctypes.byref(ptr), ctypes.c_size_t(nbytes)), "cudaMallocHost")
        raw = (ctypes.c_byte * nbytes).from_address(int(ptr.value or 0))
        array = np.frombuffer(raw, dtype=np.uint8).view(dtype)[:count].reshape(shape)
        array[...] = 0
        return array

    def free_host(self, array: np.ndarray) -> None:
        self._check(self.lib.cudaFreeHost(ctypes.c_void_p(array.ctypes.data)), "cudaFreeHost")

    def _copy(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        self._check(self.lib.cudaMemcpyAsync(ctypes.c_void_p(dst), ctypes.c_void_p(src), ctypes.c_size_t(nbytes),
                                             kind, ctypes.c_void_p(stream)), "cudaMemcpyAsync")

    def to_device(self, ptr: int, array: np.ndarray, stream: int) -> None:
        array = np.ascontiguousarray(array)
        self._copy(ptr, array.ctypes.data, array.nbytes, 1, stream)

    def to_host(self, array: np.ndarray, ptr: int, stream: int) -> None:
        self._copy(array.ctypes.data, ptr, array.nbytes, 2, stream)

    def stream(self) -> int:
        handle = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        return int(handle.value or 0)

    def destroy_stream(self, stream: int) -> None:
        self._check(self.lib.cudaStreamDestroy(ctypes.c_void_p(stream)), "cudaStreamDestroy")

    def synchronize(self, stream: int) -> None:
        self._check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def event(self) -> int:
        handle = ctypes.c_void_p()
        self._check(self.lib.cudaEventCreate(ctypes.byref(handle)), "cudaEventCreate")
        return int(handle.value or 0)

    def destroy_event(self, event: int) -> None:
        self._check(self.lib.cudaEventDestroy(ctypes.c_void_p(event)), "cudaEventDestroy")

    def record(self, event: int, stream: int) -> None:
        self._check(self.lib.cudaEventRecord(ctypes.c_void_p(event), ctypes.c_void_p(stream)), "cudaEventRecord")

    def elapsed_ms(self, start: int, end: int) -> float:
        ms = ctypes.c_float()
        self._check(self.lib.cudaEventElapsedTime(ctypes.byref(ms), ctypes.c_void_p(start), ctypes.c_void_p(end)),
                    "cudaEventElapsedTime")
        return float(ms.value)


# --- running the engine ---------------------------------------------------------------------


class Session:
    """The engine with pinned host and device buffers at the current input shapes."""

    def __init__(self, trt: Any, cuda: Any, engine_bytes: bytes, dla_core: Optional[int] = None):
        self.cuda, self.runtime = cuda, trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if dla_core is not None:
            self.runtime.DLA_core = dla_core
        self.engine = self.runtime.deserialize_cuda_engine(engine_bytes)
        if self.engine is None:
            raise Refused("TensorRT could not deserialize the engine", 2)
        self.context, self.stream = self.engine.create_execution_context(), cuda.stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.host, self.device, self.events = {}, {}, []  # type: Dict[str, np.ndarray], Dict[str, int], List[int]
        self.shapes = {}  # type: Dict[str, Tuple[int, ...]]

    def set_shapes(self, shapes: Dict[str, Tuple[int, ...]]) -> None:
        """Every input's shape, and the buffers (re)sized to it (outputs follow from the inputs)."""
        for name in self.inputs:
            shape = tuple(int(d) for d in shapes[name])
            if not self.context.set_input_shape(name, shape):
                raise Refused("input '{}': shape {} is outside the engine's profile".format(name, shape), 2)
            self.shapes[name] = shape
        for name in self.inputs + self.outputs:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if name not in self.host or self.host[name].shape != shape:
                if name in self.host:
                    self.cuda.free_host(self.host.pop(name))
                    self.cuda.free(self.device.pop(name))
                self.host[name] = self.cuda.host_array(shape, self.dtypes[name])
                self.device[name] = self.cuda.malloc(self.host[name].nbytes)
                if not self.context.set_tensor_address(name, self.device[name]):
                    raise RuntimeError("TensorRT refused the device address of tensor '{}'".format(name))

    def fill(self, feeds: Dict[str, np.ndarray]) -> None:
        """`feeds` into the input buffers, cast to the engine's types (an int64 ONNX input is
        INT32 in a TensorRT 8.5 engine); the engine is reshaped first when their shapes differ."""
        shapes = {name: tuple(int(d) for d in feeds[name].shape) for name in self.inputs}
        if shapes != self.shapes:
            self.set_shapes(shapes)
        for name in self.inputs:
            self.host[name][...] = feeds[name]

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

    def infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.fill(feeds)
        self.copy_inputs()
        self.execute()
        self.copy_outputs()
        self.synchronize()
        return {name: self.host[name].copy() for name in self.outputs}

    def close(self) -> None:
        for name in list(self.host):
            self.cuda.free_host(self.host.pop(name))
            self.cuda.free(self.device.pop(name))
        for event in self.events:
            self.cuda.destroy_event(event)
        self.events = []
        if self.stream:
            self.cuda.destroy_stream(self.stream)
        self.stream = 0


def layer_report(engine: Any, trt: Any) -> Dict[str, Any]:
    """Per layer: where it runs (DLA or GPU) and its output precision, from the engine inspector
    (needs profiling verbosity DETAILED at build time, as trtexec --profilingVerbosity=detailed)."""
    info = json.loads(engine.create_engine_inspector().get_engine_information(trt.LayerInformationFormat.JSON))
    layers, counts = [], {}  # type: List[Dict[str, str]], Dict[str, int]
    for layer in info.get("Layers", []):
        if not isinstance(layer, dict):
            continue  # without DETAILED verbosity TensorRT lists names only
        kind = str(layer.get("LayerType", ""))
        text = " ".join(str(o.get("Format/Datatype", "")) for o in layer.get("Outputs", [])).lower()
        precision = next((p for key, p in (("int8", "INT8"), ("half", "FP16"), ("fp16", "FP16"), ("int32", "INT32"),
                                           ("float", "FP32"), ("fp32", "FP32")) if key in text), "unknown")
        device = "DLA" if "dla" in kind.lower() or "dla" in str(layer.get("Name", "")).lower() else "GPU"
        layers.append({"name": str(layer.get("Name", "")), "type": kind, "precision": precision, "device": device})
        key = "{} {}".format(device, precision)
        counts[key] = counts.get(key, 0) + 1
    return {"layers": layers, "counts": counts}


def percentiles(values: List[float]) -> Dict[str, Any]:
    """timing.summary (trtexec's rules, the host's), with "median" as device_results.json names p50."""
    out = summary(values)
    out["median"] = out["p50"]
    return out


def time_engine(session: "Session", warmup_s: float, duration_s: float, min_runs: int,
                clock: Any = time.perf_counter) -> Dict[str, Any]:
    """As trtexec (timing.time_runs): GPU compute and host latency from CUDA events."""
    runs = time_runs(session, warmup_s, duration_s, min_runs, clock)
    elapsed, count = runs.pop("elapsed"), len(runs["host_latency"])
    result = {key: percentiles(values) for key, values in runs.items()}  # type: Dict[str, Any]
    # The raw host latencies go back to the workstation: `edgeopt report` bootstraps its CI from them.
    result.update(samples_ms=[round(v, 5) for v in runs["host_latency"]], runs=count, duration_s=round(elapsed, 4),
                  warmup_s=warmup_s, throughput_qps=round(count / elapsed, 3) if elapsed > 0 else None)
    return result


# --- what this device has (`run_on_device.py doctor`, `edgeopt doctor`) -----------------------


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as handle:
            return handle.read().strip("\0\n ")
    except OSError:
        return None


def doctor(trt: Any, cuda: Any) -> Dict[str, Any]:
    """What this device has, for a one-paste report: TensorRT, GPU and compute capability, DLA
    cores, power mode and clocks where readable, and a tiny engine (identity) built and run."""
    report = {"python": sys.version.split()[0], "tensorrt": str(trt.__version__),
              "device": _read("/proc/device-tree/model")}  # type: Dict[str, Any]
    try:
        report["compute_capability"] = cuda.compute_capability()
    except Refused as exc:
        report["gpu"] = str(exc)
        return report
    try:
        mode = subprocess.run(["nvpmodel", "-q"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10)
        report["power_mode"] = mode.stdout.decode(errors="replace").strip() or None
    except (OSError, subprocess.SubprocessError):
        report["power_mode"] = None
    report["clocks_hz"] = {os.path.basename(os.path.dirname(p)): _read(p)
                           for p in sorted(glob.glob("/sys/class/devfreq/*/cur_freq"))}
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    report["dla_cores"] = builder.num_DLA_cores
    try:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH) if int(str(trt.__version__).split(".")[0]) < 10 else 0
        network = builder.create_network(flags)
        x = network.add_input("x", trt.float32, (1, 4))
        network.mark_output(network.add_identity(x).get_output(0))
        engine = builder.build_serialized_network(network, builder.create_builder_config())
        if engine is None:
            raise RuntimeError("build_serialized_network returned None")
        session = Session(trt, cuda, bytes(engine))
        try:
            feed = np.array([[-1.5, 0.0, 2.0, 3.25]], dtype=np.float32)
            out = session.infer({session.inputs[0]: feed})[session.outputs[0]]
            report["tiny_engine"] = "built and ran" if np.array_equal(out, feed) else "ran but gave wrong outputs"
        finally:
            session.close()
    except Exception as exc:  # the report says what failed; it never stops there
        report["tiny_engine"] = "failed: {}".format(next(iter(str(exc).splitlines()), type(exc).__name__))
    return report
