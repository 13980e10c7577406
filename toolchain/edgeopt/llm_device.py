"""The Jetson half of the LLM build (issue 18): which device runtime and precision, and the device
folder it writes (plan, scripts, inputs; never an engine). The decisions themselves are
backends/tensorrt/edge_llm.py's (pure); this module applies them to one build's measured candidates."""

from __future__ import annotations

from edgeopt.backends.tensorrt import edge_llm
from edgeopt.build_dir import LAYOUT
from edgeopt.errors import BadInput
from edgeopt.results import EngineSummary

def choose(facts, params: int, target, context, candidates, gate, source, exact) -> dict:
    """Jetson: llama.cpp on the GGUF's own bytes (validated here through its exact blocks), else TensorRT
    Edge-LLM at the smallest Orin precision whose host proxy is within the gate and that fits."""
    if source.kind == "gguf":
        fit = edge_llm.llama_cpp_memory(facts, source.path.stat().st_size, context, target.device.memory_gb)
        if not fit["run_fits"]:
            raise BadInput(f"{source.path}: does not fit {target.name}: GGUF {fit['weights_mb']:.0f} MB + KV cache "
                           f"{fit['kv_cache_mb']:.0f} MB at {context} tokens + runtime {fit['runtime_mb']} MB = "
                           f"{fit['run_mb']:.0f} MB > {fit['usable_mb']:.0f} MB usable of {fit['device_mb']:.0f} MB")
        same = bool(exact) and exact.get("requantized_matrices", 1) == 0
        return {"runtime": "llama.cpp-cuda", "precision": "gguf", "proxy": "int4" if exact else None, "memory": fit,
                "candidates": [fit], "same_weights_as_host": same}
    within = {c["precision"]: c["calib_increase"] <= gate for c in candidates}
    try:
        choice = edge_llm.choose(facts, params, target, context, within)
    except BadInput as exc:
        raise BadInput(f"{source.path}: {exc}") from None
    return {"runtime": "tensorrt-edge-llm", **choice, "same_weights_as_host": False}


def write(device, staging, out, folder, target, context, calib, evaluation, prompts, new_tokens, metrics, source):
    """The device folder (plan, scripts, inputs; no engine) and the deferred engine block."""
    host = {"what": "perplexity/KL/agreement through ONNX Runtime on this host",
            "precision": metrics.get("precision") or device.get("proxy") or "fp32",
            "same_weights_as_device": device["same_weights_as_host"],
            "perplexity_increase": metrics["perplexity_increase"], "agreement": metrics["agreement"],
            "note": ("the GGUF's own 4-bit blocks, kept exactly: the bytes llama.cpp runs" if device["same_weights_as_host"]
                     else "edgeopt's own weight-only quantization of the same float weights: a proxy; Edge-LLM's "
                     "ModelOpt AWQ/SmoothQuant weights are made on the GPU host and judged on the device")}
    if device["runtime"] == "llama.cpp-cuda":
        path = edge_llm.write_llama_cpp_folder(staging / LAYOUT.llama_cpp_dir, source.path, target, device["memory"],
                                               context, evaluation, host)
    else:
        path = edge_llm.write_edge_llm_folder(staging / LAYOUT.edge_llm_dir, folder, target, device, context, calib,
                                              prompts, new_tokens, host)
    plan = path / LAYOUT.edge_llm_plan
    engine = EngineSummary(status="deferred", plan=str(out / plan.relative_to(staging)),
                           reason=f"{device['runtime']} builds on the device: run {LAYOUT.edge_llm_device_script} there "
                                  "(no engine is built on this workstation)",
                           notes=[host["note"]])
    return path, engine
