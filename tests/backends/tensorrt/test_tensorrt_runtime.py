"""The device-side door: the session's buffers, stream and events; int64 inputs on 8.5 and 10+;
finding libcudart; a host with TensorRT but no GPU."""

from __future__ import annotations

import ctypes
import sys

import numpy as np
import pytest
from helpers.fake_device import FakeCuda, with_engine
from helpers.fake_tensorrt import FakeTensorRT

from edgeopt.backends.tensorrt import api as tensorrt_api
from edgeopt.backends.tensorrt.session import TensorRTSession
from edgeopt.errors import MissingEnvironment


def _session(shape: str, dtype: str, cuda: FakeCuda) -> tuple[TensorRTSession, FakeTensorRT]:
    trt = with_engine(FakeTensorRT(shape), cuda, {"ids": ((1, 4), (8, 4))}, ["y"],
                      lambda inputs: {"y": inputs["ids"].astype(np.float32) * 2})
    trt.engine_dtypes = {"ids": trt.DataType[dtype]}
    return TensorRTSession(b"FAKE-SERIALIZED-ENGINE", {"ids": (2, 4)}, trt=trt, cuda=cuda), trt


@pytest.mark.parametrize("shape,dtype", [("8", "INT32"), ("10", "INT64")])
def test_int64_feeds_reach_the_engine_in_its_own_type(shape, dtype):
    """TensorRT 8.5 casts an int64 ONNX input to INT32: the session must copy 4-byte integers
    there and 8-byte ones on 10+, or the engine reads garbage."""
    cuda = FakeCuda()
    session, _ = _session(shape, dtype, cuda)
    ids = np.array([[1, 2, 3, 2**31 - 1], [5, 6, 7, 8]], dtype=np.int64)
    out = session.infer({"ids": ids})["y"]
    assert session.host["ids"].dtype == np.dtype(dtype.lower())
    np.testing.assert_array_equal(out, ids.astype(np.float32) * 2)
    session.close()


def test_close_frees_buffers_and_destroys_the_stream_and_events():
    cuda = FakeCuda()
    session, _ = _session("10", "INT64", cuda)
    marks = [session.event() for _ in range(4)]
    session.infer({"ids": np.ones((3, 4), dtype=np.int64)})  # a reshape frees and reallocates
    # the session's own buffers: each host one pinned (cudaMallocHost, as trtexec), each device one
    # live and large enough for the new shape, and the reshape freed the old ones (nothing else live)
    for name, array in session.host.items():
        assert cuda.pinned.get(array.ctypes.data) is array, name
        assert len(cuda.memory[session.device[name]]) >= array.nbytes, name
    assert set(cuda.memory) == set(session.device.values()) and len(cuda.pinned) == len(session.host)
    session.close()
    assert cuda.memory == {} and cuda.pinned == {} and cuda.streams == set()
    assert sorted(cuda.destroyed) == sorted([("event", m) for m in marks] + [("stream", 7)])


def test_a_refused_tensor_address_is_an_error():
    cuda = FakeCuda()
    trt = with_engine(FakeTensorRT("10"), cuda, {"x": ((1, 4), (8, 4))}, ["y"], lambda i: {"y": i["x"]})
    trt.engine_outputs = ["y"]
    session = TensorRTSession(b"FAKE-SERIALIZED-ENGINE", {"x": (1, 4)}, trt=trt, cuda=cuda)
    session.context.set_tensor_address = lambda name, ptr: False  # TensorRT's answer to a bad address
    with pytest.raises(RuntimeError, match="refused the device address of tensor 'x'"):
        session.set_shapes({"x": (2, 4)})


def test_libcudart_from_pip_wheels_is_searched(tmp_path, monkeypatch):
    lib = tmp_path / "nvidia" / "cuda_runtime" / "lib"
    lib.mkdir(parents=True)
    (lib / "libcudart.so.12").write_bytes(b"")
    monkeypatch.setattr(sys, "path", [str(tmp_path)])
    assert str(lib / "libcudart.so.12") in tensorrt_api.cudart_candidates()


class _NoGpu:
    """libcudart present, no device: cudaGetDeviceCount returns cudaErrorNoDevice (100)."""

    def __init__(self) -> None:
        self.cudaGetErrorString = lambda status: b"no CUDA-capable device is detected"

    def cudaGetDeviceCount(self, count) -> int:
        return 100


def test_tensorrt_without_a_gpu_is_one_line_exit_3():
    with pytest.raises(MissingEnvironment) as error:
        tensorrt_api.Cuda(lib=_NoGpu()).device(0)  # type: ignore[arg-type]
    assert error.value.exit_code == 3 and "\n" not in str(error.value)
    assert "no CUDA GPU is usable here (no CUDA-capable device is detected)" in str(error.value)


def test_no_libcudart_is_one_line_exit_3(monkeypatch):
    monkeypatch.setattr(tensorrt_api, "cudart_candidates", lambda: ["/nonexistent/libcudart.so"])
    with pytest.raises(MissingEnvironment, match="libcudart") as error:
        tensorrt_api.Cuda()
    assert error.value.exit_code == 3


def test_compile_defers_when_tensorrt_has_no_gpu(tmp_path, monkeypatch):
    """`edgeopt build` on a workstation with the TensorRT wheel but no GPU: the plan, not a traceback."""
    from helpers.fake_tensorrt import qdq_onnx

    from edgeopt import targets
    from edgeopt.backends.tensorrt.builder import EngineBuilder, compile_tensorrt
    from edgeopt.models.spec import InputSpec

    monkeypatch.setattr(tensorrt_api, "device_info", lambda: tensorrt_api.Cuda(lib=_NoGpu()).device(0))
    result = compile_tensorrt(qdq_onnx(tmp_path / "m.onnx"), targets.resolve("jetson"), [InputSpec(name="x", shape=(1, 1, 8, 8))],
                              tmp_path / "out", builder=EngineBuilder(trt=FakeTensorRT("10", "10.3.0.30")))
    assert result.status == "deferred" and "no CUDA GPU is usable" in result.reason
    assert (tmp_path / "out" / "build_plan.json").is_file() and not (tmp_path / "out" / "model.engine").exists()


def test_pinned_host_array_is_a_view_of_the_cuda_allocation():
    """Cuda.host_array over a stand-in libcudart: the array's memory is what cudaMallocHost gave,
    and free_host hands the same pointer back."""
    buffer = ctypes.create_string_buffer(64)
    freed = []

    class Lib:
        def cudaMallocHost(self, ptr, size):
            ctypes.cast(ptr, ctypes.POINTER(ctypes.c_void_p))[0] = ctypes.addressof(buffer)
            return 0

        def cudaFreeHost(self, ptr):
            freed.append(ptr.value)
            return 0

    cuda = tensorrt_api.Cuda(lib=Lib())  # type: ignore[arg-type]
    array = cuda.host_array((2, 3), np.int32)
    assert array.shape == (2, 3) and array.ctypes.data == ctypes.addressof(buffer)
    array[...] = 7
    assert buffer.raw[:4] == np.int32(7).tobytes()
    cuda.free_host(array)
    assert freed == [ctypes.addressof(buffer)]
