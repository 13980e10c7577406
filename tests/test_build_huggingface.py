"""`edgeopt build` on local Hugging Face folders (issue 4's "done when"), through the CLI."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
import pytest

from conftest import build_json

FAST = ["--latency-seconds", "0.2", "--seq-len", "16"]


pytestmark = pytest.mark.slow  # end-to-end builds


@pytest.fixture(scope="module")
def classifier_cpu(hf_zoo, tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("hf-builds") / "cls-cpu"
    with pytest.MonkeyPatch.context() as patch:  # module scope runs before the autouse cache fixture
        patch.setenv("EDGEOPT_CACHE", str(cache_dir))
        code, document, stderr = build_json(str(hf_zoo.classifier), "--target", "cpu", "--calib", str(hf_zoo.texts),
                                            "--eval", str(hf_zoo.labeled), "--out", str(out), *FAST)
    assert code == 0, stderr
    return document


def test_classifier_builds_int8_with_accuracy_and_latency(classifier_cpu):
    doc = classifier_cpu
    fp32, int8 = doc["metrics"]["fp32"], doc["metrics"]["int8"]
    assert fp32["accuracy"] >= 0.95, "the tiny classifier should have learned the templates"
    assert int8["accuracy"] >= fp32["accuracy"] - 0.02 and int8["agreement"] >= 0.97
    assert int8["latency_ms"]["p50"] > 0 and fp32["latency_ms"]["p50"] > 0
    assert Path(doc["artifacts"]["onnx_int8"]).is_file() and Path(doc["artifacts"]["deployable"]).is_file()
    assert [s["name"] for s in doc["stages"]] == ["load", "export", "quantize", "calib_stats", "compile", "validate"]
    assert doc["warnings"] == [], "calibration and evaluation texts are disjoint"


def test_classifier_spec_and_export_recorded(classifier_cpu):
    manifest = json.loads(Path(classifier_cpu["manifest"]).read_text())
    spec = manifest["model"]["spec"]
    assert manifest["model"]["kind"] == "huggingface" and spec["task"] == "classification"
    assert [i["name"] for i in spec["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert spec["labels"] == ["negative", "positive"] and spec["outputs"] == ["logits"]
    export = next(s for s in manifest["stages"] if s["name"] == "export")["result"]
    assert export["exporter"] == "optimum-onnx" and export["max_abs_diff"] < 1e-3
    graph = onnx.load(classifier_cpu["artifacts"]["onnx_fp32"]).graph
    dims = [d.dim_param for d in graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch_size", "sequence_length"]


def test_sentence_encoder_reports_cosine(hf_zoo, tmp_path):
    code, doc, stderr = build_json(str(hf_zoo.encoder), "--target", "cpu", "--calib", str(hf_zoo.texts),
                                   "--eval", str(hf_zoo.unlabeled), "--out", str(tmp_path / "enc"), *FAST)
    assert code == 0, stderr
    int8 = doc["metrics"]["int8"]
    assert int8["cosine_mean"] >= 0.99 and int8["accuracy"] is None and int8["agreement"] is None
    assert doc["gates"][0]["note"].startswith("1 - mean cosine")
    graph = onnx.load(doc["artifacts"]["onnx_fp32"]).graph
    assert [o.name for o in graph.output] == ["sentence_embedding"]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1] == 64  # pooled: (batch, hidden)


@pytest.mark.parametrize("problem, expected", [
    ("auto_map", "--trust-remote-code"),
    ("no_weights", "no model weights"),
    ("no_tokenizer", "no tokenizer files"),
])
def test_bad_folders_exit_2_with_one_line(hf_zoo, tmp_path, problem, expected):
    folder = tmp_path / "model"
    shutil.copytree(hf_zoo.classifier, folder)
    if problem == "auto_map":
        config = json.loads((folder / "config.json").read_text())
        config["auto_map"] = {"AutoModelForSequenceClassification": "modeling_custom.CustomBert"}
        (folder / "config.json").write_text(json.dumps(config))
    elif problem == "no_weights":
        (folder / "model.safetensors").unlink()
    else:
        for name in ("tokenizer.json", "vocab.txt"):
            (folder / name).unlink()
    code, _, stderr = build_json(str(folder), "--calib", str(hf_zoo.texts), "--out", str(tmp_path / "out"))
    assert code == 2
    assert expected in stderr and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


def test_bad_label_exits_2_naming_the_line(hf_zoo, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "the film is good", "label": "positive"}\n{"text": "meh", "label": "neutral"}\n')
    code, _, stderr = build_json(str(hf_zoo.classifier), "--calib", str(hf_zoo.texts), "--eval", str(bad),
                                 "--out", str(tmp_path / "out"), *FAST)
    assert code == 2 and "bad.jsonl:2: unknown label 'neutral'" in stderr


def test_jetson_gives_qdq_onnx_and_deferred_engine(hf_zoo, classifier_cpu, tmp_path):
    """Last: reuses load and export from the CPU build; the engine step belongs to compile_tensorrt."""
    code, doc, stderr = build_json(str(hf_zoo.classifier), "--target", "jetson", "--calib", str(hf_zoo.texts),
                                   "--eval", str(hf_zoo.labeled), "--out", str(tmp_path / "jetson"), *FAST)
    assert code == 0, stderr
    assert doc["target"]["backend"] == "tensorrt" and doc["engine"]["status"] == "deferred"
    assert Path(doc["engine"]["plan"]).is_file() and "input_ids:" in doc["engine"]["trtexec"]
    ops = {n.op_type for n in onnx.load(doc["artifacts"]["onnx_int8"]).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "MatMul"} <= ops
    assert doc["metrics"]["int8"]["agreement"] >= 0.97
    assert {s["name"]: s["cached"] for s in doc["stages"]}["export"] is True
