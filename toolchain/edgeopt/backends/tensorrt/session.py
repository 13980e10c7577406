"""Running a built engine on the device: `TensorRTSession` (the device runner's own session,
device_runtime.Session, with the toolchain's errors) and opening a build directory's engine.
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
from edgeopt.build_dir import LAYOUT
from edgeopt.device_runtime import Refused, Session
from edgeopt.errors import BadInput
from edgeopt.targets import TargetProfile


class TensorRTSession(Session):
    """The device runner's engine session (device_runtime.Session: pinned host buffers as
    trtexec's, device buffers at the current shapes, one stream, events), opened at `shapes`, with
    the toolchain's errors. `set_shapes` moves to other shapes within the optimization profile."""

    def __init__(self, engine_bytes: bytes, shapes: dict[str, tuple[int, ...]], *, dla_core: int | None = None,
                 trt: Any = None, cuda: tensorrt_api.Cuda | None = None):
        self.trt = trt or tensorrt_api.module()
        try:
            super().__init__(self.trt, cuda or tensorrt_api.Cuda(), engine_bytes, dla_core)
        except Refused:
            raise BadInput("TensorRT could not deserialize the engine (built by another TensorRT or GPU?)") from None
        self.names = self.inputs + self.outputs
        self.set_shapes(shapes)

    def set_shapes(self, shapes: dict[str, tuple[int, ...]]) -> None:
        missing = [n for n in self.inputs if n not in shapes]
        if missing:
            raise BadInput(f"the engine needs input(s) {', '.join(missing)}")
        try:
            super().set_shapes(shapes)
        except Refused as exc:
            raise BadInput(f"{exc.args[0].replace('profile', 'optimization profile')}") from None

    def fill(self, feeds: dict[str, np.ndarray]) -> None:
        missing = [n for n in self.inputs if n not in feeds]
        if missing:
            raise BadInput(f"the engine needs input(s) {', '.join(missing)}")
        super().fill(feeds)


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
