"""The Jetson path of a decoder-only LLM (issue 18): NVIDIA TensorRT Edge-LLM, every decision made
here with no TensorRT, CUDA or torch import (like plan.py for engines), so a workstation writes the
plan and the commands and a test checks each decision.

Why Edge-LLM: it is NVIDIA's own LLM runtime for Jetson (C++ runtime, no Python on the device), its
Orin precisions are FP16, INT8 SmoothQuant and INT4 AWQ (no FP8/NVFP4 below SM89); TensorRT-LLM's
Jetson branch stopped at v0.12 on AGX Orin; onnxruntime-genai has no aarch64 CUDA wheels
(onnxruntime-genai issue 2283). llama.cpp with CUDA is the portable path, chosen here for a GGUF
source because it runs the file's own blocks: the very weights edgeopt validated on this host.

How Edge-LLM splits the work (its quick-start guide and CLI source): on an x86 host **with a CUDA
GPU** (ModelOpt calibrates on it, `--device cuda`), `tensorrt-edgellm-quantize-llm` then
`tensorrt-edgellm-export-llm` write an ONNX folder (its own plugin ops); on the Jetson, `llm_build
--onnxDir --engineDir --maxBatchSize --maxInputLen --maxKVCacheCapacity` builds the engine and
`llm_inference --engineDir --inputFile --outputFile` runs it. Its export extra pins transformers 5.x,
which optimum-onnx (edgeopt's exporter, < 4.58) excludes, so it cannot run inside edgeopt's
environment; edgeopt writes the float checkpoint it consumes and the commands, never an engine.

Memory: Orin shares one LPDDR5 pool between CPU and GPU. The run needs weights (embedding and LM
head stay FP16: Orin has no LM-head quantization in Edge-LLM) + FP16 KV cache at the capacity +
the CUDA/TensorRT runtime; the engine build needs about 4 bytes per parameter in host RAM
(TensorRT-Edge-LLM issue 30: "~3-4x model parameter count", the upper end taken) plus the builder's
own kernel library, whatever the precision, and the engine must be built on the device.
"""

from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

from edgeopt.build_dir import LAYOUT
from edgeopt.errors import BadInput

# JetPack major -> the Edge-LLM release for it: v0.6.0 is the release documented as validated on
# JetPack 6.2 (later releases target JetPack 7.2 on Orin); the device builds it from source.
RELEASES = {"6": "v0.6.0", "7": "v0.11.0"}
ORIN_PRECISIONS = ("int4_awq", "int8_sq", "fp16")  # smallest first, as the CPU rule
PROXY = {"int4_awq": "int4", "int8_sq": "int8", "fp16": None}  # edgeopt's own weight-only candidate measured on the host
# bytes per weight of a quantized linear layer: INT4 AWQ groups of 128 with an fp16 scale; INT8 SQ
# per-channel scales (negligible); FP16
LINEAR_BYTES = {"int4_awq": 0.5 + 2 / 128, "int8_sq": 1.0, "fp16": 2.0}
RUNTIME_OVERHEAD_MB = 1024  # estimate: CUDA context + TensorRT runtime + Edge-LLM workspaces on Orin (not measured here)
OS_RESERVE_MB = 1024  # estimate: L4T itself and its carveouts, headless
BUILD_BYTES_PER_PARAM = 4  # TensorRT-Edge-LLM issue 30: llm_build needs ~3-4x the parameter count in RAM
BUILDER_BASE_MB = 1024  # TensorRT's builder kernel library (TensorRT-LLM issues 577/2451: +482 to +3255 MiB at init)
MAX_INPUT_LEN = 1024  # the quick-start's --maxInputLen; the prompt is capped by the KV capacity too
ORIN_CUDA = {"6": "12.6", "7": "13.2"}


def supports(target) -> bool:
    """Edge-LLM runs on Orin (SM 8.7) from JetPack 6.2; Xavier (SM 7.2, JetPack 5) has no release."""
    jetpack = tuple(int(part) for part in (target.software.jetpack or "0").split(".") if part.isdigit())
    return target.device.compute_capability == "8.7" and jetpack >= (6, 2) and str(jetpack[0]) in RELEASES


