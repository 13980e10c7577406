"""The stages of `edgeopt build`, declared in order: each step is a small factory that reads the
run so far (`BuildRun`) and returns the stage to run (or None: skipped), and a `keep` that
records what the stage produced as typed artifacts (build_dir.Artifact: path + sha256). The
pipeline (pipeline.py) only loops over STEPS; this module is the one place that wires one
stage's outputs into the next one's inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from edgeopt import host
from edgeopt.build_dir import LAYOUT, Artifact
from edgeopt.cache import CacheEntry
from edgeopt.metrics.fidelity import ValidateResult
from edgeopt.models.lazy import LazyModel, pruned_source
from edgeopt.results import CompileResult
from edgeopt.stages import load as load_stage
from edgeopt.stages import prune as prune_stage
from edgeopt.stages.compile import CompileStage
from edgeopt.stages.precision import Fp16Stage, needs_fp16_onnx
from edgeopt.stages.validate import ValidateStage, judging_fields


@dataclass(frozen=True)
class StageOutput:
    """What one stage left: its result document and its files as artifacts."""

    entry: CacheEntry
    writes: tuple[str, ...]

    @property
    def result(self) -> dict:
        return self.entry.result

    @property
    def artifacts(self) -> dict[str, Artifact]:
        return {name: Artifact(self.entry.path(name), digest) for name, digest in self.entry.files.items()}

    def artifact(self, name: str) -> Artifact | None:
        return self.artifacts.get(name)

    @property
    def main(self) -> Artifact | None:
        """The stage's first declared output (export: the FP32 ONNX, quantize: the INT8 ONNX, ...)."""
        return self.artifact(self.writes[0]) if self.writes else None


@dataclass
class BuildRun:
    """The run record: everything decided and produced so far. assemble.write_build reads it."""

    options: Any  # pipeline.BuildOptions: read here and in pipeline.py only, never by a stage
    out: Path
    source: Any
    model: LazyModel
    hf: Any
    reader: Any
    data_paths: tuple  # (calibration, evaluation or None)
    target: Any
    gates: Any
    prune_request: tuple | None
    make_backend: Callable[[], Any] | None = None
    backend: Any = None
    prune_recovered: bool = False
    loaded: load_stage.LoadResult | None = None
    spec: Any = None
    data: Any = None
    warnings: list[str] = field(default_factory=list)
    exported_source: Any = None
    exported_model: Any = None
    fp32: Artifact | None = None
    int8: Artifact | None = None
    calibration_cache: Artifact | None = None
    compiled: CompileResult | None = None
    metrics: ValidateResult | None = None
    outputs: dict[str, StageOutput] = field(default_factory=dict)  # by stage name
    records: list = field(default_factory=list)  # pipeline.StageRecord, in order

    @property
    def entries(self) -> dict[str, CacheEntry]:
        return {name: output.entry for name, output in self.outputs.items()}


@dataclass(frozen=True)
class Step:
    name: str
    make: Callable[[BuildRun], Any]  # -> a stage, or None when this build skips it
    keep: Callable[[BuildRun, StageOutput], None] = lambda run, output: None


def _load(run: BuildRun):
    return load_stage.LoadStage(run.source, run.model, run.options.input_shapes, run.hf)


def _keep_load(run: BuildRun, output: StageOutput) -> None:
    run.loaded = load_stage.LoadResult.model_validate(output.result)


def _prune(run: BuildRun):
    if not run.prune_request:
        return None
    from edgeopt.data import load_dataset  # the data readers, only when a build prunes

    o, spec = run.options, run.spec
    config, finetune, ranking, notes = prune_stage.prune_setup(
        run.prune_request, run.target, lambda path, what: load_dataset(path, spec, what, run.reader),
        run.data.calibration, run.data.evaluation, importance=o.prune_importance, ignore=o.prune_ignore,
        seed=o.seed, finetune_data=o.finetune_data, finetune_steps=o.finetune_steps)
    run.warnings += notes
    run.prune_recovered = finetune is not None
    return prune_stage.PruneStage(run.source, run.model, spec, config, run.data.evaluation, ranking, finetune)


