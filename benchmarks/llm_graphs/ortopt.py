import collections, onnx
from onnxruntime.transformers.optimizer import optimize_model
m = optimize_model("/tmp/llm-bench/build/onnx_fp32/model.onnx", model_type="gpt2", num_heads=9, hidden_size=576, opt_level=0, use_gpu=False)
ops = collections.Counter(n.op_type for n in m.model.graph.node)
print("optimum graph after ORT's transformers optimizer (gpt2/qwen3 fusions):", len(m.model.graph.node), "nodes", ops.most_common(14))
print("fused:", m.get_fused_operator_statistics())
