"""The typed results of a build: what `edgeopt.build()` returns, what `--json` prints, and the
one engine summary shared by `build --json`, `engine build --json` and the manifest.

Stage results and the manifest hold paths relative to the build directory (folders move: the
cache renames its work folders, users copy builds to devices); `absolute(root)` turns them into
the absolute paths the `--json` contract promises.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from edgeopt.build_dir import SCHEMA_VERSION
from edgeopt.report.gates import GateResult


def _join(root: Path, name: str | None) -> str | None:
    return str(Path(root) / name) if name else None


class EngineSummary(BaseModel):
    """The TensorRT engine of a build: built, deferred to the device, or not applicable (CPU)."""

    status: Literal["built", "deferred", "not_applicable"]
    reason: str | None = None
    plan: str | None = Field(None, description="build_plan.json (relative in the manifest, absolute in --json)")
    trtexec: str | None = Field(None, description="the equivalent trtexec build command, run inside the build directory")
    trtexec_timing: str | None = None
    engine: str | None = Field(None, description="the engine file, only when TensorRT built it")
    metadata: dict | None = None
    notes: list[str] = Field(default_factory=list)

    def absolute(self, root: Path) -> "EngineSummary":
        return self.model_copy(update={"plan": _join(root, self.plan), "engine": _join(root, self.engine)})


class CompileResult(BaseModel):
    """What a backend's compile step produced, names relative to its folder."""

    backend: Literal["onnxruntime", "tensorrt"]
    deployable: str | None = Field(description="the file that ships to the device; None while an engine is deferred")
    engine: EngineSummary
    settings: dict = Field(default_factory=dict, description="backend settings (ONNX Runtime session options)")


class ModelInfo(BaseModel):
    name: str
    source: str
    sha256: str
    params: int
    params_before_prune: int


class TargetInfo(BaseModel):
    name: str
    backend: str


class Artifacts(BaseModel):
    onnx_fp32: str
    onnx_int8: str | None
    deployable: str | None


class StageSummary(BaseModel):
    name: str
    seconds: float
    cached: bool


class DataUse(BaseModel):
    """Which data did what: selection never touches the data the gates judge."""

    path: str
    samples: int
    sha256: str
    used_for: list[str]


class BuildResult(BaseModel):
    """`edgeopt build --json` (DESIGN.md keeps these keys stable; keys are only ever added)."""

    schema_version: int = SCHEMA_VERSION
    status: Literal["ok", "gate_failed"]
    model: ModelInfo
    target: TargetInfo
    build_dir: str
    artifacts: Artifacts
    metrics: dict
    engine: EngineSummary
    stages: list[StageSummary]
    gates: list[GateResult]
    data: dict[str, DataUse] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    prune: dict | None = None
    quantization: dict | None = None
    manifest: str

    def to_json(self) -> dict:
        return self.model_dump(mode="json")
