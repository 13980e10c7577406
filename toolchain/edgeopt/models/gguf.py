"""Keep a GGUF's own quantized blocks instead of rounding twice (issue 18), on MatMulNBits' fast
uint8-zero-point kernel.

A Q4_1 block is 32 weights along K: fp16 scale `d`, fp16 minimum `m`, 16 bytes of nibbles (element
i in the low nibble of byte i, element i+16 in the high nibble), `w = d*q + m`. MatMulNBits (block
32) computes `d * (q - z)` with an integer zero point z per block. With z = round(-m/d) clipped to
0..15, `w = d*(q - z) + c` where `c = m + d*z` is one constant per (block, output column), so

    x @ W = MatMulNBits(x; q, d, z) + BlockSum(x) @ C        BlockSum(x)[b] = sum of x over block b

with C [K/32, N] fp32 (1/32 of the weights; |c| <= d/2). BlockSum is one MatMul with a constant
0/1 [K, K/32] matrix, shared by every node reading the same activation (q/k/v, gate/up). The file's
q values are written as they are: exact up to fp32 rounding (max |diff| ~1e-6 on SmolLM2's layers,
benchmarks/llm_graphs/exact.py). The earlier form, a float zero point -m/d, is also exact but takes
MatMulNBits' slow CPU fallback (measured 94.5% of a decode step, 0.24x FP32); Q4_1's -m/d is an
integer in only 2% of blocks (benchmarks/llm_graphs/md.py), hence the correction term.
Q4_0 (`w = d*(q - 8)`) is z 8 and needs no correction. Q8_0 (`w = d*q`, int8 q) is 8-bit
MatMulNBits with q + 128 and z 128 (the tied LM head when it is quantized, `head_bits` 8).
Read with gguf.GGUFReader (no code runs).

transformers' GGUF loader undoes llama.cpp's q/k row permutation for Llama; the same permutation
of output rows (N) is applied to the blocks here, so the rows line up with the exported graph.
onnxruntime-genai's builder packs q, k and v into one `qkv_proj` matrix: its blocks are the three
tensors' rows, concatenated.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BLOCK = 32
_NAMES = {"q_proj": ["attn_q"], "k_proj": ["attn_k"], "v_proj": ["attn_v"], "qkv_proj": ["attn_q", "attn_k", "attn_v"],
          "o_proj": ["attn_output"], "gate_proj": ["ffn_gate"], "up_proj": ["ffn_up"], "down_proj": ["ffn_down"]}


def _gguf_names(node_name: str) -> list[str]:
    """'/model/layers.3/self_attn/q_proj/MatMul_Q4' -> ['blk.3.attn_q.weight'] (optimum's names);
    '/model/layers.3/attn/qkv_proj/MatMul_Q4' -> q, k, v (the genai builder's); the LM head
    ('/lm_head/MatMul...') -> the tied embedding, 'token_embd.weight'."""
    parts = node_name.strip("/").split("/")
    if parts and parts[0] == "lm_head":
        return ["token_embd.weight"]
    if len(parts) < 4 or not parts[1].startswith("layers."):
        return []
    layer = parts[1].split(".")[1]
    return [f"blk.{layer}.{short}.weight" for short in _NAMES.get(parts[3], [])]


def _row_order(kind: str, rows: int, heads: int) -> np.ndarray:
    """Row i of the HF weight is row order[i] of the GGUF tensor (Llama q/k only)."""
    index = np.arange(rows)
    if kind not in ("attn_q", "attn_k"):
        return index
    # llama.cpp permute: w.reshape(h, 2, r//h//2, ...).swapaxes(1, 2); HF = its inverse
    return index.reshape(heads, rows // heads // 2, 2).swapaxes(1, 2).reshape(rows)


def _fp16(raw: np.ndarray) -> np.ndarray:
    return raw.copy().view(np.float16)[..., 0].astype(np.float32)


def blocks(data: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(q [N, blocks, 32] uint8, scale d [N, blocks] f32, zero point z [N, blocks] uint8, residual
    c [N, blocks] f32) with w = d*(q - z) + c exactly; None for a type MatMulNBits cannot hold."""
    rows = data.shape[0]
    if kind == "Q8_0":
        raw = data.reshape(rows, -1, 34)
        d = _fp16(raw[..., 0:2])
        q = (raw[..., 2:].view(np.int8).astype(np.int16) + 128).astype(np.uint8)
        return q, d, np.full(d.shape, 128, np.uint8), np.zeros_like(d)
    if kind not in ("Q4_0", "Q4_1"):
        return None
    raw = data.reshape(rows, -1, 20 if kind == "Q4_1" else 18)
    d = _fp16(raw[..., 0:2])
    nibbles = raw[..., 4:] if kind == "Q4_1" else raw[..., 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1)
    if kind == "Q4_0":
        return q, d, np.full(d.shape, 8, np.uint8), np.zeros_like(d)
    m = _fp16(raw[..., 2:4])
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(d == 0, 8, np.round(-m / d)).clip(0, 15).astype(np.uint8)  # d == 0: w = m, all in c
    return q, d, z, m + d * z.astype(np.float32)


def _pack_zero_points(z: np.ndarray, bits: int) -> np.ndarray:
    """MatMulNBits' layout ([N, ceil(blocks * bits / 8)], 4-bit: block 2i low nibble, 2i+1 high)."""
    if bits == 8:
        return z.reshape(-1)
    if z.shape[1] % 2:
        z = np.concatenate([z, np.zeros((z.shape[0], 1), np.uint8)], axis=1)
    return (z[:, 0::2] | (z[:, 1::2] << 4)).astype(np.uint8).reshape(-1)


def _node_blocks(names: list[str], tensors: dict, heads: int, kv_heads: int, model_type: str, bits: int):
    """The GGUF blocks of one MatMulNBits node (several tensors concatenated along N), or None."""
    parts = []
    for name in names:
        tensor = tensors.get(name)
        kind = tensor.tensor_type.name if tensor is not None else None
        if kind is None or (bits == 4) != kind.startswith("Q4_") or (bits == 8 and kind != "Q8_0"):
            return None
        got = blocks(np.asarray(tensor.data), kind)
        if got is None:
            return None
        short = name.split(".")[2] if name.startswith("blk.") else name
        rows = got[0].shape[0]
        order = _row_order(short, rows, heads if short == "attn_q" else kv_heads) if model_type == "llama" else np.arange(rows)
        parts.append([p[order] for p in got])
    return [np.concatenate(column) for column in zip(*parts)]


def apply_blocks(onnx_path: Path, gguf_path: Path, heads: int, kv_heads: int, model_type: str,
                 accuracy_level: int | None = None) -> dict:
    """Overwrite the MatMulNBits weights of `onnx_path` (block 32, uint8 zero points, as ONNX
    Runtime's quantizer writes them) with the GGUF's own blocks, in place, adding the residual
    correction where a block's c is not 0. `accuracy_level` (None: keep the quantizer's) is set on
    the rewritten nodes. Returns how many matrices were kept exactly and how many left re-quantized."""
    import onnx  # heavy
    from gguf import GGUFReader
    from onnx import helper, numpy_helper

    reader = GGUFReader(str(gguf_path))
    tensors = {t.name: t for t in reader.tensors}
    model = onnx.load(str(onnx_path))
    inits = {i.name: i for i in model.graph.initializer}
    kept, left, corrected = 0, [], 0
    nodes, block_sums = [], {}
    for node in model.graph.node:
        nodes.append(node)
        if node.op_type != "MatMulNBits":
            continue
        attrs = {a.name: a for a in node.attribute}
        bits, size, k = (attrs[n].i if n in attrs else None for n in ("bits", "block_size", "K"))
        names = _gguf_names(node.name)
        got = _node_blocks(names, tensors, heads, kv_heads, model_type, bits) if names and size == BLOCK else None
        if got is None or len(node.input) < 4 or got[0].shape[:2] != tuple(inits[node.input[1]].dims[:2]):
            left.append(node.name)
            continue
        q, d, z, c = got
        packed = q if bits == 8 else (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
        for name, value in zip(node.input[1:4], (packed, d.reshape(-1), _pack_zero_points(z, bits))):
            inits[name].CopyFrom(numpy_helper.from_array(value, name))
        if accuracy_level is not None:
            attrs["accuracy_level"].CopyFrom(helper.make_attribute("accuracy_level", accuracy_level)) \
                if "accuracy_level" in attrs else node.attribute.append(helper.make_attribute("accuracy_level", accuracy_level))
        kept += 1
        if not np.any(c):
            continue
        corrected += 1
        x = node.input[0]
        if x not in block_sums:  # BlockSum(x): one MatMul with a 0/1 [K, K/32] matrix, shared per activation
            ones = f"gguf_block_sum_{k}"
            if ones not in inits:
                indicator = (np.arange(k)[:, None] // BLOCK == np.arange(q.shape[1])[None, :]).astype(np.float32)
                inits[ones] = numpy_helper.from_array(indicator, ones)
                model.graph.initializer.append(inits[ones])
            block_sums[x] = f"{x}_gguf_block_sum"
            nodes.insert(len(nodes) - 1, helper.make_node("MatMul", [x, ones], [block_sums[x]], name=f"{node.name}_BlockSum"))
        residual, out = f"{node.name}_gguf_residual", node.output[0]
        model.graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(c.T), residual))
        node.output[0] = f"{out}_nbits"
        nodes += [helper.make_node("MatMul", [block_sums[x], residual], [f"{out}_residual"], name=f"{node.name}_Residual"),
                  helper.make_node("Add", [node.output[0], f"{out}_residual"], [out], name=f"{node.name}_AddResidual")]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    onnx.save_model(model, str(onnx_path))
    return {"exact_gguf_matrices": kept, "requantized_matrices": len(left), "residual_corrections": corrected}
