"""GGUF Q4_0/Q4_1/Q8_0 blocks map exactly onto MatMulNBits (uint8 zero points + the residual
correction for Q4_1), the Llama q/k row order, and the builder's packed qkv."""

from __future__ import annotations

import numpy as np
import pytest

from edgeopt.models import gguf


def _q4_1_raw(q, d, m):
    rows, nb = d.shape
    raw = np.zeros((rows, nb, 20), np.uint8)
    raw[..., 0:2] = d[..., None].view(np.uint8).reshape(rows, nb, 2)
    raw[..., 2:4] = m[..., None].view(np.uint8).reshape(rows, nb, 2)
    raw[..., 4:] = q[..., :16] | (q[..., 16:] << 4)
    return raw.reshape(rows, nb * 20)


def test_q4_1_block_is_d_times_q_minus_z_plus_residual():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 16, size=(3, 2, 32), dtype=np.uint8)
    d = np.array([[0.01, 0.02], [0.5, 0.0], [1.0, 0.25]], np.float16)  # one constant block (d == 0)
    m = np.array([[-0.1, 0.2], [-3.0, 0.7], [0.5, -0.25]], np.float16)
    got_q, scale, z, c = gguf.blocks(_q4_1_raw(q, d, m), "Q4_1")
    assert np.array_equal(got_q, q) and z.dtype == np.uint8 and z.max() <= 15
    expected = d.astype(np.float32)[..., None] * q + m.astype(np.float32)[..., None]
    got = (got_q.astype(np.float32) - z[..., None]) * scale[..., None] + c[..., None]
    assert np.abs(got - expected).max() < 1e-6
    inside = (z > 0) & (z < 15) & (scale > 0)  # z = round(-m/d) unclipped: the residual is at most d/2
    assert np.all(np.abs(c[inside]) <= scale[inside] / 2 + 1e-7)
    assert np.any(c != 0)  # some residuals are non-zero: the correction is needed


def test_q8_0_block_is_uint8_with_zero_point_128():
    rng = np.random.default_rng(1)
    qi = rng.integers(-128, 128, size=(2, 3, 32)).astype(np.int8)
    d = rng.uniform(0.001, 0.1, size=(2, 3)).astype(np.float16)
    raw = np.zeros((2, 3, 34), np.uint8)
    raw[..., 0:2] = d[..., None].view(np.uint8).reshape(2, 3, 2)
    raw[..., 2:] = qi.view(np.uint8)
    q, scale, z, c = gguf.blocks(raw.reshape(2, 102), "Q8_0")
    got = (q.astype(np.float32) - z[..., None]) * scale[..., None]
    assert np.array_equal(got, d.astype(np.float32)[..., None] * qi) and not np.any(c)


def test_zero_points_pack_two_blocks_per_byte_low_nibble_first():
    z = np.array([[1, 2, 3], [4, 5, 6]], np.uint8)
    assert gguf._pack_zero_points(z, 4).tolist() == [0x21, 0x03, 0x54, 0x06]
    assert gguf._pack_zero_points(z, 8).tolist() == [1, 2, 3, 4, 5, 6]


def test_llama_row_order_undoes_the_llama_cpp_permutation():
    heads, rows = 3, 12
    hf = np.arange(rows)
    permuted = hf.reshape(heads, 2, rows // heads // 2).swapaxes(1, 2).reshape(rows)  # llama.cpp's convert
    assert np.array_equal(permuted[gguf._row_order("attn_q", rows, heads)], hf)
    assert gguf._gguf_names("/model/layers.3/self_attn/q_proj/MatMul_Q4") == ["blk.3.attn_q.weight"]
    assert gguf._gguf_names("/model/layers.3/attn/qkv_proj/MatMul_Q4") == [
        "blk.3.attn_q.weight", "blk.3.attn_k.weight", "blk.3.attn_v.weight"]
    assert gguf._gguf_names("/lm_head/MatMul_Q8") == ["token_embd.weight"]
    assert gguf._gguf_names("/model/embed_tokens/Gather") == []


def _matmul_model(path, weights: dict[str, np.ndarray]):
    """x -> one MatMul per weight, all reading x (as q/k/v do), named like the graph's projections."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    k = next(iter(weights.values())).shape[0]
    nodes, outputs, inits = [], [], []
    for i, (name, w) in enumerate(weights.items()):
        inits.append(numpy_helper.from_array(w, f"w{i}"))
        nodes.append(helper.make_node("MatMul", ["x", f"w{i}"], [f"y{i}"], name=name))
        outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, [1, None, w.shape[1]]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, None, k])], outputs, inits)
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


@pytest.mark.parametrize("level", [1, 4])
def test_rewritten_graph_computes_the_gguf_weights(tmp_path, level):
    """A real GGUF file (gguf's writer) + ORT's quantizer output -> apply_blocks -> ONNX Runtime
    computes x @ dequantize(file) (fp32 compute: to rounding; int8 activations: within their error),
    while the re-rounded int4 is visibly further off."""
    import onnxruntime as ort
    from gguf import GGMLQuantizationType, GGUFWriter, quants

    from edgeopt.stages import quantize_weight_only as wo

    rng = np.random.default_rng(2)
    k, heads = 64, 2
    shapes = {"attn_q": (64, k), "attn_k": (32, k), "attn_v": (32, k), "ffn_down": (48, k)}
    writer = GGUFWriter(str(tmp_path / "m.gguf"), "llama")
    float_w = {}
    for short, (n, kk) in shapes.items():
        w = (rng.standard_normal((n, kk)) * 0.05 + 0.02).astype(np.float32)
        kind = GGMLQuantizationType.Q4_0 if short == "ffn_down" else GGMLQuantizationType.Q4_1
        raw = quants.quantize(w, kind)
        writer.add_tensor(f"blk.0.{short}.weight", raw, raw_dtype=kind)
        float_w[short] = quants.dequantize(raw, kind)  # the file's own weights, GGUF row order
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    hf = {s: w[gguf._row_order(s, w.shape[0], heads if s == "attn_q" else 1)] for s, w in float_w.items()}
    qkv = np.concatenate([hf["attn_q"], hf["attn_k"], hf["attn_v"]]).T.copy()
    _matmul_model(tmp_path / "f.onnx", {"/model/layers.0/attn/qkv_proj/MatMul": qkv,
                                        "/model/layers.0/self_attn/k_proj/MatMul": hf["attn_k"].T.copy(),
                                        "/model/layers.0/mlp/down_proj/MatMul": hf["ffn_down"].T.copy()})
    wo.quantize(tmp_path / "f.onnx", tmp_path / "q.onnx", wo.WeightOnlyConfig(bits=4))
    x = rng.standard_normal((1, 5, k)).astype(np.float32)
    expected = [x[0] @ qkv, x[0] @ hf["attn_k"].T, x[0] @ hf["ffn_down"].T]
    requantized = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    result = gguf.apply_blocks(tmp_path / "q.onnx", tmp_path / "m.gguf", heads, 1, "llama", accuracy_level=level)
    assert result == {"exact_gguf_matrices": 3, "requantized_matrices": 0, "residual_corrections": 2}  # Q4_0: none
    exact = ort.InferenceSession(str(tmp_path / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    tolerance = 1e-4 if level == 1 else 2e-2
    for got, want in zip(exact, expected):
        assert np.abs(got[0] - want).max() < tolerance
    assert np.abs(requantized[0][0] - expected[0]).max() > 5 * np.abs(exact[0][0] - expected[0]).max()
