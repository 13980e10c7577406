"""stages/compile.py: the stage asks the target's backend which ONNX to compile and keys itself on
that file's hash; on ONNX Runtime it writes the optimized deployable into its folder."""

from __future__ import annotations

import onnxruntime as ort

from edgeopt import targets
from edgeopt.backends import backend_for
from edgeopt.build_dir import Artifact
from edgeopt.stages.compile import CompileStage


def test_the_cpu_backend_compiles_the_int8_onnx_and_keys_on_it(example_run, tmp_path):
    run, stages, _ = example_run
    stage = CompileStage(run.backend, run.fp32, run.int8, run.spec)
    assert stage.source == run.int8.path and stage.reads == (run.int8.name,)
    assert stage.inputs() == {"onnx": run.int8.sha256} == stages["compile"].inputs()
    assert stage.params() == {"target": run.target.sha256()}
    assert CompileStage(run.backend, run.fp32, None, run.spec).inputs() == {"onnx": run.fp32.sha256}  # fp32 builds
    assert CompileStage(run.backend, run.fp32, run.int8, run.spec, sparsity=True).params()["sparsity"] is True
    result = stage.run(tmp_path)
    assert result.backend == "onnxruntime" and result.engine.status == "not_applicable"
    session = ort.InferenceSession(str(tmp_path / result.deployable), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == [i.name for i in run.spec.inputs]


def test_a_calibration_cache_is_an_input_only_when_the_file_exists(example_run, no_tensorrt, tmp_path):
    run, _, _ = example_run
    jetson = backend_for(targets.resolve("jetson"), cache_root=tmp_path)
    absent = CompileStage(jetson, run.fp32, run.int8, run.spec, calibration_cache=tmp_path / "calibration.cache")
    assert "calibration_cache" not in absent.inputs() and absent.calibration_cache is None
    cache = tmp_path / "calibration.cache"
    cache.write_bytes(b"TRT-1003-EntropyCalibration2\n")
    present = CompileStage(jetson, run.fp32, run.int8, run.spec, calibration_cache=cache)
    assert present.inputs()["calibration_cache"] == Artifact.of(cache).sha256
    assert present.reads == (present.source.name, "calibration.cache")
