"""Keep a GGUF's own 4-bit blocks instead of rounding twice (issue 18).

A Q4_1 block is 32 weights along K: fp16 scale `d`, fp16 minimum `m`, 16 bytes of nibbles (element
i in the low nibble of byte i, element i+16 in the high nibble), `w = d*q + m`. MatMulNBits (block
32) dequantizes `(q - zp) * scale`; with scale = d and a float zero point zp = -m/d (MatMulNBits
takes zero points of the scales' type) it is the same grid, so the file's q values are written as
they are. Q4_0 (`w = d*(q - 8)`) is zp 8. Read with gguf.GGUFReader (no code runs).

transformers' GGUF loader undoes llama.cpp's q/k row permutation for Llama; the same permutation
of output rows (N) is applied to the blocks here, so the rows line up with the exported graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

_NAMES = {"self_attn/q_proj": "attn_q", "self_attn/k_proj": "attn_k", "self_attn/v_proj": "attn_v",
          "self_attn/o_proj": "attn_output", "mlp/gate_proj": "ffn_gate", "mlp/up_proj": "ffn_up", "mlp/down_proj": "ffn_down"}


def _gguf_name(node_name: str) -> str | None:
    """'/model/layers.3/self_attn/q_proj/MatMul_Q4' -> 'blk.3.attn_q.weight'."""
    parts = node_name.strip("/").split("/")
    if len(parts) < 4 or not parts[1].startswith("layers."):
        return None
    short = _NAMES.get("/".join(parts[2:4]))
    return f"blk.{parts[1].split('.')[1]}.{short}.weight" if short else None


def _row_order(kind: str, rows: int, heads: int) -> np.ndarray:
    """Row i of the HF weight is row order[i] of the GGUF tensor (Llama q/k only)."""
    index = np.arange(rows)
    if kind not in ("attn_q", "attn_k"):
        return index
    # llama.cpp permute: w.reshape(h, 2, r//h//2, ...).swapaxes(1, 2); HF = its inverse
    return index.reshape(heads, rows // heads // 2, 2).swapaxes(1, 2).reshape(rows)


def _blocks(data: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(q [N, blocks, 32] uint8, scale [N, blocks] f32, zp [N, blocks] f32) of a Q4_0/Q4_1 tensor."""
    rows = data.shape[0]
    size = 20 if kind == "Q4_1" else 18
    blocks = data.reshape(rows, -1, size)
    d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
    if kind == "Q4_1":
        m = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        nibbles = blocks[..., 4:]
    else:
        m = None
        nibbles = blocks[..., 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1)
    if kind == "Q4_0":
        return q, d, np.full_like(d, 8.0)
    if np.any(d == 0):
        return None  # a constant block cannot be written as (q - zp) * 0; keep edgeopt's own rounding
    return q, d, -m / d


def apply_blocks(onnx_path: Path, gguf_path: Path, heads: int, kv_heads: int, model_type: str) -> dict:
    """Overwrite the 4-bit MatMulNBits weights of `onnx_path` with the GGUF's own blocks, in place.
    Returns how many matrices were kept exactly and how many were left re-quantized."""
    import onnx  # heavy
    from gguf import GGUFReader
    from onnx import numpy_helper

    reader = GGUFReader(str(gguf_path))
    tensors = {t.name: t for t in reader.tensors}
    model = onnx.load(str(onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    kept, left = 0, []
    for node in model.graph.node:
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: a.i for a in node.attribute}
        name = _gguf_name(node.name)
        tensor = tensors.get(name) if name else None
        kind = tensor.tensor_type.name if tensor is not None else None
        if attrs.get("bits") != 4 or attrs.get("block_size") != 32 or kind not in ("Q4_0", "Q4_1") or len(node.input) < 4:
            left.append(node.name)
            continue
        parts = _blocks(np.asarray(tensor.data), kind)
        if parts is None:
            left.append(node.name)
            continue
        q, scale, zp = parts
        short = name.split(".")[2]
        order = _row_order(short, q.shape[0], heads if short == "attn_q" else kv_heads) if model_type == "llama" \
            else np.arange(q.shape[0])
        q, scale, zp = q[order], scale[order], zp[order]
        packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)  # MatMulNBits: element 2i low, 2i+1 high
        b_name, s_name, z_name = node.input[1], node.input[2], node.input[3]
        inits[b_name].CopyFrom(numpy_helper.from_array(packed.reshape(q.shape[0], q.shape[1], 16), b_name))
        inits[s_name].CopyFrom(numpy_helper.from_array(scale.reshape(-1).astype(np.float32), s_name))
        inits[z_name].CopyFrom(numpy_helper.from_array(zp.reshape(-1).astype(np.float32), z_name))
        kept += 1
    onnx.save_model(model, str(onnx_path))
    return {"exact_gguf_matrices": kept, "requantized_matrices": len(left)}
