"""Float causal-LM folder -> FP32 ONNX with KV cache, through optimum-onnx's maintained exporter
(`main_export(task="text-generation-with-past")`: inputs input_ids, attention_mask, position_ids,
past_key_values.N.key/value; outputs logits, present.N.key/value).

Parity is checked as the export stage does for other models, on real text: the torch model and
the ONNX model (ONNX Runtime, batch 1, empty cache) score the same token ids; the largest logit
difference and the share of equal argmax tokens are recorded, and a greedy continuation with the
KV cache must give torch's tokens.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeopt.build_dir import LAYOUT
from edgeopt.errors import BadInput, cause_text

ONNX_NAME = LAYOUT.causal_lm_onnx
MAX_LOGIT_DIFF = 1e-2  # fp32 vs fp32; measured ~1e-4 on SmolLM2-135M


def export(folder: Path, out: Path, opset: int = 17) -> Path:
    """Export `folder` into `out`; returns the ONNX file (external data, if any, beside it)."""
    # heavy: optimum imports torch and transformers
    from optimum.exporters.onnx import main_export

    try:
        main_export(str(folder), output=str(out), task="text-generation-with-past", opset=opset,
                    local_files_only=True, trust_remote_code=False, do_validation=False)
    except (OSError, ValueError, KeyError, RuntimeError, TypeError) as exc:
        raise BadInput(f"{folder}: the KV-cache ONNX export failed ({cause_text(exc)})") from None
    return out / ONNX_NAME


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
              "greedy_equal": onnx_tokens == torch_tokens, "tokens": len(token_ids), "greedy_tokens": new_tokens}
    if diff > MAX_LOGIT_DIFF or not result["greedy_equal"]:
        raise BadInput(f"{onnx_path}: the ONNX export differs from torch (max logit difference {diff:.3g}, "
                       f"greedy tokens equal: {result['greedy_equal']}); report this with the model's config.json")
    return result
