"""The one door to TensorRT and the CUDA runtime.

TensorRT is absent on most hosts (and never on PyPI for Jetson), so nothing else in edgeopt
imports it: callers ask `available()` and get the module from `module()` only when they need it.
The CUDA runtime is reached through ctypes (as Polygraphy does) so that building and timing an
engine on a Jetson needs nothing beyond JetPack: no pycuda, no cuda-python, no torch. The ctypes
calls are the device runner's own (device_runtime.py, Python 3.8-clean), which this module extends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any


from edgeopt import device_runtime
from edgeopt.device_runtime import version_matches  # noqa: F401  (the one rule, shared with the device runner)
from edgeopt.errors import MissingEnvironment

INSTALL_HINT = (
    "TensorRT is not installed: on a Jetson it comes with JetPack (sudo apt install nvidia-jetpack) "
    "and is seen by the system python3; elsewhere install NVIDIA's tensorrt wheel matching the target profile"
)

_cached: ModuleType | None = None
_probed = False


def load_tensorrt() -> ModuleType | None:
    """The installed `tensorrt` module, or None: the one door to it (tests replace it, through the
    `no_tensorrt` fixture, to stand for a host without TensorRT, or with a fake one)."""
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
    return load_tensorrt() is not None


def module() -> ModuleType:
    """The tensorrt module, or MissingEnvironment (exit 3) saying how to get it."""
    trt = load_tensorrt()
    if trt is None:
        raise MissingEnvironment(INSTALL_HINT)
    return trt


def version() -> str | None:
    """Installed TensorRT version ('10.3.0.30'), None when absent."""
    trt = load_tensorrt()
    return getattr(trt, "__version__", None) if trt is not None else None


def flag(trt: ModuleType, enum: str, name: str) -> Any:
    """`trt.<enum>.<name>`, by name: the integer values changed between releases."""
    try:
        return getattr(getattr(trt, enum), name)
    except AttributeError:
        found = getattr(trt, "__version__", "?")
        raise MissingEnvironment(f"TensorRT {found} has no {enum}.{name}") from None


# --- CUDA runtime via ctypes ------------------------------------------------------------------

_ATTR_CC_MAJOR, _ATTR_CC_MINOR = 75, 76  # cudaDevAttrComputeCapabilityMajor/Minor


@dataclass(frozen=True)
class DeviceInfo:
    name: str
    compute_capability: str  # "8.7"


class Cuda(device_runtime.Cuda):
    """The device runner's CUDA runtime (device_runtime.Cuda: memory, pinned buffers, copies, a
    stream, events), plus the GPU's name; a missing runtime or GPU is MissingEnvironment (exit 3)."""

    def __init__(self, lib: ctypes.CDLL | None = None):
        super().__init__(lib or _load_cudart())

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


cudart_candidates = device_runtime.cudart_candidates  # where libcudart may be (pip's nvidia wheels included)


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
