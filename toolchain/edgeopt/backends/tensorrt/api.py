"""The one door to TensorRT and the CUDA runtime.

TensorRT is absent on most hosts (and never on PyPI for Jetson), so nothing else in edgeopt
imports it: callers ask `available()` and get the module from `module()` only when they need it.
The CUDA runtime is reached through ctypes (as Polygraphy does) so that building and timing an
engine on a Jetson needs nothing beyond JetPack: no pycuda, no cuda-python, no torch.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from edgeopt.device_runtime import version_matches  # noqa: F401  (the one rule, shared with the device runner)
from edgeopt.errors import MissingEnvironment

INSTALL_HINT = (
    "TensorRT is not installed: on a Jetson it comes with JetPack (sudo apt install nvidia-jetpack) "
    "and is seen by the system python3; elsewhere install NVIDIA's tensorrt wheel matching the target profile"
)

_cached: ModuleType | None = None
_probed = False


def _import() -> ModuleType | None:
    global _cached, _probed
    if not _probed:
        _probed = True
        try:
            _cached = importlib.import_module("tensorrt")
        except ImportError:
            _cached = None
    return _cached


def available() -> bool:
    """True when `import tensorrt` works on this host."""
    return _import() is not None


def module() -> ModuleType:
    """The tensorrt module, or MissingEnvironment (exit 3) saying how to get it."""
    trt = _import()
    if trt is None:
        raise MissingEnvironment(INSTALL_HINT)
    return trt


def version() -> str | None:
    """Installed TensorRT version ('10.3.0.30'), None when absent."""
    trt = _import()
    return getattr(trt, "__version__", None) if trt is not None else None


def flag(trt: ModuleType, enum: str, name: str) -> Any:
    """`trt.<enum>.<name>`, by name: the integer values changed between releases."""
    try:
        return getattr(getattr(trt, enum), name)
    except AttributeError:
        found = getattr(trt, "__version__", "?")
        raise MissingEnvironment(f"TensorRT {found} has no {enum}.{name}") from None


# --- CUDA runtime via ctypes ------------------------------------------------------------------

_H2D, _D2H = 1, 2  # cudaMemcpyKind: part of the CUDA ABI, stable across releases
_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor/Minor


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: str  # "8.7"


class Cuda:
    """The handful of CUDA runtime calls an engine needs: memory, copies, a stream, events."""

    def __init__(self, lib: ctypes.CDLL | None = None):
        self.lib = lib or _load_cudart()

    def _check(self, status: int, call: str) -> None:
        if status != 0:
            self.lib.cudaGetErrorString.restype = ctypes.c_char_p
            text = self.lib.cudaGetErrorString(status).decode()
            raise RuntimeError(f"CUDA {call} failed: {text} ({status})")

    def device(self, index: int = 0) -> DeviceInfo:
        count = ctypes.c_int()
        status = self.lib.cudaGetDeviceCount(ctypes.byref(count))
        if status != 0 or count.value <= index:
            self.lib.cudaGetErrorString.restype = ctypes.c_char_p
            why = self.lib.cudaGetErrorString(status).decode() if status else f"{count.value} GPU(s)"
            raise MissingEnvironment(f"TensorRT is installed but no CUDA GPU is usable here ({why})")
        major_, minor_ = ctypes.c_int(), ctypes.c_int()
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(major_), _ATTR_CC_MAJOR, index), "attribute")
        self._check(self.lib.cudaDeviceGetAttribute(ctypes.byref(minor_), _ATTR_CC_MINOR, index), "attribute")
        props = ctypes.create_string_buffer(8192)  # cudaDeviceProp starts with char name[256]
        getter = getattr(self.lib, "cudaGetDeviceProperties_v2", None) or self.lib.cudaGetDeviceProperties
        self._check(getter(props, index), "cudaGetDeviceProperties")
        name = props.raw[:256].split(b"\0", 1)[0].decode(errors="replace")
        return DeviceInfo(name=name or _jetson_model() or "unknown", compute_capability=f"{major_.value}.{minor_.value}")

    def malloc(self, nbytes: int) -> int:
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(max(nbytes, 1))), "cudaMalloc")
        return int(ptr.value or 0)

    def free(self, ptr: int) -> None:
        self._check(self.lib.cudaFree(ctypes.c_void_p(ptr)), "cudaFree")

    def to_device(self, ptr: int, array: np.ndarray, stream: int) -> None:
        array = np.ascontiguousarray(array)
        self._check(
            self.lib.cudaMemcpyAsync(
                ctypes.c_void_p(ptr), ctypes.c_void_p(array.ctypes.data), ctypes.c_size_t(array.nbytes),
                _H2D, ctypes.c_void_p(stream)),
            "cudaMemcpyAsync",
        )

    def to_host(self, array: np.ndarray, ptr: int, stream: int) -> None:
        self._check(
            self.lib.cudaMemcpyAsync(
                ctypes.c_void_p(array.ctypes.data), ctypes.c_void_p(ptr), ctypes.c_size_t(array.nbytes),
                _D2H, ctypes.c_void_p(stream)),
            "cudaMemcpyAsync",
        )

    def stream(self) -> int:
        handle = ctypes.c_void_p()
        self._check(self.lib.cudaStreamCreate(ctypes.byref(handle)), "cudaStreamCreate")
        return int(handle.value or 0)

    def destroy_stream(self, stream: int) -> None:
        self._check(self.lib.cudaStreamDestroy(ctypes.c_void_p(stream)), "cudaStreamDestroy")

    def destroy_event(self, event: int) -> None:
        self._check(self.lib.cudaEventDestroy(ctypes.c_void_p(event)), "cudaEventDestroy")

    def host_array(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """A zeroed numpy array in pinned (page-locked) host memory, as trtexec's host buffers
        (cudaMallocHost): copies from pageable memory are staged and slower. Free with free_host."""
        nbytes = max(int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize, 1)
        ptr = ctypes.c_void_p()
        self._check(self.lib.cudaMallocHost(ctypes.byref(ptr), ctypes.c_size_t(nbytes)), "cudaMallocHost")
        raw = (ctypes.c_byte * nbytes).from_address(int(ptr.value or 0))
        array = np.frombuffer(raw, dtype=np.uint8)[: nbytes].view(dtype)[: int(np.prod(shape))].reshape(shape)
        array[...] = 0
        return array

    def free_host(self, array: np.ndarray) -> None:
        """Free a host_array (its data pointer is the start of the pinned allocation)."""
        self._check(self.lib.cudaFreeHost(ctypes.c_void_p(array.ctypes.data)), "cudaFreeHost")

    def synchronize(self, stream: int) -> None:
        self._check(self.lib.cudaStreamSynchronize(ctypes.c_void_p(stream)), "cudaStreamSynchronize")

    def event(self) -> int:
        handle = ctypes.c_void_p()
        self._check(self.lib.cudaEventCreate(ctypes.byref(handle)), "cudaEventCreate")
        return int(handle.value or 0)

    def record(self, event: int, stream: int) -> None:
        self._check(self.lib.cudaEventRecord(ctypes.c_void_p(event), ctypes.c_void_p(stream)), "cudaEventRecord")

    def elapsed_ms(self, start: int, end: int) -> float:
        ms = ctypes.c_float()
        self._check(
            self.lib.cudaEventElapsedTime(ctypes.byref(ms), ctypes.c_void_p(start), ctypes.c_void_p(end)),
            "cudaEventElapsedTime",
        )
        return float(ms.value)


def cudart_candidates() -> list[str]:
    """Where libcudart may be: the loader's path, JetPack's /usr/local/cuda, and pip's
    nvidia-cuda-runtime wheels (site-packages/nvidia/<pkg>/lib, which the loader does not search)."""
    candidates = [ctypes.util.find_library("cudart") or "", "libcudart.so", "libcudart.so.13", "libcudart.so.12",
                  "libcudart.so.11.0", "/usr/local/cuda/lib64/libcudart.so"]
    for entry in sys.path:
        folder = Path(entry or ".") / "nvidia"
        if folder.is_dir():
            candidates += sorted(str(p) for p in folder.glob("*/lib/libcudart.so*"))
    return [c for c in candidates if c]


def _load_cudart() -> ctypes.CDLL:
    for name in cudart_candidates():
        if not name:
            continue
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    raise MissingEnvironment("TensorRT is installed but the CUDA runtime (libcudart) was not found: on a Jetson it "
                             "comes with JetPack, elsewhere with the CUDA toolkit or pip's nvidia-cuda-runtime")


def _jetson_model() -> str | None:
    try:
        return Path("/proc/device-tree/model").read_text().strip("\0\n ")
    except OSError:
        return None


def device_info() -> DeviceInfo:
    """Name and compute capability of GPU 0."""
    return Cuda().device(0)


# --- implicit INT8 calibrator -----------------------------------------------------------------


def tensorrt_version_number(version: str) -> int:
    """TensorRT's getInferLibVersion(): 8.6.1 -> 8601; from 10 on, major*10000 + minor*100 + patch."""
    parts = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    major, minor, patch = parts
    return major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch


