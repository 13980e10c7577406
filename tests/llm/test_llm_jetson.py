"""The Jetson path of an LLM build (backends/tensorrt/edge_llm.py): precision per profile, the memory
check of the run and of the on-device engine build, the commands, and the build folder it writes
(plan and scripts, never an engine). Model shapes are the real configs' numbers; no GPU anywhere."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llm_zoo import texts, tiny_llama  # noqa: F401 - fixtures

from edgeopt import targets
from edgeopt.backends.tensorrt import edge_llm
from edgeopt.errors import BadInput

# config.json numbers of the real models (Hugging Face), parameter counts as their model cards give them
SMOLLM2_135M = ({"vocab_size": 49152, "hidden_size": 576, "num_layers": 30, "num_kv_heads": 3, "head_size": 64,
                 "tied_embeddings": True}, 134_515_008)
LLAMA32_1B = ({"vocab_size": 128256, "hidden_size": 2048, "num_layers": 16, "num_kv_heads": 8, "head_size": 64,
               "tied_embeddings": True}, 1_235_814_400)
LLAMA32_3B = ({"vocab_size": 128256, "hidden_size": 3072, "num_layers": 28, "num_kv_heads": 8, "head_size": 128,
               "tied_embeddings": True}, 3_212_749_824)
NANO = targets.resolve("jetson")


def test_orin_profiles_are_supported_and_xavier_is_not():
    assert edge_llm.supports(NANO) and edge_llm.supports(targets.resolve("jetson-agx-orin-64gb"))
    assert not edge_llm.supports(targets.resolve("jetson-xavier-nx"))  # SM 7.2, JetPack 5.1: no Edge-LLM release


def test_smallest_precision_within_the_gate_that_fits():
    facts, params = SMOLLM2_135M
    assert edge_llm.choose(facts, params, NANO, 2048, {"int4": True, "int8": True})["precision"] == "int4_awq"
    assert edge_llm.choose(facts, params, NANO, 2048, {"int4": False, "int8": True})["precision"] == "int8_sq"
    choice = edge_llm.choose(facts, params, NANO, 2048, {})
    assert choice["precision"] == "fp16" and choice["proxy"] is None
    mem = choice["memory"]
    assert mem["kv_cache_mb"] == pytest.approx(2 * 30 * 3 * 64 * 2048 * 2 / 2**20, abs=0.06)  # FP16 KV: 45 MB
    assert mem["weights_mb"] == pytest.approx(params * 2 / 2**20, abs=0.06)  # all FP16
    assert mem["build_mb"] == pytest.approx(params * 4 / 2**20 + edge_llm.BUILDER_BASE_MB, abs=0.06)


def test_int4_keeps_embedding_in_fp16():
    facts, params = LLAMA32_1B
    mem = edge_llm.memory(facts, params, "int4_awq", 4096, 8)
    embed = 128256 * 2048
    assert mem["weights_mb"] == pytest.approx((embed * 2 + (params - embed) * (0.5 + 2 / 128)) / 2**20, abs=0.06)


def test_engine_build_that_cannot_fit_is_refused_with_the_numbers():
    facts, params = LLAMA32_3B  # 3.2 B parameters x 4 bytes: ~13 GB to build, on an 8 GB Orin Nano
    with pytest.raises(BadInput, match=r"engine build needs 13\d\d\d MB .* > 7168 MB usable of 8192 MB, at any precision"):
        edge_llm.choose(facts, params, NANO, 4096, {"int4": True, "int8": True})
    assert edge_llm.choose(facts, params, targets.resolve("jetson-agx-orin-64gb"), 4096, {})["precision"] == "fp16"


def test_run_that_fits_only_below_the_gate_is_refused():
    facts, params = LLAMA32_1B  # a 128k-token KV cache: 4 GB; FP16 weights 2.4 GB; build fits
    assert edge_llm.choose(facts, params, NANO, 131072, {"int8": True})["precision"] == "int8_sq"
    with pytest.raises(BadInput, match=r"KV cache 4096 MB at 131072 tokens .* > 7168 MB usable"):
        edge_llm.choose(facts, params, NANO, 131072, {"int4": False, "int8": False})


def test_commands_follow_the_precision_and_the_capacity():
    names = {k: k for k in ("checkpoint", "calibration", "onnx", "quantized", "engines", "input", "output")}
    int4 = edge_llm.commands(NANO, "int4_awq", 2048, names)
    assert int4["release"] == "v0.6.0"  # JetPack 6.2
    assert int4["host_gpu"][0].startswith("tensorrt-edgellm-quantize-llm --model_dir checkpoint --output_dir quantized "
                                          "--quantization int4_awq")
    assert int4["host_gpu"][1] == "tensorrt-edgellm-export-llm --model_dir quantized --output_dir onnx"
    assert "--maxBatchSize 1 --maxInputLen 1024 --maxKVCacheCapacity 2048" in int4["device"][0]
    fp16 = edge_llm.commands(NANO, "fp16", 512, names)
    assert fp16["host_gpu"] == ["tensorrt-edgellm-export-llm --model_dir checkpoint --output_dir onnx"]
    assert "--maxInputLen 512 --maxKVCacheCapacity 512" in fp16["device"][0]
    assert "-DEMBEDDED_TARGET=jetson-orin -DCUDA_CTK_VERSION=12.6" in fp16["device_setup"][1]


def test_jetson_build_writes_the_plan_and_defers_the_engine(tiny_llama, texts, tmp_path):
    from conftest import build_json

    calib, evaluation = texts
    code, document, stderr = build_json(str(tiny_llama), "--target", "jetson", "--calib", str(calib), "--eval",
                                        str(evaluation), "--out", str(tmp_path / "build"))
    assert document is not None, stderr
    assert document["engine"]["status"] == "deferred" and "build_on_device.sh" in document["engine"]["reason"]
    folder = Path(document["artifacts"]["deployable"])
    plan = json.loads((folder / "llm_plan.json").read_text())
    device = document["metrics"]["llm"]["device"]
    assert plan["precision"] == device["precision"] in edge_llm.ORIN_PRECISIONS
    assert plan["memory"]["kv_capacity"] == 256  # the tiny model's own context
    assert (folder / "hf_checkpoint" / "model.safetensors").is_file() and (folder / "hf_checkpoint" / "config.json").is_file()
    assert "llm_build --onnxDir edge_llm_onnx" in (folder / "build_on_device.sh").read_text()
    requests = json.loads((folder / "llm_input.json").read_text())["requests"]
    assert requests and requests[0]["messages"][0]["content"]
    assert not list(Path(document["build_dir"]).rglob("*.engine"))  # never an engine on the workstation
    assert plan["host_validation"]["same_weights_as_device"] is False  # said, not hidden
    assert code == (0 if document["status"] == "ok" else 1)
    from edgeopt.report.summary_llm import render_llm

    summary = render_llm(document)
    assert "engine         deferred" in summary and f"tensorrt-edge-llm at {plan['precision']}" in summary


def test_xavier_refuses_a_hugging_face_model_in_one_line(tiny_llama, texts, tmp_path):
    from helpers.cli_lines import assert_one_line, run

    calib, _ = texts
    code, lines = run("build", str(tiny_llama), "--target", "jetson-xavier-nx", "--calib", str(calib),
                      "--out", str(tmp_path / "x"))
    assert_one_line(code, lines, 2, "TensorRT Edge-LLM needs a Jetson Orin", ".gguf")
    assert not (tmp_path / "x").exists()


def test_llm_device_chooses_from_the_measured_candidates_and_the_gguf_bytes(tmp_path):
    """llm_device.choose: Edge-LLM at the smallest precision whose calibration-split increase is
    within the gate; a GGUF source goes to llama.cpp on its own bytes, refused when they cannot fit."""
    from types import SimpleNamespace

    from edgeopt import llm_device

    facts, params = SMOLLM2_135M
    hf = SimpleNamespace(kind="hf", path=tmp_path / "smollm2")
    measured = [{"precision": "int4", "calib_increase": 0.08}, {"precision": "int8", "calib_increase": 0.004}]
    choice = llm_device.choose(facts, params, NANO, 2048, measured, 0.01, hf, None)
    assert choice["runtime"] == "tensorrt-edge-llm" and choice["precision"] == "int8_sq"
    assert choice["same_weights_as_host"] is False  # the host's INT8 is a proxy for ModelOpt's SmoothQuant
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"\0" * 1024)
    small = llm_device.choose(facts, params, NANO, 2048, measured, 0.01, SimpleNamespace(kind="gguf", path=gguf),
                              {"requantized_matrices": 0})
    assert small["runtime"] == "llama.cpp-cuda" and small["same_weights_as_host"] is True
    tiny_device = NANO.model_copy(update={"device": NANO.device.model_copy(update={"memory_gb": 1.0})})
    with pytest.raises(BadInput, match=r"m\.gguf: does not fit .* > 0 MB usable of 1024 MB"):
        llm_device.choose(facts, params, tiny_device, 2048, measured, 0.01, SimpleNamespace(kind="gguf", path=gguf), None)