def split_params(facts: dict, params: int) -> dict:
    """Parameters of the embedding, of an untied LM head and of everything else (the linear layers
    Edge-LLM quantizes; norms are a rounding error)."""
    embed = (facts.get("vocab_size") or 0) * (facts.get("hidden_size") or 0)
    head = 0 if facts.get("tied_embeddings") else embed
    return {"embedding": embed, "lm_head": head, "linear": max(params - embed - head, 0)}


def memory(facts: dict, params: int, precision: str, kv_capacity: int, memory_gb: float, batch: int = 1) -> dict:
    """The run and the engine build on the device, in MB, against the memory left after the OS."""
    split = split_params(facts, params)
    weights = (split["embedding"] + split["lm_head"]) * 2 + split["linear"] * LINEAR_BYTES[precision]
    kv = 2 * facts["num_layers"] * facts["num_kv_heads"] * facts["head_size"] * kv_capacity * 2 * batch
    mb = 2**20
    usable = memory_gb * 1024 - OS_RESERVE_MB
    run = weights / mb + kv / mb + RUNTIME_OVERHEAD_MB
    build = params * BUILD_BYTES_PER_PARAM / mb + BUILDER_BASE_MB
    return {"precision": precision, "weights_mb": round(weights / mb, 1), "kv_cache_mb": round(kv / mb, 1),
            "kv_capacity": kv_capacity, "runtime_mb": RUNTIME_OVERHEAD_MB, "run_mb": round(run, 1),
            "build_mb": round(build, 1), "usable_mb": round(usable, 1), "device_mb": memory_gb * 1024,
            "run_fits": run <= usable, "build_fits": build <= usable}


def choose(facts: dict, params: int, target, kv_capacity: int, within_gate: dict[str, bool]) -> dict:
    """The precision for the device: the smallest Orin precision whose host proxy (edgeopt's own
    INT4/INT8 of the same float weights, on the calibration texts) is within the gate and whose
    run fits; FP16 needs no proxy. Refuses, in one line with the numbers, a model whose engine
    build or run fits at no precision."""
    name, gb = target.name, target.device.memory_gb
    rows = [memory(facts, params, p, kv_capacity, gb) for p in ORIN_PRECISIONS]
    build = rows[0]
    if not build["build_fits"]:
        raise BadInput(f"does not fit {name}: the Edge-LLM engine build needs {build['build_mb']:.0f} MB "
                       f"({params / 1e9:.2f} B parameters x {BUILD_BYTES_PER_PARAM} bytes + builder {BUILDER_BASE_MB} MB) "
                       f"> {build['usable_mb']:.0f} MB usable of {build['device_mb']:.0f} MB, at any precision; "
                       "the engine must be built on the device: use a larger Jetson profile")
    for row in rows:
        proxy = PROXY[row["precision"]]
        if row["run_fits"] and (proxy is None or within_gate.get(proxy, False)):
            return {"precision": row["precision"], "proxy": proxy, "memory": row, "candidates": rows}
    smallest = rows[0]
    raise BadInput(f"does not fit {name}: at {smallest['precision']} weights {smallest['weights_mb']:.0f} MB + KV cache "
                   f"{smallest['kv_cache_mb']:.0f} MB at {kv_capacity} tokens + runtime {RUNTIME_OVERHEAD_MB} MB = "
                   f"{smallest['run_mb']:.0f} MB > {smallest['usable_mb']:.0f} MB usable of {smallest['device_mb']:.0f} MB")


