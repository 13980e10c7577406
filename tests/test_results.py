"""results.py: the typed `--json` document. A real build's document validates and round-trips
unchanged (the keys DESIGN.md keeps stable; `not_judged` is the baseline judging's addition), the
manifest's relative engine paths become absolute under the build folder, and a document outside
the contract is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from edgeopt.results import BuildResult, CompileResult, EngineSummary


def test_a_real_build_document_round_trips(example_build, jetson_build):
    for document in (example_build, jetson_build):
        library = {k: v for k, v in document.items() if k != "not_judged"}  # report/baseline.judge_build adds it
        assert BuildResult.model_validate(document).to_json() == library
        assert set(document) - set(library) == {"not_judged"}
    assert example_build["engine"]["status"] == "not_applicable" and jetson_build["engine"]["status"] == "deferred"


def test_engine_paths_become_absolute_under_the_build(jetson_build):
    root = Path(jetson_build["build_dir"])
    relative = EngineSummary(status="deferred", plan="build_plan.json", reason="no TensorRT here")
    absolute = relative.absolute(root)
    assert absolute.plan == str(root / "build_plan.json") and absolute.engine is None
    assert absolute.reason == relative.reason and relative.plan == "build_plan.json"  # a copy, not changed in place
    assert jetson_build["engine"]["plan"] == str(root / Path(jetson_build["engine"]["plan"]).name)


def test_documents_outside_the_contract_are_refused(example_build):
    with pytest.raises(ValidationError, match="status"):
        BuildResult.model_validate({**example_build, "status": "maybe"})
    with pytest.raises(ValidationError, match="backend"):
        CompileResult(backend="tflite", deployable=None, engine=EngineSummary(status="not_applicable"))
