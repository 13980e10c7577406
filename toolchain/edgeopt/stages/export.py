"""Export stage: torch model -> FP32 ONNX, checked against torch on real inputs.

Uses torch.onnx.export's dynamo exporter (the maintained path) and the TorchScript exporter for
TorchScript modules, which the dynamo exporter cannot trace. Only the axes the model leaves free
(ModelSpec.dynamic_axes) are dynamic: a static-shape `.pt2` or a traced module keeps its shapes.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput, ToolFailed, cause_text, chain as _chain, is_disk_full, root_cause
from edgeopt.models.spec import ModelSpec
from edgeopt.backends.onnxruntime import session as runtime

if TYPE_CHECKING:
    import torch

from edgeopt.stages.exported import OPSET, PARITY_SAMPLES, PARITY_TOLERANCE, ExportResult  # noqa: E402,F401


def static_batch(spec: ModelSpec) -> int | None:
    """The batch the model fixed (an input whose axis 0 is not free), or None when it is free."""
    fixed = [i.shape[0] for i in spec.inputs if i.shape and 0 not in i.dynamic_axes]
    return min(fixed) if fixed else None


def export_onnx(model: "torch.nn.Module", spec: ModelSpec, out_path: Path, check_data: Dataset,
                opset: int = OPSET) -> ExportResult:
    """Write `out_path` with the model's own shapes (only the axes it leaves free are dynamic) and
    compare ONNX Runtime's outputs with torch's on `check_data`."""
    import torch

    sample = check_data.subset(PARITY_SAMPLES)
    batch = static_batch(spec)
    example = batch or min(2, len(sample))
    args = tuple(torch.from_numpy(np.ascontiguousarray(sample.inputs[i.name][:example])) for i in spec.inputs)
    scripted = isinstance(model, torch.jit.ScriptModule)
    try:
        _run_exporter(model, args, out_path, spec, scripted, opset)
    except Exception as exc:  # the exporter failed on a model that loaded and ran: not the input's fault
        if is_disk_full(exc):
            raise  # a full disk is the disk's fault, not the model's (exit 74 naming the path)
        if any(isinstance(e, KeyboardInterrupt) for e in _chain(exc)):
            raise KeyboardInterrupt from exc  # Ctrl-C while tracing is an interrupt, not a failed export
        cause = export_cause(exc, spec)
        # a guard the program was exported with is the request's mismatch (fixable input, exit 2);
        # anything else is the exporter failing on a model that loaded and ran (exit 4)
        error = BadInput if "exported with static shapes" in cause else ToolFailed
        raise error(f"{spec.name}: ONNX export failed ({cause}); rerun with --debug for the full chain") from exc
    expected = _torch_outputs(model, sample, spec, batch or 64)
    actual = runtime.run_all(runtime.session(out_path), sample)
    diff = max(float(np.abs(a - e).max()) for a, e in zip(actual, expected))
    scale = max(float(np.abs(e).max()) for e in expected) or 1.0
    if diff > PARITY_TOLERANCE * max(scale, 1.0):
        raise ToolFailed(f"{spec.name}: exported ONNX differs from torch by {diff:.3g} (outputs up to {scale:.3g})")
    return ExportResult(opset=min(opset, 17) if scripted else opset, exporter="torchscript" if scripted else "dynamo",
                        parity_samples=len(sample), max_abs_diff=diff, output_scale=scale)


def _torch_outputs(model: "torch.nn.Module", data: Dataset, spec: ModelSpec, batch: int) -> list[np.ndarray]:
    """Every output of the torch model, run in chunks of the batch it accepts."""
    import torch

    chunks = []
    with torch.inference_mode():
        for start in range(0, len(data), batch):
            feed = data.batch(start, start + batch)
            out = model(*(torch.from_numpy(np.ascontiguousarray(feed[i.name])) for i in spec.inputs))
            out = [out] if isinstance(out, torch.Tensor) else list(torch.utils._pytree.tree_leaves(out))
            chunks.append([o.numpy() for o in out])
    return [np.concatenate([c[i] for c in chunks]) for i in range(len(chunks[0]))]


def export_cause(exc: BaseException, spec: ModelSpec) -> str:
    """The innermost exception's first line that says what failed, and for a guard on a dimension
    what the user can do (the exporters wrap the cause in 'step 1/3 ... Next steps' text)."""
    text = cause_text(exc)
    inner = root_cause(exc)
    whole = "\n".join(str(e) for e in (exc, inner))
    if "Guard failed" in whole or "Constraints violated" in whole or "specialized" in whole:
        text += ("; the program was exported with static shapes: export it with a dynamic one "
                 "(torch.export.export(model, args, dynamic_shapes={'x': {0: torch.export.Dim('batch')}})) "
                 "or build it at its own batch (--input-shape with the shape it was exported at)")
    return text


def _run_exporter(model: "torch.nn.Module", args: tuple, out_path: Path, spec: ModelSpec, scripted: bool,
                  opset: int) -> None:
    import torch

    names = [i.name for i in spec.inputs]
    # The exporters log optional-operator notices and deprecation warnings that say nothing about
    # this model; failures still raise.
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if scripted:
            axes = {i.name: dict(i.dynamic_axes) for i in spec.inputs}
            if static_batch(spec) is None:
                axes.update({o: {0: "batch"} for o in spec.outputs})
            torch.onnx.export(model, args, str(out_path), dynamo=False, opset_version=min(opset, 17),
                              input_names=names, output_names=spec.outputs, dynamic_axes=axes)
        else:
            shapes = tuple({a: torch.export.Dim(n) for a, n in i.dynamic_axes.items()} for i in spec.inputs)
            if not any(shapes):
                shapes = None  # a static-shape program: its own shapes, nothing to re-specialise
            torch.onnx.export(model, args, str(out_path), dynamo=True, opset_version=opset, verbose=False,
                              input_names=names, output_names=spec.outputs, dynamic_shapes=shapes,
                              external_data=False, optimize=True)


MIN_QUANTIZABLE_OPSET = 13  # per-channel and int32-bias DequantizeLinear need opset 13


def copy_onnx_input(source: Path, out: Path, check: Dataset, wanted: int = OPSET) -> ExportResult:
    """An ONNX input as the FP32 model; an opset older than 13 (Paddle and old exports) is
    converted to `wanted` first, since the INT8 Q/DQ graph needs 13, and so is one newer than
    `wanted` (the target's parser reads no newer); either is checked against the original."""
    import shutil

    import onnx
    from onnx.external_data_helper import load_external_data_for_model, uses_external_data

    model = onnx.load(str(source), load_external_data=False)
    external = any(uses_external_data(t) for t in model.graph.initializer)
    if external:  # the load stage's load_checked kept every location inside the model's folder
        load_external_data_for_model(model, str(source.parent))
    if external and model.ByteSize() >= onnx.checker.MAXIMUM_PROTOBUF:
        raise BadInput(f"{source}: {model.ByteSize() / 2**30:.1f} GB of weights; ONNX models over 2 GB are not "
                       "supported by this path (LLMs: --task text-generation)")
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), wanted)
    if MIN_QUANTIZABLE_OPSET <= opset <= wanted:
        if external:  # one self-contained file: every later stage reads LAYOUT.fp32_onnx alone
            onnx.save(model, str(out))
        else:
            shutil.copyfile(source, out)
        return ExportResult(opset=opset, exporter="none (ONNX input)", parity_samples=0, max_abs_diff=0.0, output_scale=0.0)
    why = "is too old to quantize" if opset < MIN_QUANTIZABLE_OPSET else f"is newer than the target's parser reads ({wanted})"
    try:
        converted = onnx.version_converter.convert_version(model, wanted)
    except Exception as exc:  # the converter raises several types on ops it cannot map
        raise BadInput(f"{source}: opset {opset} {why} and converting it to {wanted} failed "
                       f"({cause_text(exc, 200)}); "
                       f"re-export the model with opset {MIN_QUANTIZABLE_OPSET} to {wanted}") from None
    onnx.save(converted, str(out))
    sample = check.subset(8)
    expected = runtime.run_all(runtime.session(source), sample)
    actual = runtime.run_all(runtime.session(out), sample)
    diff = max(float(np.abs(a - e).max()) for a, e in zip(actual, expected))
    scale = max(float(np.abs(e).max()) for e in expected) or 1.0
    if diff > PARITY_TOLERANCE * max(scale, 1.0):
        raise BadInput(f"{source}: converting opset {opset} to {wanted} changed the outputs by {diff:.3g}")
    return ExportResult(opset=wanted, exporter=f"onnx version converter (opset {opset} -> {wanted})",
                        parity_samples=len(sample), max_abs_diff=diff, output_scale=scale)


