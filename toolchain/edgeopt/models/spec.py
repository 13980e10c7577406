"""What a loaded model looks like to the rest of the pipeline: its inputs, outputs and task."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgeopt.compare import TASK_OUTPUT
from edgeopt.errors import BadInput

Task = Literal["classification", "embedding", "regression", "detection", "dense", "custom"]
OutputKind = Literal["class_scores", "embedding", "boxes", "scores", "dense_map", "regression", "state", "tensor"]
# What the first output of a model of each task is (compare.TASK_OUTPUT); others are "tensor" unless metadata says.


class InputSpec(BaseModel):
    """One model input. `shape` is a concrete example shape (batch 1); `dynamic_axes` maps an
    axis index to its symbolic name (`{0: "batch"}`), the axes the ONNX model leaves free."""

    model_config = ConfigDict(frozen=True)

    name: str
    dtype: Literal["float32", "float16", "int64", "int32", "bool"] = "float32"
    shape: tuple[int, ...]
    dynamic_axes: dict[int, str] = Field(default_factory=lambda: {0: "batch"})


class ModelSpec(BaseModel):
    """Inputs, outputs, task and preprocessing: everything later stages need without the weights."""

    name: str
    task: Task = "classification"
    inputs: list[InputSpec]
    outputs: list[str] = Field(default_factory=lambda: ["output"])
    preprocessing: dict = Field(default_factory=dict)
    labels: list[str] = Field(default_factory=list)
    output_kinds: dict[str, OutputKind] = Field(
        default_factory=dict, description="output name -> what it holds (metadata.json 'outputs' kind)")
    notes: list[str] = Field(default_factory=list, description="shape decisions the summary shows")
    metric: str | None = Field(None, description="--metric path.py:function: the user's score, higher is better")

    def kind_of(self, output: str) -> str:
        """The output's kind; unnamed in metadata: the task's kind for output 0, else 'tensor'."""
        if output in self.output_kinds:
            return self.output_kinds[output]
        if self.outputs and output == self.outputs[0]:
            return TASK_OUTPUT.get(self.task, "tensor")
        if self.task == "detection" and len(self.outputs) > 1 and output == self.outputs[1]:
            return "scores"
        return "tensor"


def output_kinds(meta: dict) -> dict[str, str]:
    """metadata.json `outputs: [{"name": "boxes", "kind": "boxes"}, ...]` -> {name: kind}."""
    return {o["name"]: o["kind"] for o in meta.get("outputs", []) if isinstance(o, dict) and o.get("kind")}


def with_overrides(spec: ModelSpec, task: str | None, metric: str | None) -> ModelSpec:
    """`--task` (what the model's outputs hold, for models other than Hugging Face folders, whose
    task picks the head at load) and `--metric` applied to the loaded spec."""
    update = {}
    if task and task != spec.task:
        update["task"] = task
    if metric:
        update["metric"] = metric
    return spec.model_copy(update=update) if update else spec


def clamp_to_model(wanted: list[InputSpec], own: list[InputSpec], notes: list[str], what: str) -> list[InputSpec]:
    """--input-shape / metadata inputs within what the model accepts: an axis the model fixed
    keeps its size (with a note when asked otherwise), only the model's free axes are dynamic.
    Inputs match by name, else by position (`--input-shape 1x3x224x224` names none)."""
    by_name = {spec.name: spec for spec in own}
    result = []
    for index, spec in enumerate(wanted):
        model_input = by_name.get(spec.name) or (own[index] if index < len(own) and spec.name.startswith("input_") else None)
        if model_input is None:
            result.append(spec)
            continue
        if len(spec.shape) != len(model_input.shape):
            raise BadInput(f"--input-shape {model_input.name}: {len(spec.shape)} axes, the model's input has "
                           f"{len(model_input.shape)} {model_input.shape}")
        free = model_input.dynamic_axes
        merged = tuple(want if axis in free else fixed for axis, (want, fixed) in enumerate(zip(spec.shape, model_input.shape)))
        if merged != spec.shape:
            notes.append(f"{model_input.name}: the {what} has static shape {model_input.shape}; building at {merged}")
        result.append(InputSpec(name=model_input.name, dtype=spec.dtype, shape=merged, dynamic_axes=dict(free)))
    return result
