"""Hugging Face folders: task detection, trust and completeness checks, loading, pooling, spec."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from edgeopt.errors import BadInput
from edgeopt.models import huggingface
from edgeopt.models.pooling import PooledEncoder
from edgeopt.models.source import resolve_source
from edgeopt.stages.export_huggingface import onnx_inputs
from hf_models import tiny_config, write_tokenizer


def _config(folder, **changes):
    config = json.loads((folder / "config.json").read_text())
    config.update(changes)
    (folder / "config.json").write_text(json.dumps(config))


@pytest.fixture
def classifier(hf_zoo, tmp_path):
    folder = tmp_path / "cls"
    shutil.copytree(hf_zoo.classifier, folder)
    return folder


def test_task_from_config_and_modules(hf_zoo, classifier):
    layout = huggingface.check_folder(classifier)
    assert layout.task == "classification" and layout.pooling is None
    encoder = huggingface.check_folder(hf_zoo.encoder)
    assert (encoder.task, encoder.pooling, encoder.normalize) == ("embedding", "mean", False)
    _config(classifier, architectures=["BertModel"])
    assert huggingface.check_folder(classifier).pooling == "mean"  # a plain encoder: mean pooling
    _config(classifier, architectures=["BertForMaskedLM"])
    with pytest.raises(BadInput, match="--task embedding"):
        huggingface.check_folder(classifier)
    assert huggingface.check_folder(classifier, task="embedding").task == "embedding"


def test_regression_head_is_not_classification(classifier):
    _config(classifier, problem_type="regression", num_labels=1, id2label={"0": "score"})
    assert huggingface.check_folder(classifier).task == "regression"


def test_sentence_transformer_modules(hf_zoo, tmp_path):
    folder = tmp_path / "st"
    shutil.copytree(hf_zoo.encoder, folder)
    modules = json.loads((folder / "modules.json").read_text())
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_mean_tokens=False, pooling_mode_cls_token=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    (folder / "modules.json").write_text(json.dumps(modules + [
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    layout = huggingface.check_folder(folder)
    assert (layout.pooling, layout.normalize) == ("cls", True)
    (folder / "modules.json").write_text(json.dumps(modules + [
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}]))
    with pytest.raises(BadInput, match="2_Dense.*not supported"):
        huggingface.check_folder(folder)


def test_remote_code_needs_the_flag(classifier):
    _config(classifier, auto_map={"AutoModel": "modeling_x.X"})
    with pytest.raises(BadInput, match="needs its own Python code.*--trust-remote-code"):
        huggingface.check_folder(classifier)
    assert huggingface.check_folder(classifier, trust_remote_code=True).task == "classification"


def test_missing_weights_and_tokenizer(classifier):
    (classifier / "tokenizer.json").unlink()
    (classifier / "vocab.txt").unlink()
    with pytest.raises(BadInput, match="no tokenizer files"):
        huggingface.check_folder(classifier)
    (classifier / "model.safetensors").unlink()
    with pytest.raises(BadInput, match="no model weights"):
        huggingface.check_folder(classifier)


def test_sequence_length_from_profile_capped_by_the_model(classifier):
    layout = huggingface.check_folder(classifier)  # max_position_embeddings 128
    assert huggingface.sequence_length(layout, None, 64) == 64
    assert huggingface.sequence_length(layout, None, 512) == 128
    with pytest.raises(BadInput, match="at most 128 tokens"):
        huggingface.sequence_length(layout, 256, 64)


def test_bin_weights_load_with_weights_only(tmp_path, monkeypatch):
    """A pytorch_model.bin goes through torch.load(weights_only=True), never full unpickling."""
    from transformers import BertModel

    folder = tmp_path / "bin"
    tokenizer = write_tokenizer(folder)
    BertModel(tiny_config(tokenizer.vocab_size)).save_pretrained(folder, safe_serialization=False)
    assert (folder / "pytorch_model.bin").is_file() and not list(folder.glob("*.safetensors"))
    seen = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k.get("weights_only")) or real_load(*a, **k))
    model = huggingface.load_model(huggingface.check_folder(folder))
    assert isinstance(model, PooledEncoder) and seen and all(flag is True for flag in seen)


def test_pooled_encoder_masks_padding(hf_zoo):
    model = huggingface.load_model(huggingface.check_folder(hf_zoo.encoder))
    ids = torch.tensor([[2, 10, 11, 3, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 0, 0]])
    with torch.inference_mode():
        padded = model(input_ids=ids, attention_mask=mask)["sentence_embedding"]
        short = model(input_ids=ids[:, :4], attention_mask=mask[:, :4])["sentence_embedding"]
    np.testing.assert_allclose(padded.numpy(), short.numpy(), atol=1e-5)


def test_spec_inputs_follow_the_architecture(hf_zoo, tmp_path):
    source = resolve_source(str(hf_zoo.classifier))
    layout = huggingface.check_folder(hf_zoo.classifier)
    spec = huggingface.model_spec(source, layout, model := huggingface.load_model(layout), 32, onnx_inputs(model, layout.task))
    assert [(i.name, i.dtype, i.shape) for i in spec.inputs] == [
        ("input_ids", "int64", (1, 32)), ("attention_mask", "int64", (1, 32)), ("token_type_ids", "int64", (1, 32))]
    assert spec.inputs[0].dynamic_axes == {0: "batch_size", 1: "sequence_length"}

    from transformers import DistilBertConfig, DistilBertModel

    folder = tmp_path / "distil"
    tokenizer = write_tokenizer(folder)
    DistilBertModel(DistilBertConfig(vocab_size=tokenizer.vocab_size, dim=32, n_layers=1, n_heads=2,
                                     hidden_dim=64)).save_pretrained(folder)
    layout = huggingface.check_folder(folder)
    spec = huggingface.model_spec(resolve_source(str(folder)), layout, model := huggingface.load_model(layout), 16,
                                   onnx_inputs(model, layout.task))
    assert [i.name for i in spec.inputs] == ["input_ids", "attention_mask"]  # DistilBERT has no segments
    assert spec.task == "embedding" and spec.outputs == ["sentence_embedding"]


def test_default_class_names_when_config_omits_them(tmp_path):
    from transformers import BertForSequenceClassification

    folder = tmp_path / "three"
    tokenizer = write_tokenizer(folder)
    BertForSequenceClassification(tiny_config(tokenizer.vocab_size, num_labels=3)).save_pretrained(folder)
    layout = huggingface.check_folder(folder)
    spec = huggingface.model_spec(resolve_source(str(folder)), layout, model := huggingface.load_model(layout), 8,
                                   onnx_inputs(model, layout.task))
    assert spec.task == "classification" and spec.labels == ["LABEL_0", "LABEL_1", "LABEL_2"]


def test_task_that_the_weights_do_not_hold_is_refused(hf_zoo):
    layout = huggingface.check_folder(hf_zoo.encoder, task="classification")
    with pytest.raises(BadInput, match="not a classification model, check --task"):
        huggingface.load_model(layout)
