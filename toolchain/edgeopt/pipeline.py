"""`edgeopt build` as a library call: the checks before any work and the cache loop.

Each stage is an object (stages/*.py) that declares its name, its parameters, the identity of
what it reads (`inputs()`: content hashes) and the files it writes, and whose `run(folder)`
returns a typed result holding only names relative to that folder. steps.py declares the stages
in order (small factories over the run record) and wires one stage's artifacts into the next;
the pipeline owns the loop, caching, timing and progress. It names no backend
(backends.backend_for picks the facade) and no artifact file; assemble.py writes the build
directory and the result from the run record. Decoder-only LLMs branch off once, to llm_build.py.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Protocol

from pydantic import BaseModel, ConfigDict, Field

from edgeopt import host, llm_build, targets
from edgeopt.assemble import default_out, write_build
from edgeopt.backends import backend_for
from edgeopt.output_dir import check_output_locations
from edgeopt.cache import CacheEntry, StageCache, cache_key
from edgeopt.contained import contained
from edgeopt.data import ReaderOptions
from edgeopt.data.build_data import load_build_data
from edgeopt.errors import BadInput, ToolFailed
from edgeopt.models.causal_lm import is_causal_lm
from edgeopt.models.lazy import LazyModel, huggingface_input
from edgeopt.models.source import resolve_source
from edgeopt.models.spec import with_overrides
from edgeopt.progress import reporting
from edgeopt.report import gates as gate_rules
from edgeopt.resources import shipped
from edgeopt.results import BuildResult
from edgeopt.stages import prune as prune_stage
from edgeopt.stages.precision import apply_precision
from edgeopt.steps import LOAD, STEPS, BuildRun, StageOutput, Step

Progress = Callable[[str, str, dict], None]  # (event, stage, details); events: start, step (progress.py), done


class BuildOptions(BaseModel):
    """Everything `edgeopt build` needs; the CLI fills it from its options."""

    model_config = ConfigDict(frozen=True)

    model: str | None = Field(None, description="model reference; none: the bundled example")
    target: str = Field("cpu", description="profile name or alias; cpu = this host")
    calib: Path | None = Field(None, description="calibration data")
    extra_calib: tuple[Path, ...] = Field((), description="more calibration sources (--calib repeated, e.g. field samples): "
                                          "a deterministic sample of at most a quarter of the calibration set (data/build_data.py)")
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
        params, inputs = stage.params(), stage.inputs()  # once: inputs() may hash files
        key = cache_key(stage.name, params, inputs, self.libraries)
        self.progress("start", stage.name, {})
        started = time.perf_counter()
        entry = self.cache.lookup(stage.name, key)
        if entry is None and self.dry_run:
            self.records.append(StageRecord(name=stage.name, seconds=0, cached=False, key=key, params=params,
                                            inputs=inputs, outputs={}, result={}))
            raise NotCached(stage.name)
        cached = entry is not None
        if entry is None:
            with reporting(lambda done, total, label: self.progress("step", stage.name,
                                                                             {"done": done, "total": total, "label": label})):
                entry = self.cache.run_and_store(stage.name, key, lambda folder: stage.run(folder).model_dump(mode="json"))
        record = StageRecord(name=stage.name, seconds=round(time.perf_counter() - started, 3), cached=cached, key=key,
                             params=params, inputs=inputs, outputs=entry.files, result=entry.result)
        self.records.append(record)
        self.entries[stage.name] = entry
        self.progress("done", stage.name, record.model_dump())
        return entry

    def run(self) -> BuildResult | None:
        try:
            with contained():
                return self._run()
        except FileNotFoundError as exc:  # a cache entry removed under a running build (`edgeopt cache clear`)
            if exc.filename and Path(exc.filename).resolve().is_relative_to(self.cache.root.resolve()):
                raise ToolFailed(f"{exc.filename}: removed from the cache while this build used it "
                                 "(edgeopt cache clear during a build?); run the build again") from None
            raise
        finally:
            self.cache.cleanup()  # --no-cache leaves nothing in the temp directory

    def _run(self) -> BuildResult | None:
        o = self.options
        if is_causal_lm(o.model, o.task):  # the one dispatch point (issue 18): decoder-only LLMs, llm_build.py
            return None if self.dry_run else llm_build.build(o, self.progress)
        run = self._start()
        self._step(run, LOAD)
        run.spec = with_overrides(run.loaded.spec, None if run.hf else o.task, o.metric)
        run.data = load_build_data(*run.data_paths, run.spec, run.reader, o.calib_samples, o.seed, extra=o.extra_calib)
        run.warnings += list(run.data.warnings) + run.spec.notes  # shape decisions (a static program's own batch)
        for step in STEPS:
            self._step(run, step)
        gate_results = gate_rules.evaluate(run.metrics, run.gates)
        return None if self.dry_run else write_build(run, gate_results)

    def _start(self) -> BuildRun:
        """Everything checked before any work: the target, pruning, the model and the output folder."""
        o = self.options
        target = apply_precision(targets.resolve(o.target, o.targets_dir), o.precision)
        prune_request = prune_stage.parse_prune(o.prune, target)  # refuses 2:4 before any work
        source = resolve_source(o.model, o.input_shapes)
        out = o.out or default_out(o, source.name, target.name)
        check_output_locations(out, self.cache.root if o.use_cache else None, o.force)
        hf = huggingface_input(source, trust_remote_code=o.trust_remote_code, task=o.task,
                               seq_len=o.seq_len or o.reader.seq_len, profile_seq_len=target.build.seq_len.opt)
        reader = o.reader if hf is None else o.reader.model_copy(update={
            "tokenizer": hf.layout.model_dir, "seq_len": hf.seq_len, "trust_remote_code": o.trust_remote_code})
        data_paths = self._data_paths()  # before the load stage: --calib is refused before any work
        warnings = []
        if prune_request and source.kind not in prune_stage.PRUNABLE_SOURCES:
            warnings.append(f"pruning skipped: the model is {source.kind}, with no torch layers to prune "
                            "(pruning takes a torch module from file.py:factory or module:factory)")
            prune_request = None
        return BuildRun(options=o, out=out, source=source, model=LazyModel(source, hf, o.trust_remote_code, o.trust_pickle),
                        hf=hf, reader=reader, data_paths=data_paths, target=target, prune_request=prune_request, warnings=warnings,
                        gates=gate_rules.effective(target.gates, o.max_accuracy_drop), records=self.records,
                        make_backend=lambda: backend_for(target, cache_root=self.cache.root, **self.backend_options))

    def _step(self, run: BuildRun, step: Step) -> None:
        stage = step.make(run)
        if stage is not None:
            output = StageOutput(self.run_stage(stage), tuple(getattr(stage, "writes", ())))
            run.outputs[stage.name] = output
            step.keep(run, output)

    def _data_paths(self) -> tuple[Path, Path | None]:
        options = self.options
        if options.model is None and options.calib is None:
            return shipped("calibration/digits_calib.npz"), options.eval or shipped("calibration/digits_eval.npz")
        if options.calib is None:
            raise BadInput("--calib is required for INT8 calibration (a .npz with one array per model input, or .txt/.jsonl texts)")
        return options.calib, options.eval


def dry_run(options: BuildOptions) -> list[dict]:
    """The stages a build would run, each with its cache key and whether the cache serves it.
    Stops computing keys at the first stage the cache cannot serve: later keys depend on its output."""
    pipeline = Pipeline(options, dry_run=True)
    try:
        pipeline.run()
    except NotCached:
        pass
    return [{"name": r.name, "key": r.key, "cached": r.cached} for r in pipeline.records]
