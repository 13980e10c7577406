"""Export stage: torch model -> FP32 ONNX, checked against torch on real inputs.

Uses torch.onnx.export's dynamo exporter (the maintained path) with a dynamic batch axis, and the
TorchScript exporter for TorchScript modules, which the dynamo exporter cannot trace.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel

from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.models.spec import ModelSpec
from edgeopt import runtime

OPSET = 18
PARITY_SAMPLES = 64
PARITY_TOLERANCE = 1e-3  # max abs difference, relative to the largest output magnitude


class ExportResult(BaseModel):
    opset: int
    exporter: str
    parity_samples: int
    max_abs_diff: float
    output_scale: float


def export_onnx(model: torch.nn.Module, spec: ModelSpec, out_path: Path, check_data: Dataset) -> ExportResult:
    """Write `out_path` and compare ONNX Runtime's outputs with torch's on `check_data`."""
    sample = check_data.subset(PARITY_SAMPLES)
    args = tuple(torch.from_numpy(np.ascontiguousarray(sample.inputs[i.name][:2])) for i in spec.inputs)
    names = [i.name for i in spec.inputs]
    scripted = isinstance(model, torch.jit.ScriptModule)
    try:
        _run_exporter(model, args, out_path, spec, scripted)
    except Exception as exc:  # the exporters raise many types; name the first line
        raise BadInput(f"{spec.name}: ONNX export failed ({type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]})") from None
    with torch.inference_mode():
        expected = model(*(torch.from_numpy(np.ascontiguousarray(sample.inputs[n])) for n in names))
    expected = [expected] if isinstance(expected, torch.Tensor) else list(expected)
    actual = runtime.run_all(runtime.session(out_path), sample)
    diff = max(float(np.abs(a - e.numpy()).max()) for a, e in zip(actual, expected))
    scale = max(float(np.abs(e.numpy()).max()) for e in expected) or 1.0
    if diff > PARITY_TOLERANCE * max(scale, 1.0):
        raise BadInput(f"{spec.name}: exported ONNX differs from torch by {diff:.3g} (outputs up to {scale:.3g})")
    return ExportResult(opset=OPSET if not scripted else 17, exporter="torchscript" if scripted else "dynamo",
                        parity_samples=len(sample), max_abs_diff=diff, output_scale=scale)


def _run_exporter(model: torch.nn.Module, args: tuple, out_path: Path, spec: ModelSpec, scripted: bool) -> None:
    names = [i.name for i in spec.inputs]
    # The exporters log optional-operator notices and deprecation warnings that say nothing about
    # this model; failures still raise.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if scripted:
            axes = {i.name: dict(i.dynamic_axes) for i in spec.inputs}
            axes.update({o: {0: "batch"} for o in spec.outputs})
            torch.onnx.export(model, args, str(out_path), dynamo=False, opset_version=17,
                              input_names=names, output_names=spec.outputs, dynamic_axes=axes)
        else:
            shapes = tuple({a: torch.export.Dim(n) for a, n in i.dynamic_axes.items()} for i in spec.inputs)
            torch.onnx.export(model, args, str(out_path), dynamo=True, opset_version=OPSET, verbose=False,
                              input_names=names, output_names=spec.outputs, dynamic_shapes=shapes,
                              external_data=False, optimize=True)
