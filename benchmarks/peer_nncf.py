"""NNCF's ONNX post-training quantization with its defaults, run from NNCF's own virtualenv:

    /work/venvs/nncf/bin/python benchmarks/peer_nncf.py FP32.onnx CALIB.npz OUT.onnx

CALIB.npz holds one array per model input (first axis = sample); every sample calibrates.
"""

import sys

import nncf
import numpy as np
import onnx

source, calib, out = sys.argv[1:4]
model = onnx.load(source)
with np.load(calib) as archive:
    arrays = {k: archive[k] for k in archive.files}
names = [i.name for i in model.graph.input]
count = len(next(iter(arrays.values())))
samples = [{k: arrays[k][i:i + 1] for k in names if k in arrays} for i in range(count)]
is_transformer = any(n.op_type == "Softmax" for n in model.graph.node)
quantized = nncf.quantize(model, nncf.Dataset(samples), subset_size=count,
                          model_type=nncf.ModelType.TRANSFORMER if is_transformer else None)
onnx.save(quantized, out)
