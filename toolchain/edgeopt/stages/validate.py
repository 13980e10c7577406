"""Validate stage: accuracy and fidelity of the deployable artifact against the FP32 reference,
and latency where it can be measured. The backend decides what is judged and how
(backends/*/facade.py `validation`: ONNX Runtime on this host, or the engine on its device).
Judging (gates) is separate, in report/gates.py.
"""

from __future__ import annotations

from pathlib import Path

from edgeopt.build_dir import LAYOUT, Artifact
from edgeopt.data.dataset import Dataset
from edgeopt.metrics.fidelity import ValidateResult


class ValidateStage:
    """MetricsFromArtifact: the backend says which artifact is judged and how (backends/*/facade.py)."""

    name = "validate"
    writes = (LAYOUT.latency_samples,)  # when latency is measured on this host

    def __init__(self, validation, fp32: Artifact | Path, data: Dataset, spec, latency_seconds: float):
        self.fp32_artifact = Artifact.of(fp32)
        self.validation, self.fp32, self.data, self.spec, self.seconds = \
            validation, self.fp32_artifact.path, data, spec, latency_seconds
        self.reads = (self.fp32.name, *validation.reads)

    def params(self) -> dict:
        return {"task": self.spec.task, "seconds": self.seconds, **self.validation.params, **judging_params(self.spec)}

    def inputs(self) -> dict:
        return {"onnx_fp32": self.fp32_artifact.sha256, "eval": self.data.sha256, **self.validation.inputs}

    def run(self, folder: Path) -> ValidateResult:
        return self.validation.run(self.data, self.spec, self.seconds, folder)


def judging_params(spec) -> dict:
    """What decides the judgement besides the data: output kinds and the user metric's code."""
    from edgeopt.hashing import sha256_file

    params = {"output_kinds": spec.output_kinds, "outputs": spec.outputs}
    if spec.metric:
        params["metric"] = {"reference": spec.metric, "sha256": sha256_file(Path(spec.metric.rpartition(":")[0]))}
    return params


def judging_fields(spec) -> dict:
    """QuantizeConfig fields that make the fallback judge as the validate stage and the gate do."""
    metric = judging_params(spec).get("metric") or {}
    return {"output_kinds": spec.output_kinds, "spec_outputs": spec.outputs, "metric": metric.get("reference"),
            "metric_sha256": metric.get("sha256")}
