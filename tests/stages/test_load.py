"""stages/load.py: a model reference -> its input spec and parameter count. The bundled example
loaded afresh gives what the cached load of the example build recorded; its own exported FP32
ONNX, loaded as an ONNX model, takes the same inputs and holds the same parameters but for
the batch norms the export folded."""

from __future__ import annotations

import torch

from edgeopt.models.lazy import LazyModel
from edgeopt.models.source import resolve_source
from edgeopt.stages.load import LoadResult, LoadStage


def test_the_example_loads_as_the_cached_load_recorded(example_run, tmp_path):
    run, stages, _ = example_run
    stage = LoadStage(run.source, LazyModel(run.source))
    assert stage.params() == stages["load"].params() == {"kind": run.source.kind, "input_shapes": [], "trust_pickle": False}
    assert stage.inputs() == {"model": run.source.sha256}
    fresh = stage.run(tmp_path)
    assert fresh == run.loaded == LoadResult.model_validate(run.outputs["load"].result)
    module = LazyModel(run.source).module()
    assert fresh.params == sum(p.numel() for p in module.parameters()) > 0
    assert list(tmp_path.iterdir()) == []  # writes nothing


def test_the_exported_onnx_takes_the_same_inputs_and_parameters_less_folded_batch_norms(example_run, tmp_path):
    run, _, _ = example_run
    onnx = resolve_source(str(run.fp32.path))
    stage = LoadStage(onnx, LazyModel(onnx))
    assert stage.params()["kind"] == "onnx" and stage.inputs() == {"model": onnx.sha256}
    loaded = stage.run(tmp_path)
    assert [(i.name, i.dtype) for i in loaded.spec.inputs] == [(i.name, i.dtype) for i in run.loaded.spec.inputs]
    # the export folds each batch norm into the convolution before it: its scale and shift are gone
    # (a bias may take their place), so the ONNX holds fewer parameters, by at most those
    module = LazyModel(run.source).module()
    folded = sum(p.numel() for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d) for p in m.parameters())
    assert folded > 0 and run.loaded.params - folded <= loaded.params < run.loaded.params