def commands(target, precision: str, kv_capacity: int, names: dict) -> dict:
    """The host-GPU export and the device build/run, as command lines run inside the build folder's
    edge_llm folder (`names`: checkpoint, calibration, onnx, quantized, engines, input, output)."""
    jetpack = (target.software.jetpack or "6.2").split(".")[0]
    release = RELEASES[jetpack]
    q = {k: shlex.quote(v) for k, v in names.items()}
    source = q["checkpoint"]
    host = []
    if precision != "fp16":
        host.append(f"tensorrt-edgellm-quantize-llm --model_dir {q['checkpoint']} --output_dir {q['quantized']} "
                    f"--quantization {precision} --dataset_dir {q['calibration']} --device cuda")
        source = q["quantized"]
    host.append(f"tensorrt-edgellm-export-llm --model_dir {source} --output_dir {q['onnx']}")
    max_input = min(MAX_INPUT_LEN, kv_capacity)
    device_setup = [f"git clone --branch {release} --recursive https://github.com/NVIDIA/TensorRT-Edge-LLM.git ~/TensorRT-Edge-LLM",
                    "cmake -S ~/TensorRT-Edge-LLM -B ~/TensorRT-Edge-LLM/build -DTRT_PACKAGE_DIR=/usr "
                    "-DCMAKE_TOOLCHAIN_FILE=cmake/aarch64_linux_toolchain.cmake -DEMBEDDED_TARGET=jetson-orin "
                    f"-DCUDA_CTK_VERSION={ORIN_CUDA[jetpack]}",
                    "cmake --build ~/TensorRT-Edge-LLM/build -j6"]
    device = [f"~/TensorRT-Edge-LLM/build/examples/llm/llm_build --onnxDir {q['onnx']} --engineDir {q['engines']} "
              f"--maxBatchSize 1 --maxInputLen {max_input} --maxKVCacheCapacity {kv_capacity}",
              f"~/TensorRT-Edge-LLM/build/examples/llm/llm_inference --engineDir {q['engines']} "
              f"--inputFile {q['input']} --outputFile {q['output']}"]
    return {"release": release, "host_gpu": host, "device_setup": device_setup, "device": device,
            "max_input_len": max_input, "max_kv_cache_capacity": kv_capacity, "max_batch_size": 1}


def llama_cpp_commands(gguf_name: str, eval_name: str, kv_capacity: int, compute_capability: str) -> dict:
    """The portable path for a GGUF source: llama.cpp built with CUDA on the device, run on the
    file's own bytes (`-ngl 99`: every layer on the GPU)."""
    arch = compute_capability.replace(".", "")
    g, e = shlex.quote(gguf_name), shlex.quote(eval_name)
    return {"device_setup": ["git clone https://github.com/ggml-org/llama.cpp ~/llama.cpp",
                             f"cmake -S ~/llama.cpp -B ~/llama.cpp/build -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES={arch}",
                             "cmake --build ~/llama.cpp/build -j6 --target llama-cli llama-bench llama-perplexity"],
            "device": [f"~/llama.cpp/build/bin/llama-perplexity -m {g} -f {e} -c 256 -ngl 99",
                       f"~/llama.cpp/build/bin/llama-bench -m {g} -p 128 -n 128 -ngl 99",
                       f"~/llama.cpp/build/bin/llama-cli -m {g} -c {kv_capacity} -ngl 99 -no-cnv -p 'Hello'"]}


def llama_cpp_memory(facts: dict, gguf_bytes: int, kv_capacity: int, memory_gb: float) -> dict:
    """llama.cpp on the device: the file's bytes + FP16 KV cache (its default) + the runtime."""
    kv = 2 * facts["num_layers"] * facts["num_kv_heads"] * facts["head_size"] * kv_capacity * 2
    mb = 2**20
    usable = memory_gb * 1024 - OS_RESERVE_MB
    run = gguf_bytes / mb + kv / mb + RUNTIME_OVERHEAD_MB
    return {"precision": "gguf", "weights_mb": round(gguf_bytes / mb, 1), "kv_cache_mb": round(kv / mb, 1),
            "kv_capacity": kv_capacity, "runtime_mb": RUNTIME_OVERHEAD_MB, "run_mb": round(run, 1), "build_mb": 0.0,
            "usable_mb": round(usable, 1), "device_mb": memory_gb * 1024, "run_fits": run <= usable, "build_fits": True}


