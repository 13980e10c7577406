"""`edgeopt build` as a library call: runs the stages in order with the stage cache, then writes
the build directory (atomically) and returns the result document that `--json` prints.

The pipeline owns ordering, caching, timing and the manifest; each stage is a plain function in
`edgeopt.stages` that writes its outputs into a folder it is given and returns a typed result.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from typing import Callable

from pydantic import BaseModel, ConfigDict, Field

from edgeopt import __version__ as edgeopt_version
from edgeopt import artifacts, targets
from edgeopt.artifacts import sha256_file
from edgeopt.cache import CacheEntry, StageCache, cache_key
from edgeopt.data import ReaderOptions, load_dataset
from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.models.source import ModelSource, resolve_source
from edgeopt.models.spec import ModelSpec
from edgeopt.resources import shipped
from edgeopt.report import gates as gate_rules
from edgeopt.stages.validate import ValidateResult

Progress = Callable[[str, str, dict], None]  # (event, stage, details); events: start, done


class BuildOptions(BaseModel):
    """Everything `edgeopt build` needs; the CLI fills it from its options."""

    model_config = ConfigDict(frozen=True)

    model: str | None = Field(None, description="model reference; none: the bundled example")
    target: str = Field("cpu", description="profile name or alias; cpu = this host")
    calib: Path | None = Field(None, description="calibration data")
    eval: Path | None = Field(None, description="evaluation data (labels optional)")
    out: Path | None = Field(None, description="build directory; default build/<model>/<target>")
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
    task: str | None = Field(None, description="Hugging Face models: classification, embedding or regression; none: from config.json")
    seq_len: int | None = Field(None, ge=1, description="texts: tokens per sample; none: the target's build.seq_len.opt")
    trust_remote_code: bool = Field(False, description="Hugging Face models: allow the folder's own Python code")


class StageRecord(BaseModel):
    name: str
    seconds: float
    cached: bool
    key: str
    params: dict
    inputs: dict
    outputs: dict
    result: dict


class Pipeline:
    def __init__(self, options: BuildOptions, progress: Progress | None = None):
        self.options = options
        self.progress = progress or (lambda event, stage, details: None)
        self.cache = StageCache(options.cache_dir, enabled=options.use_cache)
        # edgeopt itself is a library whose code shapes every artifact: its version is in every key
        self.libraries = {**artifacts.library_versions(), "edgeopt": edgeopt_version}
        self.records: list[StageRecord] = []
        self.entries: dict[str, CacheEntry] = {}
        self._torch_module = None
        self._prune_mode: str | None = None  # "channels" or "2:4" once the prune stage ran
        self._hf = None  # (Layout, seq_len) of a Hugging Face folder, set by _text_reader

    # -- running one stage -------------------------------------------------------------------
    def _stage(self, name: str, params: dict, inputs: dict, work: Callable[[Path], BaseModel | dict]) -> CacheEntry:
        key = cache_key(name, params, inputs, self.libraries)
        self.progress("start", name, {})
        started = time.perf_counter()
        entry = self.cache.lookup(name, key)
        cached = entry is not None
        if entry is None:
            workdir = self.cache.new_workdir(name)
            try:
                result = work(workdir)
            except BaseException:
                shutil.rmtree(workdir, ignore_errors=True)
                raise
            entry = self.cache.store(name, key, workdir, result if isinstance(result, dict) else result.model_dump(mode="json"))
        record = StageRecord(name=name, seconds=round(time.perf_counter() - started, 3), cached=cached, key=key,
                             params=params, inputs=inputs, outputs=entry.files, result=entry.result)
        self.records.append(record)
        self.entries[name] = entry
        self.progress("done", name, record.model_dump())
        return entry

    def _torch(self, source: ModelSource):
        if source.options.get("pruned"):  # the prune stage's .pt2, not the user's model
            from edgeopt.models import torch_loader

            return torch_loader.load_module(source)
        if self._torch_module is None and source.kind == "huggingface":
            from edgeopt.models import huggingface

            self._torch_module = huggingface.load_model(self._hf[0], self.options.trust_remote_code)
        if self._torch_module is None:
            from edgeopt.models import torch_loader

            self._torch_module = torch_loader.load_module(source)
        return self._torch_module

    # -- the stages ----------------------------------------------------------------------------
    def _load(self, source: ModelSource) -> tuple[ModelSpec, int]:
        def work(folder: Path) -> dict:
            if source.kind == "huggingface":
                from edgeopt.models import huggingface, torch_loader

                model = self._torch(source)
                spec = huggingface.model_spec(source, self._hf[0], model, self._hf[1])
                return {"spec": spec.model_dump(mode="json"), "params": torch_loader.count_parameters(model)}
            if source.kind == "onnx":
                from edgeopt.models import onnx_loader

                spec = onnx_loader.model_spec(source)
                params = onnx_loader.count_parameters(onnx_loader.load_checked(source.files[0]))
            else:
                from edgeopt.models import torch_loader

                spec = torch_loader.model_spec(source)
                params = torch_loader.count_parameters(self._torch(source))
            return {"spec": spec.model_dump(mode="json"), "params": params}

        params = {"kind": source.kind, "input_shapes": list(self.options.input_shapes)}
        if self._hf:
            params["huggingface"] = {"task": self._hf[0].task, "seq_len": self._hf[1]}
        entry = self._stage("load", params, {"model": source.sha256}, work)
        return ModelSpec.model_validate(entry.result["spec"]), entry.result["params"]

    def _export(self, source: ModelSource, spec: ModelSpec, check: Dataset) -> Path:
        def work(folder: Path):
            out = folder / "model.fp32.onnx"
            if source.kind == "onnx":
                shutil.copyfile(source.files[0], out)
                return {"exporter": "none (ONNX input)", "max_abs_diff": 0.0}
            if source.kind == "huggingface":
                from edgeopt.stages.export_huggingface import export_huggingface

                return export_huggingface(self._torch(source), spec, out, check)
            from edgeopt.stages.export import export_onnx

            return export_onnx(self._torch(source), spec, out, check)

        entry = self._stage("export", {"spec": spec.model_dump(mode="json")},
                            {"model": source.sha256, "check_data": check.sha256}, work)
        return entry.path("model.fp32.onnx")

    def _quantize(self, fp32: Path, calib: Dataset, evaluation: Dataset, spec: ModelSpec,
                  target: targets.TargetProfile) -> Path:
        """The evaluation data goes in too: the stage judges its candidates and the accuracy-aware
        fallback against the same budget the gate applies."""
        from edgeopt.stages.quantize import QuantizeConfig, is_host_target

        budget = target.gates.max_accuracy_drop if self.options.max_accuracy_drop is None else self.options.max_accuracy_drop
        config = QuantizeConfig(method=self.options.calib_method, max_accuracy_drop=budget, task=spec.task,
                                threads=target.build.threads or artifacts.host_info()["cpus"] or 1)

        def work(folder: Path):
            from edgeopt.stages.quantize import quantize

            return quantize(fp32, calib, target, folder, evaluation=evaluation, config=config)

        params = {"config": config.model_dump(mode="json"), "target": target.sha256(),
                  "timed_on_host": artifacts.host_info() if is_host_target(target) else None}
        entry = self._stage("quantize", params, {"onnx_fp32": sha256_file(fp32), "calib": calib.sha256,
                                                 "eval": evaluation.sha256}, work)
        return entry.path("model.int8.onnx")

    def _compile(self, int8: Path, fp32: Path, spec: ModelSpec, target: targets.TargetProfile) -> CacheEntry:
        # Implicit INT8 (a TensorRT calibrator, e.g. for DLA) builds from the FP32 graph and the
        # calibration cache; everything else builds from the Q/DQ graph.
        source = fp32 if target.build.int8_mode == "implicit" and target.backend == "tensorrt" else int8
        calibration_cache = self.entries["quantize"].path("calibration.cache")

        def work(folder: Path):
            if target.backend == "onnxruntime":
                from edgeopt.stages.compile_onnxruntime import compile_onnxruntime

                return compile_onnxruntime(source, target, folder)
            from edgeopt.stages.compile_tensorrt import compile_tensorrt

            return compile_tensorrt(source, target, spec.inputs, folder,
                                    calibration_cache=calibration_cache if calibration_cache.exists() else None,
                                    timing_cache_dir=self.cache.root / "tensorrt", sparsity=sparsity)

        sparsity = True if self._prune_mode == "2:4" else None  # None: the profile's build.sparsity
        inputs = {"onnx": sha256_file(source)}
        if calibration_cache.exists():
            inputs["calibration_cache"] = sha256_file(calibration_cache)
        params = {"target": target.sha256(), **({"sparsity": True} if sparsity else {})}
        return self._stage("compile", params, inputs, work)

    def _validate(self, fp32: Path, candidate: Path, data: Dataset, spec: ModelSpec,
                  target: targets.TargetProfile) -> ValidateResult:
        compiled = self.entries.get("compile")
        if target.backend == "tensorrt" and compiled is not None and compiled.result.get("status") == "built":
            return self._validate_engine(fp32, compiled, data, spec, target)
        host = artifacts.host_info()
        same_arch = target.backend == "onnxruntime" and target.device.arch == host["machine"]
        note = None if same_arch else (
            "latency not measured: the target is a GPU; time the engine on the device"
            if target.backend == "tensorrt" else f"latency not measured: the target is {target.device.arch}, this host is {host['machine']}")
        threads = target.build.threads or host["cpus"] or 1

        def work(folder: Path):
            from edgeopt.stages.validate import validate

            return validate(fp32, candidate, data, spec.task, latency_on_host=same_arch, threads=threads,
                            latency_seconds=self.options.latency_seconds, latency_note=note)

        params = {"task": spec.task, "latency_on_host": same_arch, "threads": threads,
                  "seconds": self.options.latency_seconds, "host": host if same_arch else None}
        entry = self._stage("validate", params, {"onnx_fp32": sha256_file(fp32), "candidate": sha256_file(candidate),
                                                 "eval": data.sha256}, work)
        return ValidateResult.model_validate(entry.result)

    def _validate_engine(self, fp32: Path, compiled: CacheEntry, data: Dataset, spec: ModelSpec,
                         target: targets.TargetProfile) -> ValidateResult:
        """`edgeopt build` on the device built the engine: validate the engine, not the INT8 ONNX.
        Latency: the engine's, timed as trtexec does, goes under int8; fp32 latency stays null
        (ORT here runs the FP32 ONNX on the CPU, not the GPU, and no FP32 engine is built)."""
        metadata = compiled.result.get("engine_metadata") or {}
        engine_folder = compiled.path(metadata.get("engine", "model.engine")).parent

        def work(folder: Path):
            from edgeopt.stages.validate_engine import validate_engine

            return validate_engine(engine_folder, fp32, data, spec.task, target,
                                   duration_s=self.options.latency_seconds).as_validate_result()

        params = {"task": spec.task, "seconds": self.options.latency_seconds, "gpu": metadata.get("gpu_name"),
                  "tensorrt": metadata.get("tensorrt_version")}
        entry = self._stage("validate", params, {"onnx_fp32": sha256_file(fp32), "eval": data.sha256,
                                                 "engine": metadata.get("engine_sha256")}, work)
        return ValidateResult.model_validate(entry.result)

    def _prune(self, source: ModelSource, spec: ModelSpec, target: targets.TargetProfile, request: tuple,
               calib: Dataset, evaluation: Dataset, reader, warnings: list) -> ModelSource:
        """The prune stage; returns its `.pt2` as the model the export stage takes."""
        from edgeopt.stages.prune_config import DEFAULT_FINETUNE_STEPS, PRUNED_FILE, PruneConfig

        options = self.options
        steps = options.finetune_steps or (DEFAULT_FINETUNE_STEPS if options.finetune_data else 0)
        if steps and not options.finetune_data:
            raise BadInput("--finetune-steps needs --finetune-data (the data to distill on)")
        finetune = load_dataset(options.finetune_data, spec, "fine-tune", reader) if options.finetune_data else None
        if finetune is not None and (shared := len(finetune.sample_hashes() & evaluation.sample_hashes())):
            warnings.append(f"{shared} fine-tune samples also appear in the evaluation data: recovered accuracy is optimistic")
        config = PruneConfig(mode=request[0], ratio=request[1], importance=options.prune_importance,
                             channel_multiple=target.build.channel_multiple, ignore=options.prune_ignore,
                             finetune_steps=steps, seed=options.seed)
        ranking = finetune or calib  # Taylor importance needs gradients on real data

        def work(folder: Path):
            from edgeopt.stages.prune import prune

            return prune(self._torch(source), spec, config, folder, eval_data=evaluation, importance_data=ranking,
                         finetune_data=finetune)

        inputs = {"model": source.sha256, "eval": evaluation.sha256, "finetune": finetune.sha256 if finetune else None,
                  "ranking": ranking.sha256 if config.importance == "taylor" else None}
        entry = self._stage("prune", config.model_dump(mode="json"), inputs, work)
        self._prune_mode = config.mode
        before, after = entry.result["before"]["accuracy"], entry.result["after"]["accuracy"]
        budget = target.gates.max_accuracy_drop if options.max_accuracy_drop is None else options.max_accuracy_drop
        if before is not None and after is not None and before - after > budget:
            hint = "" if finetune else "; add --finetune-data DATA to recover it"
            warnings.append(f"pruning cost {(before - after) * 100:.2f} points of FP32 accuracy ({before * 100:.2f}% -> "
                            f"{after * 100:.2f}%), more than the {budget * 100:.2f}-point budget{hint}")
        path = entry.path(PRUNED_FILE)
        return ModelSource("pt2", str(path), source.name, [path], metadata=source.metadata,
                           sha256=entry.files[PRUNED_FILE], options={"pruned": True})

    def _prune_report(self, source: ModelSource, spec: ModelSpec, target: targets.TargetProfile, fp32: Path,
                      evaluation: Dataset) -> CacheEntry:
        """The unpruned model exported and timed beside the pruned FP32 ONNX, where validate times."""
        validated = self.entries["validate"].result
        measure = validated.get("latency_measured_on") is not None
        threads = target.build.threads or artifacts.host_info()["cpus"] or 1

        def work(folder: Path):
            from edgeopt.stages.prune import compare_unpruned

            return compare_unpruned(self._torch(source), spec, fp32, evaluation, folder, threads=threads,
                                    measure_latency=measure, seconds=self.options.latency_seconds,
                                    note=validated.get("latency_note"))

        params = {"threads": threads, "seconds": self.options.latency_seconds,
                  "host": artifacts.host_info() if measure else None}
        return self._stage("unpruned", params, {"model": source.sha256, "pruned_fp32": sha256_file(fp32),
                                                     "eval": evaluation.sha256}, work)

    # -- the whole build ---------------------------------------------------------------------
    def run(self) -> dict:
        options = self.options
        target = targets.resolve(options.target, options.targets_dir)
        from edgeopt.stages.prune_config import PRUNABLE_SOURCES, parse_prune

        prune_request = parse_prune(options.prune, target)  # refuses 2:4 before any work
        source = resolve_source(options.model, options.input_shapes)
        reader = self._text_reader(source, target)
        calib_path, eval_path = self._data_paths()
        spec, params = self._load(source)
        calib_full = load_dataset(calib_path, spec, "calibration", reader)
        calib = calib_full.subset(options.calib_samples, seed=options.seed)
        evaluation = load_dataset(eval_path, spec, "evaluation", reader) if eval_path else calib_full
        warnings = [] if eval_path else ["no --eval data: validated on the calibration data, which flatters INT8"]
        overlap = len(calib.sample_hashes() & evaluation.sample_hashes()) if eval_path else 0
        if overlap:
            warnings.append(f"{overlap} calibration samples also appear in the evaluation data")

        if prune_request and source.kind not in PRUNABLE_SOURCES:
            warnings.append(f"pruning skipped: the model is {source.kind}, with no torch layers to prune "
                            "(pruning takes a torch module from file.py:factory or module:factory)")
            prune_request = None
        model = self._prune(source, spec, target, prune_request, calib_full, evaluation, reader, warnings) \
            if prune_request else source
        fp32 = self._export(model, spec, evaluation)
        int8 = self._quantize(fp32, calib, evaluation, spec, target)
        compiled = self._compile(int8, fp32, spec, target)
        deployable = compiled.path(compiled.result["deployable"]) if target.backend == "onnxruntime" else None
        metrics = self._validate(fp32, deployable or int8, evaluation, spec, target)
        if prune_request:
            self._prune_report(source, spec, target, fp32, evaluation)
        gate_config = target.gates if options.max_accuracy_drop is None else \
            target.gates.model_copy(update={"max_accuracy_drop": options.max_accuracy_drop})
        gates = gate_rules.evaluate(metrics, gate_config)

        build_dir = (options.out or Path("build") / _slug(spec.name) / target.name).resolve()
        return self._write_build(build_dir, source, spec, params, target, metrics, gates, warnings)

    def _text_reader(self, source: ModelSource, target: targets.TargetProfile) -> ReaderOptions:
        """Hugging Face folders: check the folder on every build (cached or not, so remote code never
        slips through a cache hit) and point the text reader at the model's tokenizer."""
        options = self.options
        if source.kind != "huggingface":
            return options.reader
        from edgeopt.models import huggingface

        layout = huggingface.check_folder(source.files[0], options.trust_remote_code, options.task)
        seq_len = huggingface.sequence_length(layout, options.seq_len or options.reader.seq_len, target.build.seq_len.opt)
        self._hf = (layout, seq_len)
        return options.reader.model_copy(update={"tokenizer": layout.model_dir, "seq_len": seq_len,
                                                 "trust_remote_code": options.trust_remote_code})

    def _data_paths(self) -> tuple[Path, Path | None]:
        options = self.options
        if options.model is None and options.calib is None:
            return shipped("calibration/digits_calib.npz"), options.eval or shipped("calibration/digits_eval.npz")
        if options.calib is None:
            raise BadInput("--calib is required for INT8 calibration (a .npz with one array per model input, or .txt/.jsonl texts)")
        return options.calib, options.eval

    def _write_build(self, build_dir: Path, source: ModelSource, spec: ModelSpec, params: int,
                     target: targets.TargetProfile, metrics: ValidateResult, gates: list, warnings: list) -> dict:
        engine = self._engine_summary(target, build_dir)
        from edgeopt.stages.prune_config import prune_section

        prune = prune_section(self.entries["prune"].result, self.entries["unpruned"].result
                              if "unpruned" in self.entries else None) if "prune" in self.entries else None
        with artifacts.staged_directory(build_dir) as staging:
            for entry in self.entries.values():
                for name in entry.files:
                    artifacts.place(entry.path(name), staging / name)
            artifacts.write_json_atomic(staging / "metrics.json", metrics.model_dump(mode="json"))
            manifest = artifacts.new_manifest()
            manifest.update({
                "model": {"name": spec.name, "source": source.reference, "kind": source.kind, "sha256": source.sha256,
                          "params": params, "spec": spec.model_dump(mode="json")},
                "target": {**target.model_dump(mode="json"), "sha256": target.sha256()},
                "stages": [r.model_dump(mode="json") for r in self.records],
                "artifacts": [artifacts.describe_artifact(p, staging) for p in sorted(staging.rglob("*")) if p.is_file()],
                "metrics": metrics.model_dump(mode="json"),
                "gates": [g.model_dump() for g in gates],
                "engine": engine,
                "warnings": warnings,
                "prune": prune,
            })
            artifacts.write_json_atomic(staging / "manifest.json", manifest)
        status = "gate_failed" if any(g.passed is False for g in gates) else "ok"
        deployable = build_dir / self.entries["compile"].result["deployable"] if target.backend == "onnxruntime" else (
            build_dir / engine["engine"] if engine.get("engine") else None)
        return {
            "status": status,
            "model": {"name": spec.name, "source": source.reference, "sha256": source.sha256,
                      "params": prune["after"]["params"] if prune else params, "params_before_prune": params},
            "target": {"name": target.name, "backend": target.backend},
            "build_dir": str(build_dir),
            "artifacts": {"onnx_fp32": str(build_dir / "model.fp32.onnx"), "onnx_int8": str(build_dir / "model.int8.onnx"),
                          "deployable": str(deployable) if deployable else None},
            "metrics": {"fp32": _precision(metrics.fp32), "int8": _precision(metrics.int8, int8=True),
                        "samples": metrics.samples, "latency_measured_on": metrics.latency_measured_on,
                        "latency_note": metrics.latency_note},
            "engine": engine,
            "stages": [{"name": r.name, "seconds": r.seconds, "cached": r.cached} for r in self.records],
            "gates": [g.model_dump() for g in gates],
            "warnings": warnings,
            "prune": prune,
            "quantization": self.entries["quantize"].result,
            "manifest": str(build_dir / "manifest.json"),
        }

    def _engine_summary(self, target: targets.TargetProfile, build_dir: Path) -> dict:
        if target.backend != "tensorrt":
            return {"status": "not_applicable", "plan": None, "trtexec": None}
        result = self.entries["compile"].result
        engine = result.get("engine_path")
        return {
            "status": result["status"],
            "reason": result.get("reason"),
            "plan": str(build_dir / Path(result["plan_path"]).name),
            "trtexec": result["trtexec"],
            "engine": Path(engine).name if engine else None,
            "trtexec_timing": result.get("trtexec_timing"),
            "metadata": result.get("engine_metadata"),
            "notes": result.get("notes", []),
        }


def _precision(metrics, int8: bool = False) -> dict:
    latency = metrics.latency_ms
    body = {"accuracy": metrics.accuracy,
            "latency_ms": {"p50": latency.p50, "p90": latency.p90, "p99": latency.p99} if latency else None}
    if int8:
        body.update({"agreement": metrics.agreement, "cosine_mean": metrics.cosine_mean,
                     "cosine_min": metrics.cosine_min, "max_abs_error": metrics.max_abs_error})
    return body


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"


def build(options: BuildOptions, progress: Progress | None = None) -> dict:
    """Run `edgeopt build`; returns the document DESIGN.md defines for `--json`."""
    return Pipeline(options, progress).run()
