"""Text data: .txt and .jsonl, the model's own tokenizer, labels by index or name, bad lines."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgeopt.data import ReaderOptions, load_dataset
from edgeopt.errors import BadInput
from edgeopt.models.spec import InputSpec, ModelSpec

AXES = {0: "batch_size", 1: "sequence_length"}


def _spec(names=("input_ids", "attention_mask", "token_type_ids"), task="classification"):
    inputs = [InputSpec(name=n, dtype="int64", shape=(1, 8), dynamic_axes=AXES) for n in names]
    return ModelSpec(name="m", task=task, inputs=inputs, outputs=["logits"],
                     labels=["negative", "positive"] if task == "classification" else [])


@pytest.fixture
def options(hf_zoo):
    return ReaderOptions(tokenizer=hf_zoo.classifier, seq_len=8)


def test_txt_is_tokenized_padded_and_truncated(tmp_path, options):
    path = tmp_path / "t.txt"
    path.write_text("this movie is good\n\n  the film was really very very very awful  \n")
    data = load_dataset(path, _spec(), "calibration", options)
    assert len(data) == 2 and data.labels is None
    ids, mask = data.inputs["input_ids"], data.inputs["attention_mask"]
    assert ids.shape == (2, 8) and ids.dtype == np.int64
    assert mask[0].tolist() == [1] * 6 + [0] * 2  # [CLS] 4 words [SEP], padded
    assert mask[1].all() and ids[1, -1] == 3  # truncated, still ends with [SEP]
    assert not data.inputs["token_type_ids"].any()


def test_jsonl_labels_by_index_and_name(tmp_path, options):
    path = tmp_path / "e.jsonl"
    rows = [{"text": "the food is bad", "label": 0}, {"text": "the song was great", "label": "positive"},
            {"text": "our trip felt poor", "label": "0"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_dataset(path, _spec(), "evaluation", options)
    assert data.labels.tolist() == [0, 1, 0]
    assert load_dataset(path, _spec(task="embedding"), "evaluation", options).labels is None


def test_inputs_the_tokenizer_does_not_make(tmp_path, options):
    path = tmp_path / "t.txt"
    path.write_text("the show is nice\n")
    data = load_dataset(path, _spec(("input_ids", "attention_mask")), "calibration", options)
    assert set(data.inputs) == {"input_ids", "attention_mask"}
    with pytest.raises(BadInput, match="does not produce the model input 'pixel_values'"):
        load_dataset(path, _spec(("input_ids", "pixel_values")), "calibration", options)


@pytest.mark.parametrize("name, content, message", [
    ("empty.txt", "\n\n", "holds no texts"),
    ("bad.jsonl", '{"text": "ok", "label": 1}\n{"text": oops}\n', r"bad.jsonl:2: not valid JSON"),
    ("notext.jsonl", '{"label": 1}\n', r"notext.jsonl:1: expected an object with a string 'text'"),
    ("unknown.jsonl", '{"text": "a", "label": "neutral"}\n', r"unknown.jsonl:1: unknown label 'neutral'"),
    ("range.jsonl", '{"text": "a", "label": 7}\n', r"range.jsonl:1: unknown label 7"),
    ("mixed.jsonl", '{"text": "a", "label": 1}\n{"text": "b"}\n', r"mixed.jsonl:2: no 'label'"),
])
def test_bad_text_files_are_one_line_errors(tmp_path, options, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(BadInput, match=message) as error:
        load_dataset(path, _spec(), "evaluation", options)
    assert "\n" not in str(error.value)


def test_texts_need_a_tokenizer(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("hello\n")
    with pytest.raises(BadInput, match="needs a model with a tokenizer"):
        load_dataset(path, _spec(), "calibration", ReaderOptions())
