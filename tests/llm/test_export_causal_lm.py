"""The KV-cache export: onnxruntime-genai's builder for the architectures it knows, optimum-onnx as
the fallback; both in edgeopt's layout and in parity with torch."""

from __future__ import annotations

import json

import pytest
from llm_zoo import tiny_llama, tiny_qwen2  # noqa: F401 - fixtures

from edgeopt.errors import BadInput
from edgeopt.stages import export_causal_lm as export


@pytest.mark.parametrize("family", ["tiny_llama", "tiny_qwen2"])
def test_builder_graph_is_the_default_and_matches_torch(family, request, tmp_path, capsys):
    import onnx

    folder = request.getfixturevalue(family)
    path = export.export(folder, tmp_path / "onnx")
    assert capsys.readouterr().out == ""  # the builder's chatter stays off stdout (--json)
    assert export.exporter_of(path) == "genai-builder"
    assert (path.parent / "model.onnx_data").is_file() and not (path.parent / "model.onnx.data").exists()
    assert not (path.parent / "builder_cache").exists()
    graph = onnx.load(str(path), load_external_data=False).graph
    head = json.loads((folder / "config.json").read_text())
    past = next(i for i in graph.input if i.name == "past_key_values.0.key").type.tensor_type.shape.dim
    assert past[3].dim_value == head["hidden_size"] // head["num_attention_heads"]
    result = export.parity(folder, path, list(range(3, 40)))
    assert result["greedy_equal"] and result["max_abs_logit_diff"] < 1e-4 and result["exporter"] == "genai-builder"


def test_optimum_on_request_and_as_the_fallback(tiny_llama, tmp_path, monkeypatch):
    forced = export.export(tiny_llama, tmp_path / "forced", exporter="optimum")
    assert export.exporter_of(forced) == "optimum"

    def broken(folder, out):
        (out / "half.onnx").parent.mkdir(parents=True, exist_ok=True)
        (out / "half.onnx").write_bytes(b"partial")
        raise NotImplementedError("architecture not supported")

    monkeypatch.setattr(export, "_builder_export", broken)
    fallback = export.export(tiny_llama, tmp_path / "fallback")
    assert export.exporter_of(fallback) == "optimum" and not (fallback.parent / "half.onnx").exists()
    with pytest.raises(BadInput, match="builder failed"):
        export.export(tiny_llama, tmp_path / "strict", exporter="genai-builder")
    with pytest.raises(BadInput, match="exporter"):
        export.export(tiny_llama, tmp_path / "x", exporter="torch")


def test_builder_import_leaves_transformers_as_it_was(tiny_llama, tmp_path):
    import transformers

    export.export(tiny_llama, tmp_path / "onnx")
    assert not hasattr(transformers, "Qwen3_5ForConditionalGeneration")
    config = transformers.AutoConfig.from_pretrained(str(tiny_llama))
    assert config.rope_scaling is None  # the rope_parameters shim applies to the builder's loads only
