"""The TensorRT backend as the pipeline sees it.

compile: the build plan and trtexec line always; the engine only where this host's TensorRT and
GPU are the target's (otherwise `deferred`, never a file that looks like an engine). Implicit
INT8 (a calibrator, e.g. for DLA) builds from the FP32 graph plus the calibration cache; all else
from the Q/DQ graph. validate: a built engine against FP32 on the device; a deferred one leaves
the Q/DQ ONNX judged for accuracy with ONNX Runtime here, latency null with the reason.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from edgeopt.build_dir import LAYOUT
from edgeopt import host
from edgeopt.backends.tensorrt import api as tensorrt_api
from edgeopt.backends.validation import Validation
from edgeopt.hashing import sha256_file
from edgeopt.models.spec import ModelSpec
from edgeopt.results import CompileResult, EngineSummary
from edgeopt.targets import TargetProfile


class TensorRTBackend:
    name = "tensorrt"

    def __init__(self, target: TargetProfile, engine_builder=None, cuda=None, timing_cache_dir: Path | None = None):
        self.target = target
        self.engine_builder = engine_builder  # None: the real TensorRT, when installed (the seam tests replace)
        self.cuda = cuda  # None: the real CUDA runtime
        self.timing_cache_dir = timing_cache_dir

    def compile_source(self, fp32: Path, int8: Path | None) -> Path:
        implicit = self.target.build.precision == "int8" and self.target.build.int8_mode == "implicit"
        return fp32 if implicit or int8 is None else int8

    def _builder_identity(self) -> dict | None:
        """Which TensorRT would build here: part of the compile key, so a plan deferred on a
        workstation is never served where an engine can be built."""
        builder = self.engine_builder
        if builder is None:
            if not tensorrt_api.available():
                return None
            from edgeopt.backends.tensorrt.builder import EngineBuilder

            builder = EngineBuilder()
        try:
            return {"tensorrt": builder.version(), "compute_capability": builder.device().compute_capability}
        except Exception as exc:  # TensorRT without a usable GPU: the build defers and says why
            return {"unusable": type(exc).__name__}

    def compile_params(self) -> dict:
        return {"target": self.target.sha256(), "builder": self._builder_identity()}

    def compile(self, onnx: Path, spec: ModelSpec, folder: Path, *, calibration_cache: Path | None = None,
                sparsity: bool | None = None) -> CompileResult:
        from edgeopt.backends.tensorrt.builder import compile_tensorrt

        result = compile_tensorrt(onnx, self.target, spec.inputs, folder, calibration_cache=calibration_cache,
                                  sparsity=sparsity, timing_cache_dir=self.timing_cache_dir, builder=self.engine_builder)
        engine = result.engine_path.name if result.status == "built" and result.engine_path else None
        summary = EngineSummary(status=result.status, reason=result.reason, plan=result.plan_path.name,
                                trtexec=result.trtexec, trtexec_timing=result.trtexec_timing, engine=engine,
                                metadata=result.engine_metadata, notes=list(result.notes))
        return CompileResult(backend="tensorrt", deployable=engine, engine=summary)

    def validation(self, artifacts: dict, compiled: CompileResult, fp32: Path, int8: Path | None) -> Validation:
        """`artifacts`: the compile stage's files (name -> build_dir.Artifact)."""
        if compiled.engine.status == "built":
            return self._engine_validation(artifacts, compiled, fp32)
        candidate = int8 or fp32
        _, note = host.stands_for(self.target)
        threads = host.default_threads(self.target)

        def run(data, spec, seconds, _stage_folder):
            from edgeopt.backends.onnxruntime.validate import validate

            return validate(fp32, candidate, data, spec.task, latency_on_host=False, threads=threads,
                            latency_seconds=seconds, latency_note=note, spec=spec)

        precision = self.target.build.precision
        notes = () if precision == "int8" else (
            f"{precision}: the metrics compare the FP32 ONNX on this CPU; the {precision} engine is validated on "
            "the device (run_on_device.py, or edgeopt engine build --eval)",)
        return Validation(params={"engine": "deferred", "threads": threads},
                          inputs={"candidate": sha256_file(candidate)}, run=run, notes=notes)

    def _engine_validation(self, artifacts: dict, compiled: CompileResult, fp32: Path) -> Validation:
        """`edgeopt build` on the device built the engine: validate the engine, not the INT8 ONNX.
        Its latency, timed as trtexec does, goes under int8; fp32 latency stays null (ONNX Runtime
        runs the FP32 reference on the CPU here, not on the GPU)."""
        metadata = compiled.engine.metadata or {}
        trt = self.engine_builder.trt if self.engine_builder is not None else None

        def run(data, spec, seconds, _stage_folder):
            # The engine and its metadata arrive as artifacts: read from a private view of them (hard
            # links where the file system allows), never from the compile stage's cache folder.
            from edgeopt.backends.tensorrt.validate import validate_engine

            with tempfile.TemporaryDirectory(prefix="edgeopt-engine-") as view:
                for name, artifact in artifacts.items():
                    _link_or_copy(artifact.path, Path(view) / name)
                return validate_engine(Path(view), fp32, data, spec.task, self.target, duration_s=seconds, spec=spec,
                                       trt=trt, cuda=self.cuda).as_validate_result()

        params = {"gpu": metadata.get("gpu_name"), "tensorrt": metadata.get("tensorrt_version")}
        return Validation(params=params, inputs={"engine": metadata.get("engine_sha256")}, run=run,
                          reads=(compiled.engine.engine,))


def _link_or_copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        shutil.copyfile(source, destination)


def package_files(build_dir: Path, manifest) -> list[tuple[str, str]]:
    """(name, role) of the files a TensorRT package ships (`manifest`: build_dir.Manifest): the plan,
    the ONNX it builds from, the calibration cache and a built engine. Not the FP32 ONNX (unless the
    engine builds from it): the device runner judges against FP32 outputs recorded here
    (eval_fp32_outputs.npz), and MiniLM's FP32 weights were 91 MB of a 145 MB package (issue 21)."""
    from edgeopt.backends.tensorrt.builder import read_plan
    from edgeopt.build_dir import verify_artifact

    plan = read_plan(verify_artifact(build_dir, manifest.document(), LAYOUT.tensorrt_plan))
    files = [(LAYOUT.tensorrt_plan, "TensorRT build plan (builder settings, trtexec line)"),
             (plan.onnx, "ONNX the engine is built from")]
    if plan.calibration_cache or (build_dir / LAYOUT.tensorrt_calibration_cache).is_file():
        files.append((plan.calibration_cache or LAYOUT.tensorrt_calibration_cache, "TensorRT calibration cache"))
    if manifest.engine.get("status") == "built" and manifest.engine.get("engine"):
        files += [(manifest.engine["engine"], "TensorRT engine"),
                  (LAYOUT.tensorrt_engine_json, "engine metadata (TensorRT version, GPU)")]
    return files
