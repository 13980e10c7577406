import sys, shutil
from pathlib import Path
from edgeopt.stages import quantize_weight_only as wo
src=Path("gb_fp32"); 
for bits in (8,4):
    out=Path(f"gbq_int{bits}"); out.mkdir(exist_ok=True)
    for f in src.iterdir():
        if not f.name.startswith("model.onnx"): shutil.copy(f,out/f.name)
    wo.quantize(src/"model.onnx", out/"model.onnx", wo.WeightOnlyConfig(bits=bits))
    print(bits, sum(p.stat().st_size for p in out.glob("model.onnx*"))/2**20)
