"""`edgeopt doctor`: what this host's TensorRT and GPU can do, in one paste for a bug report.

The work is the device runner's own `doctor` (one implementation for `edgeopt doctor` and
`python3 run_on_device.py doctor`), given edgeopt's TensorRT door and CUDA runtime."""

from __future__ import annotations

from typing import Any

from edgeopt.backends.tensorrt import api as tensorrt_api
from edgeopt.errors import MissingEnvironment


def doctor(trt: Any = None, cuda: Any = None) -> dict:
    """TensorRT version, compute capability, DLA cores, power mode and clocks, a tiny engine.
    MissingEnvironment (exit 3, one line) without TensorRT or without the CUDA runtime."""
    from edgeopt import device_runner
    from edgeopt.device_runtime import Refused

    trt = trt or tensorrt_api.module()
    try:
        return device_runner.doctor(trt, cuda or device_runner.Cuda())
    except Refused as exc:
        raise MissingEnvironment(str(exc)) from None
