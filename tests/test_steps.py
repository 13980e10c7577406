"""steps.py: the declared order of the stages and the one place that wires a stage's outputs to the
next one's inputs, checked on the bundled example replayed from the cache (conftest.example_run):
each stage's input hashes are the hashes of the files the stage before it wrote."""

from __future__ import annotations

import dataclasses

from edgeopt import host, targets
from edgeopt.hashing import sha256_file
from edgeopt.stages.precision import Fp16Stage
from edgeopt.stages.quantize import QuantizeStage
from edgeopt.steps import LOAD, STEPS


def _step(name: str):
    return next(step for step in (LOAD, *STEPS) if step.name == name)


def test_the_steps_are_declared_in_pipeline_order():
    assert LOAD.name == "load"
    assert [step.name for step in STEPS] == ["prune", "export", "quantize", "calib_stats", "compile", "validate", "unpruned"]


def test_the_replayed_example_serves_every_stage_from_the_cache(example_run, example_build):
    run, stages, result = example_run
    assert [(r.name, r.cached) for r in run.records] == [(name, True) for name in
                                                          ("load", "export", "quantize", "calib_stats", "compile", "validate")]
    assert list(stages) == ["load", "export", "quantize", "calib_stats", "compile", "validate"]  # prune, unpruned: skipped
    assert result.metrics == example_build["metrics"]  # the cached validate result, not a new measurement


def test_each_stage_reads_the_files_the_stage_before_wrote(example_run):
    run, stages, _ = example_run
    export, quantize = run.outputs["export"], run.outputs["quantize"]
    assert run.fp32 == export.main and run.fp32.path.parent == export.entry.folder
    assert run.fp32.sha256 == sha256_file(run.fp32.path) == export.entry.files[run.fp32.name]
    assert stages["quantize"].inputs()["onnx_fp32"] == run.fp32.sha256
    assert run.int8 == quantize.main and run.int8.sha256 == sha256_file(run.int8.path)
    assert stages["compile"].inputs() == {"onnx": run.int8.sha256}  # the CPU backend compiles the INT8 ONNX
    assert stages["validate"].inputs()["onnx_fp32"] == run.fp32.sha256
    assert stages["validate"].inputs()["eval"] == run.data.evaluation.sha256
    assert run.compiled.backend == "onnxruntime" and run.metrics is not None


def test_the_build_options_reach_the_quantize_config(example_run):
    run, stages, _ = example_run
    config = stages["quantize"].config
    assert isinstance(stages["quantize"], QuantizeStage)
    assert config.latency_seconds == run.options.latency_seconds == 0.2  # issue 19: it never did
    assert config.max_accuracy_drop == run.gates.max_accuracy_drop
    assert config.threads == host.default_threads(run.target) and config.task == run.spec.task


def test_precision_and_pruning_decide_which_steps_make_a_stage(example_run):
    run, _, _ = example_run
    assert _step("prune").make(run) is None and _step("unpruned").make(run) is None  # no prune request
    fp32 = run.target.model_copy(update={"build": run.target.build.model_copy(update={"precision": "fp32"})})
    assert _step("quantize").make(dataclasses.replace(run, target=fp32)) is None
    l4 = targets.resolve("l4")  # TensorRT 11: FP16 engines are built from an FP16 ONNX
    fp16 = l4.model_copy(update={"build": l4.build.model_copy(update={"precision": "fp16"})})
    stage = _step("quantize").make(dataclasses.replace(run, target=fp16))
    assert isinstance(stage, Fp16Stage) and stage.inputs() == {"onnx_fp32": run.fp32.sha256}
