"""Compile stage for onnxruntime targets: an offline-optimized model and its session settings.

The model is optimized at ONNX Runtime's "extended" level (fusions that hold on any CPU); the
"all" level adds layout transforms tied to this host's instruction set, so the device applies
those itself when it opens the session with the settings in session.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
from pydantic import BaseModel

from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.build_dir import LAYOUT
from edgeopt.targets import TargetProfile

DEPLOYABLE = LAYOUT.ort_deployable
SESSION = LAYOUT.ort_session


class OnnxRuntimeResult(BaseModel):
    deployable: str
    session_settings: dict
    onnxruntime: str


def compile_onnxruntime(onnx_path: Path, target: TargetProfile, out_dir: Path) -> OnnxRuntimeResult:
    deployable = out_dir / DEPLOYABLE
    runtime.session(onnx_path, threads=1, optimization="extended", optimized_output=deployable)
    settings = {
        "providers": [target.software.onnxruntime_ep or "CPUExecutionProvider"],
        "graph_optimization_level": "ORT_ENABLE_ALL",
        "intra_op_num_threads": target.build.threads or 0,
        "inter_op_num_threads": 1,
        "execution_mode": "ORT_SEQUENTIAL",
        "note": "intra_op_num_threads 0 means one thread per physical core",
    }
    (out_dir / SESSION).write_text(json.dumps({"schema_version": 1, **settings}, indent=2))
    return OnnxRuntimeResult(deployable=DEPLOYABLE, session_settings=settings, onnxruntime=ort.__version__)
