"""Export with the model's own shapes: static programs and traced modules keep their batch."""

import numpy as np
import onnx
import pytest
import torch

from edgeopt.data.dataset import Dataset
from edgeopt.errors import BadInput
from edgeopt.models import torch_loader
from edgeopt.models.source import resolve_source
from edgeopt.models.spec import InputSpec, ModelSpec
from edgeopt.stages.export import export_onnx


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.fc = torch.nn.Conv2d(3, 8, 3), torch.nn.Linear(8 * 6 * 6, 4)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).flatten(1))


class BakedBatch(Net):
    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).view(1, -1))  # a traced module with batch 1 baked in


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(1, 3, 8, 8)
    torch.export.save(torch.export.export(model, (x,)), folder / "static.pt2")
    dynamic = ({0: torch.export.Dim("batch")},)
    torch.export.save(torch.export.export(model, (torch.randn(2, 3, 8, 8),), dynamic_shapes=dynamic), folder / "dyn.pt2")
    torch.jit.save(torch.jit.trace(BakedBatch().eval(), x), folder / "baked.pt")
    data = Dataset({"x": np.random.default_rng(0).normal(size=(10, 3, 8, 8)).astype(np.float32)}, None, folder / "d.npz")
    return folder, data


def _onnx_dims(path):
    return [[d.dim_value or d.dim_param for d in i.type.tensor_type.shape.dim] for i in onnx.load(str(path)).graph.input]


@pytest.mark.parametrize("name, shapes, dims", [
    ("static.pt2", (), [[1, 3, 8, 8]]),
    ("static.pt2", ("x:4x3x8x8",), [[1, 3, 8, 8]]),  # trtexec spelling; the program's batch wins
    ("dyn.pt2", (), [["batch", 3, 8, 8]]),
    ("baked.pt", ("x:1x3x8x8",), [[1, 3, 8, 8]]),
])
def test_export_keeps_the_shapes_the_model_allows(files, tmp_path, name, shapes, dims):
    folder, data = files
    source = resolve_source(str(folder / name), shapes)
    spec = torch_loader.model_spec(source)
    result = export_onnx(torch_loader.load_module(source), spec, tmp_path / "m.onnx", data)
    assert _onnx_dims(tmp_path / "m.onnx") == dims
    assert result.parity_samples == 10 and result.max_abs_diff < 1e-4
    if shapes and name == "static.pt2":
        assert "program has static shape (1, 3, 8, 8)" in spec.notes[0]


def test_a_guard_failure_names_the_cause_and_the_way_out(files, tmp_path):
    folder, data = files
    module = torch.export.load(str(folder / "static.pt2")).module()
    spec = ModelSpec(name="net", inputs=[InputSpec(name="x", shape=(1, 3, 8, 8))])  # asks for a dynamic batch
    with pytest.raises(BadInput) as error:
        export_onnx(module, spec, tmp_path / "m.onnx", data)
    message = str(error.value)
    assert "x.size()[0] == 1" in message and "exported with static shapes" in message
    assert "Next steps" not in message and "\n" not in message


def test_an_onnx_file_keeps_its_fixed_dimensions_and_sizes_only_its_free_ones(files, tmp_path):
    folder, data = files
    torch.onnx.export(Net().eval(), (torch.randn(1, 3, 8, 8),), str(tmp_path / "fixed.onnx"), dynamo=False,
                      input_names=["x"], dynamic_axes={"x": {2: "h", 3: "w"}})
    from edgeopt.models import onnx_loader

    spec = onnx_loader.model_spec(resolve_source(str(tmp_path / "fixed.onnx"), ("x:4x3x8x8",)))
    assert spec.inputs[0].shape == (1, 3, 8, 8) and spec.inputs[0].dynamic_axes == {2: "h", 3: "w"}
    assert "ONNX model has static shape" in spec.notes[0]
