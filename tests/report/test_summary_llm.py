"""report/summary_llm.py: the human summary of a decoder-only LLM build. The document is the
`--json` of a real build of the tiny random-weight Llama of tests/llm (recorded, temporary folders
renamed /builds: a live LLM build costs seconds, and tests/llm/test_llm_build.py runs one); every
number the summary prints is the build's own, gates say pass/FAIL/not judged, and a metric that
was not measured reads n/a instead of a made-up number."""

from __future__ import annotations

import copy
import json

import pytest
from conftest import REPO

from edgeopt.report.summary_llm import render_llm
from edgeopt.results import BuildResult

RECORDED = REPO / "tests" / "data" / "llm-build-tiny-llama.json"


@pytest.fixture
def llm_document() -> dict:
    document = json.loads(RECORDED.read_text())
    BuildResult.model_validate(document)  # still a build's --json, as the contract types it
    return document


def _line(text: str, label: str) -> str:
    return next(line for line in text.splitlines() if line.strip().startswith(label))


def test_the_summary_prints_the_builds_own_numbers(llm_document):
    llm = llm_document["metrics"]["llm"]
    text = render_llm(llm_document)
    assert text.splitlines()[0] == (f"edgeopt build: {llm_document['model']['name']} -> {llm_document['target']['name']} (onnxruntime, "
                                    f"text generation, {llm['precision']})")
    perplexity = _line(text, "perplexity")
    assert f"FP32 {llm['perplexity_fp32']:.2f}" in perplexity and f"{llm['precision']} {llm['perplexity']:.2f}" in perplexity
    assert f"increase {llm['perplexity_increase'] * 100:+.2f}%" in perplexity
    assert f"of {llm['new_tokens']} greedy tokens over {llm['prompts']} prompts" in _line(text, "agreement")
    assert f"{llm['memory_fit']['need_mb']:.0f} MB of {llm['memory_fit']['device_mb']:.0f} MB" in _line(text, "memory fit")
    assert [line.split(":")[0].strip() for line in text.splitlines() if "candidate" in line] == [
        f"candidate      {c['precision']}" for c in llm["candidates"]]
    stages = [line.split()[0] for line in text.split("stage          seconds\n")[1].split("\n\n")[0].splitlines()]
    assert stages == [s["name"] for s in llm_document["stages"]]
    gate = llm_document["gates"][0]
    assert _line(text, "gate").endswith("-> pass" if gate["passed"] else "-> FAIL")
    assert _line(text, "deployable") == f"  deployable     {llm_document['artifacts']['deployable']} (og.Model(folder))"


def test_what_was_not_measured_reads_n_a_and_an_unjudged_gate_says_so(llm_document):
    document = copy.deepcopy(llm_document)
    document["metrics"]["llm"].update(ttft_ms=None, decode_tokens_per_s=None)
    document["gates"][0].update(value=None, passed=None)
    document["warnings"] = ["measured on a busy host"]
    text = render_llm(document)
    assert "TTFT n/a (" in _line(text, "speed") and "decode n/a " in _line(text, "speed")
    assert _line(text, "gate").endswith(": n/a vs 0.01 -> not judged")
    assert text.splitlines()[-1] == "  warning        measured on a busy host"
