"""GGUF Q4_1 blocks map exactly onto MatMulNBits' (q - zp) * scale, and the Llama q/k row order."""

from __future__ import annotations

import numpy as np

from edgeopt.models import gguf


def test_q4_1_block_is_the_same_grid():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 16, size=(3, 2, 32), dtype=np.uint8)
    d = np.array([[0.01, 0.02], [0.5, 0.003], [1.0, 0.25]], np.float16)
    m = np.array([[-0.1, 0.2], [-3.0, 0.0], [0.5, -0.25]], np.float16)
    raw = np.zeros((3, 2, 20), np.uint8)
    raw[..., 0:2] = d[..., None].view(np.uint8).reshape(3, 2, 2)
    raw[..., 2:4] = m[..., None].view(np.uint8).reshape(3, 2, 2)
    raw[..., 4:] = q[..., :16] | (q[..., 16:] << 4)
    got_q, scale, zp = gguf._blocks(raw.reshape(3, 40), "Q4_1")
    assert np.array_equal(got_q, q)
    expected = d.astype(np.float32)[..., None] * q + m.astype(np.float32)[..., None]
    assert np.allclose((got_q - zp[..., None]) * scale[..., None], expected, atol=1e-6)


def test_llama_row_order_undoes_the_llama_cpp_permutation():
    heads, rows = 3, 12
    hf = np.arange(rows)
    permuted = hf.reshape(heads, 2, rows // heads // 2).swapaxes(1, 2).reshape(rows)  # llama.cpp's convert
    assert np.array_equal(permuted[gguf._row_order("attn_q", rows, heads)], hf)
    assert gguf._gguf_name("/model/layers.3/self_attn/q_proj/MatMul_Q4") == "blk.3.attn_q.weight"
    assert gguf._gguf_name("/lm_head/MatMul_Q4") is None