def inference_input(prompts: list[str], new_tokens: int) -> dict:
    """llm_inference's --inputFile: greedy (top_k 1), the host's validation prompts."""
    return {"batch_size": 1, "temperature": 1.0, "top_p": 1.0, "top_k": 1, "max_generate_length": new_tokens,
            "requests": [{"messages": [{"role": "user", "content": p}]} for p in prompts]}


def script(lines: list[str], comment: str) -> str:
    return "#!/bin/sh\n# " + comment + "\nset -eu\ncd \"$(dirname \"$0\")\"\n" + "\n".join(lines) + "\n"


CHECKPOINT_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                    "special_tokens_map.json", "chat_template.jinja", "model.safetensors.index.json")


def write_edge_llm_folder(out: Path, float_folder: Path, target, choice: dict, kv_capacity: int,
                          calib_texts: list[str], prompts: list[str], new_tokens: int, host: dict) -> Path:
    """`out`: the float checkpoint Edge-LLM's quantizer reads (safetensors, config, tokenizer), the
    calibration texts, llm_inference's input, the two scripts and the plan; no engine."""
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = out / LAYOUT.edge_llm_checkpoint
    checkpoint.mkdir()
    for file in sorted(float_folder.iterdir()):
        if file.suffix == ".safetensors" or file.name in CHECKPOINT_FILES:
            shutil.copyfile(file, checkpoint / file.name)
    calibration = out / LAYOUT.edge_llm_calibration
    calibration.mkdir()
    (calibration / LAYOUT.edge_llm_calibration_texts).write_text("\n".join(calib_texts) + "\n")
    names = {"checkpoint": LAYOUT.edge_llm_checkpoint, "calibration": LAYOUT.edge_llm_calibration,
             "onnx": LAYOUT.edge_llm_onnx, "quantized": LAYOUT.edge_llm_quantized, "engines": LAYOUT.edge_llm_engines,
             "input": LAYOUT.edge_llm_input, "output": LAYOUT.edge_llm_output}
    steps = commands(target, choice["precision"], kv_capacity, names)
    (out / LAYOUT.edge_llm_input).write_text(json.dumps(inference_input(prompts, new_tokens), indent=2) + "\n")
    (out / LAYOUT.edge_llm_host_script).write_text(script(
        steps["host_gpu"], f"on an x86 host with a CUDA GPU and TensorRT Edge-LLM {steps['release']} in its own venv"))
    (out / LAYOUT.edge_llm_device_script).write_text(script(
        steps["device"], f"on the {target.device.product}, after the host script; TensorRT Edge-LLM {steps['release']} "
        "built once: " + " && ".join(steps["device_setup"])))
    plan = {"schema": 1, "runtime": "tensorrt-edge-llm", "target": target.name, "precision": choice["precision"],
            "host_proxy": choice["proxy"], "memory": choice["memory"], "candidates": choice["candidates"],
            "commands": steps, "engine": "deferred: built on the device by llm_build (never on the workstation)",
            "host_validation": host}
    (out / LAYOUT.edge_llm_plan).write_text(json.dumps(plan, indent=2) + "\n")
    return out


def write_llama_cpp_folder(out: Path, gguf: Path, target, fit: dict, kv_capacity: int, eval_texts: list[str],
                           host: dict) -> Path:
    """`out`: the user's GGUF byte for byte, the eval texts, the device script and the plan."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(gguf, out / LAYOUT.llama_cpp_gguf)
    (out / LAYOUT.llama_cpp_eval_texts).write_text("\n".join(eval_texts) + "\n")
    steps = llama_cpp_commands(LAYOUT.llama_cpp_gguf, LAYOUT.llama_cpp_eval_texts, kv_capacity,
                               target.device.compute_capability or "8.7")
    (out / LAYOUT.edge_llm_device_script).write_text(script(
        steps["device"], f"on the {target.device.product}; llama.cpp with CUDA built once: " + " && ".join(steps["device_setup"])))
    plan = {"schema": 1, "runtime": "llama.cpp-cuda", "target": target.name, "precision": "gguf", "memory": fit,
            "commands": steps, "host_validation": host}
    (out / LAYOUT.edge_llm_plan).write_text(json.dumps(plan, indent=2) + "\n")
    return out
