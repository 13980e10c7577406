"""`edgeopt build` as a library call: the ordered list of stages and the cache loop.

Each stage is an object (stages/*.py) that declares its name, its parameters, the identity of
what it reads (`inputs()`: content hashes) and the files it writes, and whose `run(folder)`
returns a typed result holding only names relative to that folder. The pipeline owns ordering,
caching, timing and progress; it names no backend (backends.backend_for picks the facade) and
no artifact file (build_dir.LAYOUT does). assemble.py writes the build directory and the result.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol

from pydantic import BaseModel, ConfigDict, Field

from edgeopt import host, targets
from edgeopt.backends import backend_for
from edgeopt.build_dir import LAYOUT, check_output_locations
from edgeopt.cache import CacheEntry, StageCache, cache_key
from edgeopt.contained import contained
from edgeopt.data import ReaderOptions
from edgeopt.data.build_data import load_build_data
from edgeopt.errors import BadInput
from edgeopt.metrics.fidelity import ValidateResult
from edgeopt.models.lazy import LazyModel, huggingface_input, pruned_source
from edgeopt.models.source import resolve_source
from edgeopt.report import gates as gate_rules
from edgeopt.resources import shipped
from edgeopt.results import BuildResult, CompileResult
from edgeopt.stages import load as load_stage
from edgeopt.stages import prune as prune_stage

Progress = Callable[[str, str, dict], None]  # (event, stage, details); events: start, done


class BuildOptions(BaseModel):
    """Everything `edgeopt build` needs; the CLI fills it from its options."""

    model_config = ConfigDict(frozen=True)

    model: str | None = Field(None, description="model reference; none: the bundled example")
    target: str = Field("cpu", description="profile name or alias; cpu = this host")
    calib: Path | None = Field(None, description="calibration data")
    eval: Path | None = Field(None, description="evaluation data (labels optional)")
    out: Path | None = Field(None, description="build directory; default build/<model>/<target>[-variant]")
    targets_dir: Path | None = None
    cache_dir: Path | None = None
    use_cache: bool = True
    input_shapes: tuple[str, ...] = ()
    calib_samples: int = Field(256, ge=1)
    calib_method: str = "minmax"
    reader: ReaderOptions = Field(default_factory=ReaderOptions, description="how raw data files become inputs")
    max_accuracy_drop: float | None = None
    latency_seconds: float = Field(2.0, gt=0)
    prune: str | None = Field(None, description="channel ratio (0.5), '2:4', or 'none'; unset: the target's build.prune")
    prune_importance: str = Field("magnitude", description="channel ranking: magnitude, bn or taylor")
    prune_ignore: tuple[str, ...] = Field((), description="module names pruning leaves untouched")
    finetune_data: Path | None = Field(None, description="data for the recovery distillation after pruning")
    finetune_steps: int = Field(0, ge=0, description="recovery distillation steps")
    seed: int = 0
    task: str | None = Field(None, description="Hugging Face models: classification, embedding, regression or text-generation; none: from config.json")
    seq_len: int | None = Field(None, ge=1, description="texts: tokens per sample; none: the target's build.seq_len.opt")
    trust_remote_code: bool = Field(False, description="Hugging Face models: allow the folder's own Python code")
    precision: str = Field("int8", description="int8, fp16 or fp32: overrides the target profile's build.precision")
    metric: str | None = Field(None, description="path/to/metric.py:function, higher is better: drives the gate and the fallback")
    trust_pickle: bool = Field(False, description=".pt2 models: allow pickled parts (runs code in the file)")
    force: bool = Field(False, description="--out may replace a folder that is not an edgeopt build")


class Stage(Protocol):
    """What the pipeline needs of a stage (see stages/*.py)."""

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]

    def params(self) -> dict: ...
    def inputs(self) -> dict: ...
    def run(self, folder: Path) -> BaseModel: ...


class StageRecord(BaseModel):
    name: str
    seconds: float
    cached: bool
    key: str
    params: dict
    inputs: dict
    outputs: dict
    result: dict


class NotCached(Exception):
    """A dry run reached a stage the cache cannot serve: everything after it would run."""


class Pipeline:
    def __init__(self, options: BuildOptions, progress: Progress | None = None, *, backend_options: dict | None = None,
                 dry_run: bool = False):
        self.options = options
        self.progress = progress or (lambda event, stage, details: None)
        self.cache = StageCache(options.cache_dir, enabled=options.use_cache)
        # edgeopt itself is a library whose code shapes every artifact: its version and source are in every key
        self.libraries = {**host.library_versions(), "edgeopt": host.edgeopt_fingerprint()}
        self.backend_options = backend_options or {}  # the seams tests replace (a fake device builder and runtime)
        self.dry_run = dry_run
        self.records: list[StageRecord] = []
        self.entries: dict[str, CacheEntry] = {}

    def run_stage(self, stage: Stage) -> CacheEntry:
        key = cache_key(stage.name, stage.params(), stage.inputs(), self.libraries)
        self.progress("start", stage.name, {})
        started = time.perf_counter()
        entry = self.cache.lookup(stage.name, key)
        if entry is None and self.dry_run:
            self.records.append(StageRecord(name=stage.name, seconds=0, cached=False, key=key, params=stage.params(),
                                            inputs=stage.inputs(), outputs={}, result={}))
            raise NotCached(stage.name)
        cached = entry is not None
        if entry is None:
            entry = self.cache.run_and_store(stage.name, key, lambda folder: stage.run(folder).model_dump(mode="json"))
        record = StageRecord(name=stage.name, seconds=round(time.perf_counter() - started, 3), cached=cached, key=key,
                             params=stage.params(), inputs=stage.inputs(), outputs=entry.files, result=entry.result)
        self.records.append(record)
        self.entries[stage.name] = entry
        self.progress("done", stage.name, record.model_dump())
        return entry

    def run(self) -> BuildResult | None:
        try:
            with contained():
                return self._run()
        finally:
            self.cache.cleanup()  # --no-cache leaves nothing in the temp directory

    def _run(self) -> BuildResult | None:
        from edgeopt.assemble import write_build
        from edgeopt.backends import export_opset
        from edgeopt.stages.export import ExportStage
        from edgeopt.stages.quantize import QuantizeConfig, QuantizeStage
        from edgeopt.stages.validate import ValidateStage
        from edgeopt.stages.precision import Fp16Stage, apply_precision, needs_fp16_onnx
        from edgeopt.stages.validate import judging_fields
        from edgeopt.models.spec import with_overrides

        o = self.options
        # --- issue 18 dispatch point: decoder-only LLMs take their own stages (llm_build.py) ---
        from edgeopt.models.causal_lm import is_causal_lm

        if is_causal_lm(o.model, o.task):
            from edgeopt import llm_build

            return None if self.dry_run else llm_build.build(o, self.progress)
        # --- end of the issue 18 dispatch point ---
        target = apply_precision(targets.resolve(o.target, o.targets_dir), o.precision)
        gates = gate_rules.effective(target.gates, o.max_accuracy_drop)
        prune_request = prune_stage.parse_prune(o.prune, target)  # refuses 2:4 before any work
        source = resolve_source(o.model, o.input_shapes)
        from edgeopt.assemble import default_out

        check_output_locations(o.out or default_out(o, source.name, target.name),
                               self.cache.root if o.use_cache else None, o.force)  # before any work
        hf = huggingface_input(source, trust_remote_code=o.trust_remote_code, task=o.task,
                               seq_len=o.seq_len or o.reader.seq_len, profile_seq_len=target.build.seq_len.opt)
        reader = o.reader if hf is None else o.reader.model_copy(update={
            "tokenizer": hf.layout.model_dir, "seq_len": hf.seq_len, "trust_remote_code": o.trust_remote_code})
        model = LazyModel(source, hf, o.trust_remote_code, o.trust_pickle)
        calib_path, eval_path = self._data_paths()
        loaded = load_stage.LoadResult.model_validate(self.run_stage(load_stage.LoadStage(source, model, o.input_shapes, hf)).result)
        spec = with_overrides(loaded.spec, None if hf else o.task, o.metric)
        data = load_build_data(calib_path, eval_path, spec, reader, o.calib_samples, o.seed)
        warnings = list(data.warnings) + spec.notes  # shape decisions (a static program's own batch)

        exported_source, exported_model = source, model
        if prune_request and source.kind not in prune_stage.PRUNABLE_SOURCES:
            warnings.append(f"pruning skipped: the model is {source.kind}, with no torch layers to prune "
                            "(pruning takes a torch module from file.py:factory or module:factory)")
            prune_request = None
        if prune_request:
            from edgeopt.data import load_dataset

            config, finetune, ranking, notes = prune_stage.prune_setup(
                o, target, spec, prune_request, lambda path, what: load_dataset(path, spec, what, reader),
                data.calibration, data.evaluation, gates.max_accuracy_drop)
            entry = self.run_stage(prune_stage.PruneStage(source, model, spec, config, data.evaluation, ranking, finetune))
            warnings += notes + prune_stage.prune_cost_warning(entry.result, gates.max_accuracy_drop, finetune is not None)
            exported_source = pruned_source(source, entry.path(LAYOUT.pruned_model), entry.files[LAYOUT.pruned_model])
            exported_model = LazyModel(exported_source)
        fp32 = self.run_stage(ExportStage(exported_source, exported_model, spec, data.evaluation,
                                          export_opset(target))).path(LAYOUT.fp32_onnx)
        config = QuantizeConfig(method=o.calib_method, max_accuracy_drop=gates.max_accuracy_drop, task=spec.task,
                                threads=host.default_threads(target), latency_seconds=o.latency_seconds,
                                **judging_fields(spec))
        quantized = self.run_stage(QuantizeStage(fp32, data.calib, target, config)) if target.build.precision == "int8" else None
        int8 = quantized.path(LAYOUT.int8_onnx) if quantized else self.run_stage(Fp16Stage(fp32)).path(LAYOUT.fp16_onnx) \
            if needs_fp16_onnx(target) else None
        backend = backend_for(target, cache_root=self.cache.root, **self.backend_options)
        from edgeopt.stages.compile import CompileStage

        sparsity = True if prune_request and prune_request[0] == "2:4" else None  # None: the profile's build.sparsity
        compiled_entry = self.run_stage(CompileStage(backend, fp32, int8, spec, sparsity=sparsity,
                                                     calibration_cache=quantized.path(LAYOUT.tensorrt_calibration_cache) if quantized else None))
        compiled = CompileResult.model_validate(compiled_entry.result)
        validation = backend.validation(compiled_entry.folder, compiled, fp32, int8)
        warnings += validation.notes
        metrics = ValidateResult.model_validate(
            self.run_stage(ValidateStage(validation, fp32, data.evaluation, spec, o.latency_seconds)).result)
        if prune_request:
            self.run_stage(prune_stage.UnprunedStage(source, model, spec, fp32, data.evaluation, target, o.latency_seconds))
        gate_results = gate_rules.evaluate(metrics, gates)
        if self.dry_run:
            return None
        return write_build(self, source, loaded, target, compiled, metrics, gate_results, warnings, data.uses())

    def _data_paths(self) -> tuple[Path, Path | None]:
        options = self.options
        if options.model is None and options.calib is None:
            return shipped("calibration/digits_calib.npz"), options.eval or shipped("calibration/digits_eval.npz")
        if options.calib is None:
            raise BadInput("--calib is required for INT8 calibration (a .npz with one array per model input, or .txt/.jsonl texts)")
        return options.calib, options.eval


def build(options: BuildOptions, progress: Progress | None = None) -> dict:
    """Run `edgeopt build`; returns the document DESIGN.md defines for `--json`."""
    return Pipeline(options, progress).run().to_json()


def dry_run(options: BuildOptions) -> list[dict]:
    """The stages a build would run, each with its cache key and whether the cache serves it.
    Stops computing keys at the first stage the cache cannot serve: later keys depend on its output."""
    pipeline = Pipeline(options, dry_run=True)
    try:
        pipeline.run()
    except NotCached:
        pass
    return [{"name": r.name, "key": r.key, "cached": r.cached} for r in pipeline.records]