class ExportStage:
    """Fp32OnnxFromModel: the torch model (or the ONNX input, copied) as FP32 ONNX, checked
    against torch on real inputs."""

    name = "export"
    reads: tuple[str, ...] = ()

    def __init__(self, source, model, spec: ModelSpec, check: Dataset, opset: int = OPSET):
        from edgeopt.build_dir import LAYOUT

        self.source, self.model, self.spec, self.check = source, model, spec, check
        self.opset = opset  # the target's (backends.export_opset): this stage knows no backend
        self.out_name = LAYOUT.fp32_onnx
        self.writes = (LAYOUT.fp32_onnx,)

    def params(self) -> dict:
        return {"spec": self.spec.model_dump(mode="json"), "opset": self.opset}

    def inputs(self) -> dict:
        return {"model": self.source.sha256, "check_data": self.check.sha256}

    def run(self, folder: Path) -> ExportResult:
        out = folder / self.out_name
        if self.source.kind == "onnx":

            return copy_onnx_input(self.source.files[0], out, self.check, self.opset)
        if self.model.hf is not None:
            from edgeopt.stages.export_huggingface import export_huggingface

            return export_huggingface(self.model.module(), self.spec, out, self.check, self.opset)
        return export_onnx(self.model.module(), self.spec, out, self.check, self.opset)
