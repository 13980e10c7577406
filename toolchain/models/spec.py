"""What a loaded model looks like to the rest of the pipeline: its inputs, outputs and task."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Task = Literal["classification", "embedding", "regression"]


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
