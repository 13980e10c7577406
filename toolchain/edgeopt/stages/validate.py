"""Validate stage: accuracy and fidelity of the INT8 artifact against the FP32 reference, and
host latency of both where the host can stand in for the target (an onnxruntime CPU target of
this host's architecture). A TensorRT engine on its device is validated by validate_engine.py,
with the same `compare_outputs`. Judging (gates) is separate, in report/gates.py.
"""

from __future__ import annotations

from pathlib import Path


from edgeopt import bench
from edgeopt.build_dir import LAYOUT, write_json_atomic
from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.data.dataset import Dataset
from edgeopt.metrics.fidelity import ValidateResult, compare_all


def validate(fp32_path: Path, int8_path: Path, data: Dataset, task: str, *, latency_on_host: bool,
             threads: int, latency_seconds: float = 2.0, latency_note: str | None = None,
             kinds: dict[str, str] | None = None, metric: str | None = None,
             spec_outputs: list[str] | None = None, spec=None,
             folder: Path | None = None) -> ValidateResult:
    """Every output of the candidate against FP32 (metrics.fidelity.compare_all); `spec` (a
    ModelSpec) supplies output kinds, output order and the user metric; `folder` (the stage folder)
    receives the raw latency samples as LAYOUT.latency_samples."""
    if spec is not None:
        kinds, spec_outputs, metric = spec.output_kinds, spec.outputs, metric or spec.metric
    reference_session = runtime.session(fp32_path, threads=threads)
    names = [o.name for o in reference_session.get_outputs()]
    reference = runtime.run_all(reference_session, data)
    candidate = runtime.run_all(runtime.session(int8_path, threads=threads), data)
    fp32, int8, judgement = compare_all(names, reference, candidate, data.labels, task, kinds, metric, spec_outputs,
                                        data.source)
    measured_on = None
    if latency_on_host:
        samples: dict[str, list[float]] = {}
        latency = bench.measure_onnx({"fp32": fp32_path, "int8": int8_path}, data, threads,
                                     duration_s=latency_seconds, samples=samples)
        if folder is not None:
            write_json_atomic(Path(folder) / LAYOUT.latency_samples, {"unit": "ms", "threads": threads, **samples})
        fp32.latency_ms, int8.latency_ms = latency["fp32"], latency["int8"]
        measured_on = "host CPU (ONNX Runtime, batch 1)"
    return ValidateResult(samples=len(data), task=task, fp32=fp32, int8=int8,
                          latency_measured_on=measured_on, latency_note=latency_note,
                          outputs=judgement.outputs, drop=judgement.drop, drop_how=judgement.how)


class ValidateStage:
    """MetricsFromArtifact: the backend says which artifact is judged and how (backends/*/facade.py)."""

    name = "validate"
    writes = (LAYOUT.latency_samples,)  # when latency is measured on this host

    def __init__(self, validation, fp32: Path, data: Dataset, spec, latency_seconds: float):
        self.validation, self.fp32, self.data, self.spec, self.seconds = validation, fp32, data, spec, latency_seconds
        self.reads = (fp32.name, *validation.reads)

    def params(self) -> dict:
        return {"task": self.spec.task, "seconds": self.seconds, **self.validation.params, **judging_params(self.spec)}

    def inputs(self) -> dict:
        from edgeopt.hashing import sha256_file

        return {"onnx_fp32": sha256_file(self.fp32), "eval": self.data.sha256, **self.validation.inputs}

    def run(self, folder: Path) -> ValidateResult:
        return self.validation.run(self.data, self.spec, self.seconds, folder)


def judging_params(spec) -> dict:
    """What decides the judgement besides the data: output kinds and the user metric's code."""
    from edgeopt.hashing import sha256_file

    params = {"output_kinds": spec.output_kinds, "outputs": spec.outputs}
    if spec.metric:
        params["metric"] = {"reference": spec.metric, "sha256": sha256_file(Path(spec.metric.rpartition(":")[0]))}
    return params
