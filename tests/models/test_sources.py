"""Every model kind the load stage accepts builds end to end, with the same accuracy."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
import torch

from conftest import CALIB, EVAL, FAST, REPO, build_json
from edgeopt.errors import BadInput
from edgeopt.models.source import parse_input_shapes, resolve_source

EXAMPLE = REPO / "examples" / "digits"


def _digits_model():
    spec = importlib.util.spec_from_file_location("digits_model_for_test", EXAMPLE / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build()


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    model = _digits_model()
    example = torch.randn(2, 1, 32, 32)
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(model, (example,), dynamic_shapes=({0: batch},)), folder / "digits.pt2")
    torch.jit.trace(model, example).save(str(folder / "digits_ts.pt"))
    torch.onnx.export(model, (example,), str(folder / "digits.onnx"), dynamo=True, input_names=["image"],
                      output_names=["logits"], dynamic_shapes=({0: batch},), external_data=False)
    return folder


@pytest.mark.parametrize("kind, name, extra", [
    ("pt2", "digits.pt2", []),
    ("torchscript", "digits_ts.pt", ["--input-shape", "image=1x1x32x32"]),
    ("onnx", "digits.onnx", []),
])
@pytest.mark.slow
def test_each_model_kind_builds_with_full_accuracy(model_files, tmp_path, kind, name, extra):
    code, doc, stderr = build_json(str(model_files / name), "--calib", str(CALIB), "--eval", str(EVAL),
                                   "--out", str(tmp_path / kind), *extra, *FAST)
    assert code == 0, stderr
    assert doc["metrics"]["fp32"]["accuracy"] >= 0.97
    assert doc["metrics"]["fp32"]["accuracy"] - doc["metrics"]["int8"]["accuracy"] <= 0.01
    # an ONNX file counts its initializers, where the exporter already folded BatchNorm into Conv
    assert doc["model"]["params"] == 666282 if kind != "onnx" else 660000 < doc["model"]["params"] < 666282


@pytest.mark.slow
def test_factory_by_file_path(tmp_path):
    folder = tmp_path / "digits"
    shutil.copytree(EXAMPLE, folder)
    code, doc, stderr = build_json(f"{folder / 'model.py'}:build", "--calib", str(CALIB), "--eval", str(EVAL),
                                   "--out", str(tmp_path / "out"), *FAST)
    assert code == 0, stderr
    assert doc["model"]["name"] == "digits-cnn"
    assert doc["metrics"]["int8"]["agreement"] >= 0.98


def test_torchscript_without_shapes_asks_for_them(model_files, tmp_path):
    code, doc, stderr = build_json(str(model_files / "digits_ts.pt"), "--calib", str(CALIB), "--out", str(tmp_path / "x"))
    assert code == 2 and "--input-shape" in stderr


def test_source_hash_follows_content(tmp_path):
    folder = tmp_path / "digits"
    shutil.copytree(EXAMPLE, folder)
    before = resolve_source(f"{folder / 'model.py'}:build").sha256
    (folder / "metadata.json").write_text((folder / "metadata.json").read_text().replace("digits-cnn", "renamed"))
    assert resolve_source(f"{folder / 'model.py'}:build").sha256 != before


def test_input_shape_parsing():
    specs = parse_input_shapes(["image=1x3x224x224", "2x8:int64"])
    assert (specs[0].name, specs[0].shape, specs[0].dtype) == ("image", (1, 3, 224, 224), "float32")
    assert (specs[1].name, specs[1].shape, specs[1].dtype) == ("input_1", (2, 8), "int64")
    with pytest.raises(BadInput, match="1x3xab"):
        parse_input_shapes(["1x3xab"])


def test_unknown_format(tmp_path):
    weird = tmp_path / "model.tflite"
    weird.write_bytes(b"x")
    with pytest.raises(BadInput, match="unknown model format"):
        resolve_source(str(weird))


def test_trtexec_input_shape_spelling_and_module_factory_from_the_current_folder(tmp_path, monkeypatch):
    from edgeopt.models.source import parse_input_shapes, resolve_source
    from edgeopt.errors import BadInput
    import pytest as _pytest

    spec, = parse_input_shapes(["pixels:1x3x224x224"])
    assert spec.name == "pixels" and spec.shape == (1, 3, 224, 224) and spec.dtype == "float32"
    spec, = parse_input_shapes(["1x3x8x8:float16"])
    assert spec.name == "input_0" and spec.dtype == "float16"
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "net.py").write_text("def build():\n    return None\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.path", [p for p in __import__("sys").path if p not in ("", str(tmp_path))])
    source = resolve_source("mypkg.net:build")
    assert source.kind == "factory" and source.files == [tmp_path / "mypkg" / "net.py"]
    with _pytest.raises(BadInput, match="add that folder to PYTHONPATH"):
        resolve_source("nothere.net:build")
