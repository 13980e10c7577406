"""Compile stage: ONNX -> the runnable artifact, through the target's backend facade (ONNX
Runtime: optimized model + session settings; TensorRT: build plan, and the engine where this
host's TensorRT is the target's). The stage itself knows no backend."""

from __future__ import annotations

from pathlib import Path

from edgeopt.build_dir import LAYOUT, Artifact
from edgeopt.models.spec import ModelSpec
from edgeopt.results import CompileResult


class CompileStage:
    """DeployableFromOnnx."""

    name = "compile"
    writes = (LAYOUT.ort_deployable, LAYOUT.ort_session, LAYOUT.tensorrt_plan, LAYOUT.tensorrt_engine,
              LAYOUT.tensorrt_engine_json, LAYOUT.layer_report)  # those the backend produces

    def __init__(self, backend, fp32: Artifact | Path, int8: Artifact | Path | None, spec: ModelSpec, *,
                 calibration_cache: Artifact | Path | None = None, sparsity: bool | None = None):
        self.backend, self.spec, self.sparsity = backend, spec, sparsity
        fp32, int8 = Artifact.of(fp32), Artifact.of(int8) if int8 is not None else None
        chosen = backend.compile_source(fp32.path, int8.path if int8 else None)
        self.source_artifact = int8 if int8 is not None and chosen == int8.path else \
            fp32 if chosen == fp32.path else Artifact.of(chosen)
        self.source = self.source_artifact.path
        present = calibration_cache is not None and Path(getattr(calibration_cache, "path", calibration_cache)).is_file()
        self.calibration = Artifact.of(calibration_cache) if present else None
        self.calibration_cache = self.calibration.path if self.calibration else None
        self.reads = tuple(p.name for p in (self.source, self.calibration_cache) if p is not None)

    def params(self) -> dict:
        return {**self.backend.compile_params(), **({"sparsity": True} if self.sparsity else {})}

    def inputs(self) -> dict:
        inputs = {"onnx": self.source_artifact.sha256}
        if self.calibration is not None:
            inputs["calibration_cache"] = self.calibration.sha256
        return inputs

    def run(self, folder: Path) -> CompileResult:
        return self.backend.compile(self.source, self.spec, folder, calibration_cache=self.calibration_cache,
                                    sparsity=self.sparsity)
