"""The LLM build through the stage cache (issue 18, item 5): a second identical build is served from
the cache with the same figures; a changed eval text, calibration text or weight is not."""

from __future__ import annotations

import shutil

from llm_zoo import lora_adapter, texts, tiny_llama  # noqa: F401 - fixtures


def _build(model, calib, evaluation, out, cache, *extra):
    from conftest import build_json

    code, document, stderr = build_json(str(model), "--target", "cpu", "--calib", str(calib), "--eval", str(evaluation),
                                        "--out", str(out), "--cache-dir", str(cache), *extra)
    assert document is not None, stderr
    return {s["name"]: s["cached"] for s in document["stages"]}, document


def test_second_build_is_served_from_the_cache_and_changes_are_not(tiny_llama, texts, tmp_path):
    from safetensors.numpy import load_file, save_file

    calib, evaluation = texts
    cache = tmp_path / "cache"
    first, doc1 = _build(tiny_llama, calib, evaluation, tmp_path / "a", cache)
    assert first["llm_export"] is False and first["llm_validate"] is False
    second, doc2 = _build(tiny_llama, calib, evaluation, tmp_path / "b", cache)
    cached = {name for name, hit in second.items() if hit}
    assert cached == {"llm_export", "llm_parity", "llm_score", "llm_quantize_int4", "llm_quantize_int8", "llm_validate"}
    assert doc2["metrics"]["llm"]["perplexity"] == doc1["metrics"]["llm"]["perplexity"]
    assert (tmp_path / "b" / "genai" / "model.onnx").is_file() and (tmp_path / "b" / "onnx_fp32" / "model.onnx").is_file()

    other_eval = tmp_path / "eval2.txt"
    other_eval.write_text("\n".join(evaluation.read_text().splitlines()[::-1]) + "\n")
    changed, _ = _build(tiny_llama, calib, other_eval, tmp_path / "c", cache)
    assert changed["llm_export"] and changed["llm_quantize_int4"] and not changed["llm_validate"]

    other_calib = tmp_path / "calib2.txt"
    other_calib.write_text("\n".join(calib.read_text().splitlines()[::-1]) + "\n")
    changed, _ = _build(tiny_llama, other_calib, evaluation, tmp_path / "d", cache)
    assert changed["llm_export"] and not changed["llm_parity"]

    model = tmp_path / "model"
    shutil.copytree(tiny_llama, model)
    weights = load_file(str(model / "model.safetensors"))
    name = sorted(weights)[-1]
    weights[name] = weights[name] + 1e-3
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    changed, _ = _build(model, calib, evaluation, tmp_path / "e", cache)
    assert not any(changed.values())


def test_no_cache_writes_nothing_to_the_cache(tiny_llama, texts, tmp_path):
    calib, evaluation = texts
    cache = tmp_path / "cache"
    stages, document = _build(tiny_llama, calib, evaluation, tmp_path / "a", cache, "--no-cache")
    assert not any(stages.values()) and document["metrics"]["llm"]["perplexity"] > 0
    assert not cache.exists() or not any(cache.rglob("entry.json"))


def test_lora_adapter_builds_end_to_end_and_its_merge_is_cached(tiny_llama, texts, tmp_path):
    calib, evaluation = texts
    root = tmp_path / "proj"
    lora_adapter(tiny_llama, root)
    cache = tmp_path / "cache"
    first, document = _build(root / "adapter", calib, evaluation, tmp_path / "a", cache)
    assert first["llm_load"] is False and document["metrics"]["llm"]["source_kind"] == "lora"
    assert document["metrics"]["llm"]["parity"]["greedy_equal"]  # the merged weights, exported
    second, _ = _build(root / "adapter", calib, evaluation, tmp_path / "b", cache)
    assert second["llm_load"] and second["llm_export"]
