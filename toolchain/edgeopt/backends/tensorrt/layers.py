"""The layer report of a built engine: which layers run in INT8, FP16 or FP32, on DLA or the GPU."""

from __future__ import annotations

from types import ModuleType


def layer_report(trt: ModuleType, engine: bytes) -> dict | None:
    """Which layers run in INT8, FP16 or FP32, on DLA or the GPU (the engine inspector, read as
    the device runner reads it). None where the module has no runtime to deserialize with."""
    from edgeopt.device_runtime import layer_report as inspect

    if getattr(trt, "Runtime", None) is None:
        return None
    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    deserialized = runtime.deserialize_cuda_engine(engine)
    return inspect(deserialized, trt) if deserialized is not None else None


def layer_note(metadata: dict) -> list[str]:
    """The summary's line: 'layers: 40 GPU INT8, 3 GPU FP16, 1 GPU FP32'."""
    counts = metadata.get("layers") or {}
    return ["layers: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))] if counts else []