def _keep_prune(run: BuildRun, output: StageOutput) -> None:
    run.warnings += prune_stage.prune_cost_warning(output.result, run.gates.max_accuracy_drop, run.prune_recovered)
    pruned = output.main
    run.exported_source = pruned_source(run.source, pruned.path, pruned.sha256)
    run.exported_model = LazyModel(run.exported_source)


def _export(run: BuildRun):
    from edgeopt.backends import export_opset
    from edgeopt.stages.export import ExportStage  # onnx, onnxruntime: only when a stage must run

    return ExportStage(run.exported_source or run.source, run.exported_model or run.model, run.spec,
                       run.data.evaluation, export_opset(run.target))


def _keep_fp32(run: BuildRun, output: StageOutput) -> None:
    run.fp32 = output.main


def _quantize(run: BuildRun):
    if run.target.build.precision != "int8":
        return Fp16Stage(run.fp32) if needs_fp16_onnx(run.target) else None
    from edgeopt.stages.quantize import QuantizeConfig, QuantizeStage  # onnx, onnxruntime

    o = run.options
    config = QuantizeConfig(method=o.calib_method, max_accuracy_drop=run.gates.max_accuracy_drop, task=run.spec.task,
                            threads=host.default_threads(run.target), latency_seconds=o.latency_seconds,
                            **judging_fields(run.spec))
    return QuantizeStage(run.fp32.path, run.data.calib, run.target, config)


def _keep_quantized(run: BuildRun, output: StageOutput) -> None:
    run.int8 = output.main  # the INT8 ONNX, or the FP16 one TensorRT builds FP16 from
    run.calibration_cache = output.artifact(LAYOUT.tensorrt_calibration_cache)


def _calib_stats(run: BuildRun):
    if run.int8 is None or run.target.build.precision != "int8":
        return None
    from edgeopt.field.calib_stats import CalibStatsStage  # onnx, onnxruntime: only when a stage must run

    return CalibStatsStage(run.int8, run.data.calib, run.fp32)  # issue 22: the field monitor's ranges and histograms


def _compile(run: BuildRun):
    run.backend = run.make_backend()
    sparsity = True if run.prune_request and run.prune_request[0] == "2:4" else None  # None: the profile's
    return CompileStage(run.backend, run.fp32, run.int8, run.spec, sparsity=sparsity,
                        calibration_cache=run.calibration_cache)


def _keep_compiled(run: BuildRun, output: StageOutput) -> None:
    run.compiled = CompileResult.model_validate(output.result)


def _validate(run: BuildRun):
    validation = run.backend.validation(run.outputs["compile"].artifacts, run.compiled, run.fp32.path,
                                        run.int8.path if run.int8 else None)
    run.warnings += validation.notes
    return ValidateStage(validation, run.fp32, run.data.evaluation, run.spec, run.options.latency_seconds)


def _keep_metrics(run: BuildRun, output: StageOutput) -> None:
    run.metrics = ValidateResult.model_validate(output.result)


def _unpruned(run: BuildRun):
    if not run.prune_request:
        return None
    return prune_stage.UnprunedStage(run.source, run.model, run.spec, run.fp32, run.data.evaluation, run.target,
                                     run.options.latency_seconds)


STEPS: tuple[Step, ...] = (
    Step("prune", _prune, _keep_prune),
    Step("export", _export, _keep_fp32),
    Step("quantize", _quantize, _keep_quantized),  # or fp16, or nothing (fp32 builds)
    Step("calib_stats", _calib_stats),  # INT8 builds only
    Step("compile", _compile, _keep_compiled),
    Step("validate", _validate, _keep_metrics),
    Step("unpruned", _unpruned),
)
LOAD = Step("load", _load, _keep_load)  # first, on its own: the data is read with the spec it finds
