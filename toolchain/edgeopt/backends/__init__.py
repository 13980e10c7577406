"""Backends: one compile-and-validate facade per runtime. The pipeline asks `backend_for(target)`
and never branches on the backend's name itself."""

from __future__ import annotations


def backend_for(target, cache_root=None, **options):
    """The facade for `target.backend` ("onnxruntime" or "tensorrt"). `options` go to the
    TensorRT facade (tests give it a fake `engine_builder` and `cuda`)."""
    if target.backend == "tensorrt":
        from edgeopt.backends.tensorrt.facade import TensorRTBackend

        timing = cache_root / "tensorrt" if cache_root is not None else None
        return TensorRTBackend(target, timing_cache_dir=timing, **options)
    from edgeopt.backends.onnxruntime.facade import OnnxRuntimeBackend

    return OnnxRuntimeBackend(target, **options)


def export_opset(target) -> int:
    """The ONNX opset the export stage writes for `target` (the parser of its runtime decides)."""
    from edgeopt.backends.tensorrt.operators import export_opset as tensorrt_opset

    return tensorrt_opset(target)
