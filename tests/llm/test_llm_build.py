"""Decoder-only LLMs (issue 18) on tiny random-weight models: detection, refusals, LoRA merge,
export parity, the onnxruntime-genai folder, weight-only quantization and the CLI build."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from llm_zoo import debian_text, lora_adapter, make_model, texts, tiny_llama, tiny_qwen2  # noqa: F401 - fixtures

from edgeopt.errors import BadInput
from edgeopt.llm_build import memory_fit
from edgeopt.models import causal_lm


def test_detects_causal_lm_folders_and_files(tiny_llama, tiny_qwen2, tmp_path):
    assert causal_lm.is_causal_lm(str(tiny_llama)) and causal_lm.is_causal_lm(str(tiny_qwen2))
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"GGUF")
    assert causal_lm.is_causal_lm(str(gguf))
    assert not causal_lm.is_causal_lm(str(tmp_path))
    assert causal_lm.is_causal_lm(str(tmp_path), task="text-generation")
    facts = causal_lm.model_facts(tiny_llama)
    assert facts["context_length"] == 256 and facts["vocab_size"] == 512 and facts["num_kv_heads"] == 2


def test_refuses_pickle_only_and_remote_code(tiny_llama, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_llama, folder)
    (folder / "model.safetensors").rename(folder / "pytorch_model.bin")
    with pytest.raises(BadInput, match="pytorch_model.bin is pickled"):
        causal_lm.resolve(str(folder))
    config = json.loads((tiny_llama / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "x.Y"}}))
    with pytest.raises(BadInput, match="its own Python code"):
        causal_lm.resolve(str(folder))


def test_old_advice_is_gone(tiny_llama):
    from edgeopt.models import huggingface

    with pytest.raises(BadInput, match="--task text-generation"):
        huggingface.check_folder(tiny_llama)


def test_lora_adapter_is_merged_from_a_local_base(tiny_llama, tmp_path):
    import torch
    import transformers

    root = tmp_path / "proj"
    adapter, lora = lora_adapter(tiny_llama, root)
    source = causal_lm.resolve(str(adapter))
    assert source.kind == "lora" and source.base == (root / "base").resolve()
    merged = causal_lm.float_folder(source, tmp_path / "work")
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad():
        expected = lora(ids).logits
        got = transformers.AutoModelForCausalLM.from_pretrained(str(merged))(ids).logits
    assert torch.allclose(expected, got, atol=1e-4)
    adapter_config = adapter / "adapter_config.json"
    adapter_config.write_text(json.dumps({**json.loads(adapter_config.read_text()), "base_model_name_or_path": "/elsewhere"}))
    with pytest.raises(BadInput, match="nothing is downloaded"):
        causal_lm.resolve(str(root / "adapter"))


def test_memory_fit_numbers():
    facts = {"num_layers": 30, "num_kv_heads": 3, "head_size": 64}
    fit = memory_fit(facts, 100 * 2**20, 2048, 0.25)
    assert fit["kv_cache_mb"] == pytest.approx(90.0) and not fit["fits"]
    assert memory_fit(facts, 100 * 2**20, 2048, 8)["fits"]


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_export_parity_and_genai_folder_generates_torchs_tokens(family, tmp_path):
    import onnxruntime_genai as og

    from edgeopt.backends.onnxruntime import genai
    from edgeopt.stages import export_causal_lm

    folder = make_model(tmp_path / family, family)
    onnx_path = export_causal_lm.export(folder, tmp_path / "onnx")
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(folder / "tokenizer.json")).encode(debian_text(2000)).ids[:32]
    parity = export_causal_lm.parity(folder, onnx_path, ids)
    assert parity["greedy_equal"] and parity["max_abs_logit_diff"] < 1e-3
    out = genai.write_folder(onnx_path, folder, causal_lm.model_facts(folder), tmp_path / "genai")
    og.Model(str(out))  # opens as is
    tokens, times = genai.GenaiRunner(out).generate(ids, 8)
    assert tokens == genai.greedy(genai.CausalSession(onnx_path), ids, 8) and len(times) == 8


def test_cli_build_end_to_end(tiny_llama, texts, tmp_path):
    from conftest import build_json

    calib, evaluation = texts
    code, document, stderr = build_json(str(tiny_llama), "--target", "cpu", "--calib", str(calib), "--eval",
                                        str(evaluation), "--out", str(tmp_path / "build"))
    assert document is not None, stderr
    llm = document["metrics"]["llm"]
    assert Path(document["artifacts"]["deployable"], "genai_config.json").is_file()
    assert llm["precision"] in ("int4", "int8") and 0 <= llm["agreement"] <= 1 and llm["decode_tokens_per_s"] > 0
    assert document["gates"][0]["name"] == "max_perplexity_increase" and code in (0, 1)
    assert document["gates"][0]["threshold"] == 0.01  # from the cpu profile, not a constant
    assert llm["gates"]["max_perplexity_increase"]["value"] == llm["perplexity_increase"]
    assert code == (0 if document["status"] == "ok" else 1) and llm["prompts"] > 1  # every prompt, not the first only
    assert {c["precision"] for c in llm["candidates"]} == {"int4", "int8"}


def test_profile_llm_gates():
    from edgeopt import targets

    gates = targets.resolve("cpu").gates
    assert gates.max_perplexity_increase == 0.01 and gates.min_greedy_agreement is None
    with pytest.raises(ValueError):
        targets.Gates(min_greedy_agreement=1.5)


def test_tied_head_quantized_when_asked(tiny_llama, tmp_path):
    from edgeopt.backends.onnxruntime import genai
    from edgeopt.stages import export_causal_lm
    from edgeopt.stages import quantize_weight_only as wo

    fp32 = export_causal_lm.export(tiny_llama, tmp_path / "onnx")
    plain = wo.quantize(fp32, tmp_path / "a" / "model.onnx", wo.WeightOnlyConfig(bits=4))
    head = wo.quantize(fp32, tmp_path / "b" / "model.onnx", wo.WeightOnlyConfig(bits=4, head_bits=8))
    assert wo.count_quantized(head)["matmul_nbits"] == wo.count_quantized(plain)["matmul_nbits"] + 1
    assert genai.CausalSession(head).score([1, 2, 3]).shape[0] == 3
