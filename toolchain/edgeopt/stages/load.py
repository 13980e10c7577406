"""Load stage: a model reference -> its input spec and parameter count (the model itself stays in
the LazyModel the later stages share)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from edgeopt.models.lazy import HuggingFaceInput, LazyModel
from edgeopt.models.source import ModelSource
from edgeopt.models.spec import ModelSpec


class LoadResult(BaseModel):
    spec: ModelSpec
    params: int


class LoadStage:
    """ModelSpecFromSource: what the model takes and gives, read from its files."""

    name = "load"
    reads: tuple[str, ...] = ()
    writes: tuple[str, ...] = ()

    def __init__(self, source: ModelSource, model: LazyModel, input_shapes: tuple[str, ...] = (),
                 hf: HuggingFaceInput | None = None):
        self.source, self.model, self.input_shapes, self.hf = source, model, input_shapes, hf

    def params(self) -> dict:
        params = {"kind": self.source.kind, "input_shapes": list(self.input_shapes),
                  "trust_pickle": self.model.trust_pickle}
        if self.hf is not None:
            params["huggingface"] = {"task": self.hf.layout.task, "seq_len": self.hf.seq_len}
        return params

    def inputs(self) -> dict:
        return {"model": self.source.sha256}

    def run(self, folder: Path) -> LoadResult:
        source = self.source
        if self.hf is not None:
            from edgeopt.models import huggingface, torch_loader

            module = self.model.module()
            from edgeopt.stages.export_huggingface import onnx_inputs

            spec = huggingface.model_spec(source, self.hf.layout, module, self.hf.seq_len,
                                          onnx_inputs(module, self.hf.layout.task))
            return LoadResult(spec=spec, params=torch_loader.count_parameters(module))
        if source.kind == "onnx":
            from edgeopt.models import onnx_loader

            model = onnx_loader.load_checked(source.files[0])  # parsed and checked once, external data included
            return LoadResult(spec=onnx_loader.model_spec(source, model), params=onnx_loader.count_parameters(model))
        from edgeopt.models import torch_loader

        module = self.model.module()  # checks a .pt2 for pickled parts before torch opens it
        spec = torch_loader.model_spec(source, module, trust_pickle=self.model.trust_pickle)
        return LoadResult(spec=spec, params=torch_loader.count_parameters(module))