def cache_header(trt_version: str) -> str:
    """The first line TensorRT expects in a calibration cache read by IInt8EntropyCalibrator2 (as
    trtexec --calib does): 'TRT-<getInferLibVersion()>-EntropyCalibration2'. TensorRT ignores a
    cache whose header names another version or algorithm and then tries to calibrate with data."""
    return f"TRT-{tensorrt_version_number(trt_version)}-EntropyCalibration2"


def cache_for(trt_version: str, cache: bytes) -> bytes:
    """The host-written cache with its header set to the installed TensorRT (the scales, amax/127
    from ONNX Runtime's calibration, do not depend on the TensorRT release)."""
    _, _, rows = cache.partition(b"\n")
    return cache_header(trt_version).encode() + b"\n" + rows


def cache_calibrator(trt: ModuleType, cache_path: Path) -> Any:
    """An IInt8EntropyCalibrator2 that only replays the host-written calibration cache: edgeopt
    calibrates on the workstation (ONNX Runtime ranges), never on the device, so get_batch
    returns None and the build fails rather than calibrate on no data if the cache is refused.

    The class is defined here, not at module level, because its base class lives in tensorrt,
    which is imported lazily. TensorRT 11 removed calibrators: asking for one there is refused.
    """
    base = getattr(trt, "IInt8EntropyCalibrator2", None)
    if base is None:
        raise MissingEnvironment(
            f"TensorRT {getattr(trt, '__version__', '?')} has no INT8 calibrators (removed in 11): use explicit Q/DQ"
        )
    cache = cache_for(str(trt.__version__), Path(cache_path).read_bytes())

    class CacheCalibrator(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: list[str]) -> None:
            return None

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: bytes) -> None:
            pass  # the cache is an input of the build, never rewritten on the device

    return CacheCalibrator()
