"""The ONNX Runtime backend as the pipeline sees it: compile = an offline-optimized model plus
session settings; validate = that model against FP32 on this CPU, timed only when this host
stands for the target (host.stands_for)."""

from __future__ import annotations

from pathlib import Path

from edgeopt.build_dir import LAYOUT
from edgeopt import host
from edgeopt.backends.validation import Validation
from edgeopt.models.spec import ModelSpec
from edgeopt.results import CompileResult, EngineSummary
from edgeopt.targets import TargetProfile


class OnnxRuntimeBackend:
    name = "onnxruntime"

    def __init__(self, target: TargetProfile):
        self.target = target

    def compile_source(self, fp32: Path, int8: Path | None) -> Path:
        return int8 or fp32

    def compile_params(self) -> dict:
        return {"target": self.target.sha256()}

    def compile(self, onnx: Path, spec: ModelSpec, folder: Path, **_: object) -> CompileResult:
        from edgeopt.backends.onnxruntime.compile import compile_onnxruntime

        result = compile_onnxruntime(onnx, self.target, folder)
        return CompileResult(backend="onnxruntime", deployable=result.deployable,
                             engine=EngineSummary(status="not_applicable"), settings=result.session_settings)

    def validation(self, artifacts: dict, compiled: CompileResult, fp32: Path, int8: Path | None) -> Validation:
        """`artifacts`: the compile stage's files (name -> build_dir.Artifact); the deployable is judged."""
        deployable = artifacts[compiled.deployable]
        candidate = deployable.path
        measure, note = host.stands_for(self.target)
        threads = host.default_threads(self.target)
        batch = self.target.build.batch.opt  # the deployed batch: dynamic INT8's scales depend on it

        def run(data, spec, seconds, folder):
            from edgeopt.backends.onnxruntime.validate import validate

            return validate(fp32, candidate, data, spec.task, latency_on_host=measure, threads=threads,
                            latency_seconds=seconds, latency_note=note, spec=spec, folder=folder, batch=batch)

        params = {"latency_on_host": measure, "threads": threads, "batch": batch, "host": host.host_info() if measure else None}
        return Validation(params=params, inputs={"candidate": deployable.sha256}, run=run,
                          reads=(compiled.deployable,))


def package_files(build_dir: Path, manifest) -> list[tuple[str, str]]:
    """(name, role) of the files an ONNX Runtime package ships (`manifest`: build_dir.Manifest)."""
    return [(manifest.deployable or LAYOUT.ort_deployable, "ONNX Runtime model (deploy this)"),
            (LAYOUT.ort_session, "ONNX Runtime session settings")]
