"""Compile stage: ONNX -> the runnable artifact, through the target's backend facade (ONNX
Runtime: optimized model + session settings; TensorRT: build plan, and the engine where this
host's TensorRT is the target's). The stage itself knows no backend."""

from __future__ import annotations

from pathlib import Path

from edgeopt.build_dir import LAYOUT
from edgeopt.hashing import sha256_file
from edgeopt.models.spec import ModelSpec
from edgeopt.results import CompileResult


class CompileStage:
    """DeployableFromOnnx."""

    name = "compile"
    writes = (LAYOUT.ort_deployable, LAYOUT.ort_session, LAYOUT.tensorrt_plan, LAYOUT.tensorrt_engine,
              LAYOUT.tensorrt_engine_json, LAYOUT.layer_report)  # those the backend produces

    def __init__(self, backend, fp32: Path, int8: Path | None, spec: ModelSpec, *,
                 calibration_cache: Path | None = None, sparsity: bool | None = None):
        self.backend, self.spec, self.sparsity = backend, spec, sparsity
        self.source = backend.compile_source(fp32, int8)
        self.calibration_cache = calibration_cache if calibration_cache and calibration_cache.is_file() else None
        self.reads = tuple(p.name for p in (self.source, self.calibration_cache) if p is not None)

    def params(self) -> dict:
        return {**self.backend.compile_params(), **({"sparsity": True} if self.sparsity else {})}

    def inputs(self) -> dict:
        inputs = {"onnx": sha256_file(self.source)}
        if self.calibration_cache is not None:
            inputs["calibration_cache"] = sha256_file(self.calibration_cache)
        return inputs

    def run(self, folder: Path) -> CompileResult:
        return self.backend.compile(self.source, self.spec, folder, calibration_cache=self.calibration_cache,
                                    sparsity=self.sparsity)
