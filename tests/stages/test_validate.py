"""stages/validate.py: what decides a judgement besides the data (output kinds, the user metric's
code, by hash) is in the stage's key, and the quantize fallback judges by the same fields."""

from __future__ import annotations

from edgeopt.hashing import sha256_file
from edgeopt.models.spec import with_overrides
from edgeopt.stages.validate import ValidateStage, judging_fields, judging_params


def test_the_example_validate_stage_keys_on_its_inputs_and_judging(example_run):
    run, stages, _ = example_run
    stage = stages["validate"]
    assert isinstance(stage, ValidateStage) and stage.reads[0] == run.fp32.name
    params = stage.params()
    assert params["seconds"] == run.options.latency_seconds and params["task"] == run.spec.task
    assert params["output_kinds"] == run.spec.output_kinds and "metric" not in params


def test_a_user_metric_is_keyed_by_its_code(example_run, tmp_path):
    run, _, _ = example_run
    metric = tmp_path / "metric.py"
    metric.write_text("def score(outputs, labels):\n    return 1.0\n")
    spec = with_overrides(run.spec, None, f"{metric}:score")
    first = judging_params(spec)["metric"]
    assert first == {"reference": f"{metric}:score", "sha256": sha256_file(metric)}
    metric.write_text("def score(outputs, labels):\n    return 0.5\n")
    assert judging_params(spec)["metric"]["sha256"] != first["sha256"]  # edited code: a new key
    assert judging_fields(spec) == {"output_kinds": spec.output_kinds, "spec_outputs": spec.outputs,
                                    "metric": f"{metric}:score", "metric_sha256": sha256_file(metric)}
    assert judging_fields(run.spec)["metric"] is None
