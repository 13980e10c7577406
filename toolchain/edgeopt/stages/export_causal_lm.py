"""Float causal-LM folder -> FP32 ONNX with KV cache (inputs input_ids, attention_mask,
[position_ids,] past_key_values.N.key/value; outputs logits, present.N.key/value).

Two maintained exporters, chosen per architecture:

- onnxruntime-genai's model builder (`onnxruntime_genai.models.builder`) for the architectures it
  knows (`BUILDER_ARCHITECTURES`): GroupQueryAttention, RotaryEmbedding and
  SkipSimplifiedLayerNormalization fused, packed qkv, a KV buffer shared between past and present.
  Chosen because it is what onnxruntime-genai (the CPU deployable's runtime) is built around and,
  measured on SmolLM2-135M (benchmarks/llm_graphs/README.md, 2 threads, interleaved, busy host):
  its fp32 graph decodes 1.23-1.55x faster than optimum's (whose decode step is mostly ~2,500
  small unfused attention/shape ops), and the weight-only candidates keep the lead (exact-GGUF
  int4 at accuracy level 4: 2.30x FP32 on it, 1.79x on optimum's). ONNX Runtime's transformers
  optimizer does not reach that graph from optimum's export: on SmolLM2 it fuses 60
  RotaryEmbedding and 60 SkipSimplifiedLayerNormalization but no attention, leaving 5,087 nodes
  (the builder's graph: 342) (benchmarks/llm_graphs/ortopt.py; op counts, not timed).
- optimum-onnx `main_export(task="text-generation-with-past")`, the fallback for every other
  architecture and for any builder failure (`exporter="auto"`).

onnxruntime-genai 0.18's builder targets transformers 5; `_genai_builder` is the one door that lets
it run under transformers 4.57 (see there). Remote code is never trusted (`hf_remote` stays false;
the source folder was already refused if it has `auto_map`).

Parity is checked as the export stage does for other models, on real text: the torch model and
the ONNX model (ONNX Runtime, batch 1, empty cache) score the same token ids; the largest logit
difference and the share of equal argmax tokens are recorded, and a greedy continuation with the
KV cache must give torch's tokens.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path

import numpy as np

from edgeopt.build_dir import LAYOUT
from edgeopt.errors import BadInput, cause_text

ONNX_NAME = LAYOUT.causal_lm_onnx
MAX_LOGIT_DIFF = 1e-2  # fp32 vs fp32; measured ~1e-4 on SmolLM2-135M (optimum and builder)
EXPORTERS = ("auto", "genai-builder", "optimum")
# the builder's create_model dispatch (builder.py) for decoder-only text models edgeopt also
# detects; tested here: Llama (SmolLM2-135M, tiny random config) and Qwen2 (tiny random config)
BUILDER_ARCHITECTURES = ("LlamaForCausalLM", "MistralForCausalLM", "Qwen2ForCausalLM", "Qwen3ForCausalLM",
                         "Phi3ForCausalLM", "GemmaForCausalLM", "Gemma2ForCausalLM", "GraniteForCausalLM",
                         "OlmoForCausalLM")
_BUILDER_FAILURES = (NotImplementedError, ValueError, KeyError, RuntimeError, TypeError, AttributeError, OSError,
                     ImportError, AssertionError, IndexError)
# transformers 5 classes builders/base.py imports at module level but uses only for other architectures
_TRANSFORMERS_5_NAMES = ("Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration",
                         "Qwen3VLForConditionalGeneration", "Lfm2VlForConditionalGeneration",
                         "Mistral3ForConditionalGeneration", "Qwen2_5_VLForConditionalGeneration",
                         "Gemma3ForConditionalGeneration")


def export(folder: Path, out: Path, opset: int = 17, exporter: str = "auto") -> Path:
    """Export `folder` into `out`; returns the ONNX file (external data, if any, beside it as
    `model.onnx_data`)."""
    if exporter not in EXPORTERS:
        raise BadInput(f"exporter {exporter}: expected one of {', '.join(EXPORTERS)}")
    architecture = (json.loads((folder / "config.json").read_text()).get("architectures") or [""])[0]
    if exporter == "genai-builder" or (exporter == "auto" and architecture in BUILDER_ARCHITECTURES):
        try:
            return _builder_export(folder, out)
        except _BUILDER_FAILURES as exc:
            if exporter == "genai-builder":
                raise BadInput(f"{folder}: onnxruntime-genai's builder failed ({cause_text(exc)})") from None
            shutil.rmtree(out, ignore_errors=True)  # no half-written graph; optimum starts clean
    return _optimum_export(folder, out, opset)


def exporter_of(onnx_path: Path) -> str:
    """Which exporter wrote `onnx_path` (the builder's graph has GroupQueryAttention)."""
    import onnx  # heavy

    ops = {n.op_type for n in onnx.load(str(onnx_path), load_external_data=False).graph.node}
    return "genai-builder" if "GroupQueryAttention" in ops else "optimum"


def _optimum_export(folder: Path, out: Path, opset: int) -> Path:
    # heavy: optimum imports torch and transformers
    from optimum.exporters.onnx import main_export

    try:
        main_export(str(folder), output=str(out), task="text-generation-with-past", opset=opset,
                    local_files_only=True, trust_remote_code=False, do_validation=False)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise BadInput(f"{folder}: the KV-cache ONNX export failed ({cause_text(exc)})") from None
    return out / ONNX_NAME


def _builder_export(folder: Path, out: Path) -> Path:
    builder = _genai_builder()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "builder_cache"
    chatter = io.StringIO()  # the builder prints progress (stdout, tqdm on stderr): keep it off edgeopt's --json
    with _rope_parameters(), contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        extra = builder.parse_extra_options(None, str(folder), str(out), "fp32", "cpu", str(cache), [])
        builder.create_model(None, str(folder), str(out), "fp32", "cpu", str(cache), **extra)
    shutil.rmtree(cache, ignore_errors=True)
    path = out / ONNX_NAME
    _settle(path, folder)
    return path


def _settle(path: Path, folder: Path) -> None:
    """The builder's graph in edgeopt's layout: external data renamed to `model.onnx_data` (as
    optimum and genai.write_folder name it), and the head size written into the KV inputs and
    outputs (the builder leaves it symbolic, `kv_cache_dim`) so a session can make an empty cache."""
    import onnx  # heavy

    model = onnx.load(str(path), load_external_data=False)
    config = json.loads((folder / "config.json").read_text())
    head = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    old, new = path.name + ".data", path.name + "_data"
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location" and entry.value == old:
                entry.value = new
    for value in list(model.graph.input) + list(model.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param == "kv_cache_dim":
                dim.dim_value = head
    if (path.parent / old).is_file():
        (path.parent / old).rename(path.parent / new)
    onnx.save_model(model, str(path))


def _genai_builder():
    """onnxruntime-genai's builder module, importable under transformers 4.57: builders/base.py
    imports transformers 5 class names at module level that no Llama/Qwen2 path uses, so absent
    names get an empty placeholder class for the import only (removed again right after)."""
    import transformers  # heavy

    added = [name for name in _TRANSFORMERS_5_NAMES if not hasattr(transformers, name)]
    for name in added:
        setattr(transformers, name, type(name, (), {}))
    try:
        from onnxruntime_genai.models import builder  # heavy: imports torch and the builders
    finally:
        for name in added:
            delattr(transformers, name)
    return builder


@contextlib.contextmanager
def _rope_parameters():
    """The builder reads rope parameters transformers 5's way (`rope_scaling` holding rope_type and
    rope_theta); transformers 4.57 leaves `rope_scaling` None for plain RoPE. For the builder's own
    AutoConfig loads only, give it the equivalent dict; restored on exit."""
    import transformers  # heavy

    original = transformers.AutoConfig.from_pretrained

    def from_pretrained(*args, **kwargs):
        config = original(*args, **kwargs)
        if getattr(config, "rope_scaling", 0) is None and hasattr(config, "rope_theta"):
            config.rope_scaling = {"rope_type": "default", "rope_theta": config.rope_theta}
        return config

    transformers.AutoConfig.from_pretrained = from_pretrained
    try:
        yield
    finally:
        transformers.AutoConfig.from_pretrained = original


def parity(folder: Path, onnx_path: Path, token_ids: list[int], new_tokens: int = 8) -> dict:
    """Torch vs ONNX on the same ids: max logit difference, argmax agreement, greedy tokens equal."""
    import torch  # heavy
    import transformers

    from edgeopt.backends.onnxruntime.genai import CausalSession, greedy

    model = transformers.AutoModelForCausalLM.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)
    model.eval()
    ids = torch.tensor([token_ids])
    with torch.no_grad():
        reference = model(ids).logits[0].numpy()
        torch_tokens = model.generate(ids, max_new_tokens=new_tokens, do_sample=False, min_new_tokens=new_tokens,
                                      pad_token_id=0)[0, len(token_ids):].tolist()
    session = CausalSession(onnx_path)
    logits = session.score(token_ids)
    onnx_tokens = greedy(session, token_ids, new_tokens)
    diff = float(np.abs(logits - reference).max())
    result = {"max_abs_logit_diff": diff, "argmax_agreement": float((logits.argmax(-1) == reference.argmax(-1)).mean()),
              "greedy_equal": onnx_tokens == torch_tokens, "tokens": len(token_ids), "greedy_tokens": new_tokens,
              "exporter": exporter_of(onnx_path)}
    if diff > MAX_LOGIT_DIFF or not result["greedy_equal"]:
        raise BadInput(f"{onnx_path}: the ONNX export differs from torch (max logit difference {diff:.3g}, "
                       f"greedy tokens equal: {result['greedy_equal']}); report this with the model's config.json")
    return result
