"""Export stage for Hugging Face transformers: optimum-onnx's exporter, checked against torch.

optimum-onnx is the maintained exporter for transformers: it knows each architecture's inputs
(token_type_ids or not), patches ops that trace badly, and names the dynamic axes batch_size and
sequence_length. Everything optimum-specific lives in this module (one door for a fragile
dependency). We call its lower-level `export(model, onnx_config, path)` rather than `main_export`
or `onnx_export_from_model` because those take only a PreTrainedModel: for sentence embeddings
we export a `PooledEncoder` (encoder + masked mean pooling) and give optimum the architecture's own
feature-extraction config with its output renamed to `sentence_embedding`. That keeps optimum's
input handling and patching for both tasks, and the ONNX outputs the pooled embedding directly.
Parity: ONNX Runtime vs torch on real tokenized evaluation inputs, as the torch export stage does.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import torch

from edgeopt.backends.onnxruntime import session as runtime
from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput, ToolFailed, cause_text, chain, is_disk_full
from edgeopt.models.spec import ModelSpec
from edgeopt.stages.exported import OPSET, PARITY_SAMPLES, PARITY_TOLERANCE, ExportResult

_OPTIMUM_TASKS = {"classification": "text-classification", "regression": "text-classification",
                  "embedding": "feature-extraction"}


def onnx_config(model: torch.nn.Module, task: str):
    """optimum's OnnxConfig for this architecture and task; embeddings get one pooled output."""
    import optimum.exporters.onnx.model_configs  # noqa: F401  (registers each architecture's ONNX config)
    from optimum.exporters.tasks import TasksManager

    model_type = model.config.model_type
    try:
        constructor = TasksManager.get_exporter_config_constructor(
            exporter="onnx", task=_OPTIMUM_TASKS[task], model_type=model_type, library_name="transformers")
    except (KeyError, ValueError) as exc:
        first = cause_text(exc, 200)
        raise BadInput(f"model type '{model_type}': optimum-onnx cannot export it for {task} ({first})") from None
    config = constructor(model.config)
    if task != "embedding":
        return config

    class PooledOnnxConfig(type(config)):
        """The architecture's feature-extraction config; the output is the pooled embedding."""

        @property
        def outputs(self) -> dict[str, dict[int, str]]:
            return {"sentence_embedding": {0: "batch_size"}}

    return PooledOnnxConfig(model.config, task=_OPTIMUM_TASKS[task])


def onnx_inputs(model: torch.nn.Module, task: str) -> dict[str, dict[int, str]]:
    """Input name -> dynamic axes, in the order the exported graph takes them."""
    return {name: dict(axes) for name, axes in onnx_config(model, task).inputs.items()}


def export_huggingface(model: torch.nn.Module, spec: ModelSpec, out_path: Path, check_data: Dataset,
                       opset_wanted: int = OPSET) -> ExportResult:
    """Write `out_path` through optimum-onnx and compare ONNX Runtime with torch on `check_data`."""
    from optimum.exporters.onnx.convert import export

    config = onnx_config(model, spec.task)
    opset = max(opset_wanted, config.DEFAULT_ONNX_OPSET)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    logging.getLogger("optimum").setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            # TracerWarnings about the attention mask are about constants the trace handles.
            warnings.simplefilter("ignore")
            export(model, config, Path(out_path), opset=opset)
    except Exception as exc:  # optimum and torch raise many types; name the first line
        if is_disk_full(exc):
            raise  # a full disk is the disk's fault, not the model's (exit 74 naming the path)
        if any(isinstance(e, KeyboardInterrupt) for e in chain(exc)):
            raise KeyboardInterrupt from exc
        raise ToolFailed(f"{spec.name}: ONNX export through optimum-onnx failed ({cause_text(exc)}); "
                         "rerun with --debug for the full chain") from exc
    sample = check_data.subset(PARITY_SAMPLES)
    feed = {i.name: torch.from_numpy(np.ascontiguousarray(sample.inputs[i.name])) for i in spec.inputs}
    with torch.inference_mode():
        output = model(**feed)
    expected = (output["sentence_embedding"] if spec.task == "embedding" else output["logits"]).numpy()
    actual = runtime.run_all(runtime.session(out_path), sample)[0]
    diff = float(np.abs(actual - expected).max())
    scale = float(np.abs(expected).max()) or 1.0
    if diff > PARITY_TOLERANCE * max(scale, 1.0):
        raise BadInput(f"{spec.name}: exported ONNX differs from torch by {diff:.3g} (outputs up to {scale:.3g})")
    return ExportResult(opset=opset, exporter="optimum-onnx", parity_samples=len(sample),
                        max_abs_diff=diff, output_scale=scale)
