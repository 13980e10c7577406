"""Image-folder reader: shapes, labels, normalisation from options or metadata, and bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgeopt.data import ReaderOptions, load_dataset
from edgeopt.errors import BadInput
from edgeopt.models.spec import InputSpec, ModelSpec

Image = pytest.importorskip("PIL.Image")


def _save(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def _spec(shape=(1, 3, 8, 8), preprocessing=None, dynamic=None) -> ModelSpec:
    axes = dynamic or {0: "batch"}
    return ModelSpec(name="m", inputs=[InputSpec(name="pixels", shape=shape, dynamic_axes=axes)],
                     preprocessing=preprocessing or {})


@pytest.fixture
def classes(tmp_path) -> Path:
    """Two classes: 'cat' images are uniform 255 red, 'dog' images uniform 0; sorted names = labels."""
    red = np.zeros((12, 10, 3)); red[..., 0] = 255
    _save(tmp_path / "cat" / "a.png", red)
    _save(tmp_path / "cat" / "b.png", red)
    _save(tmp_path / "dog" / "c.jpg", np.zeros((12, 10, 3)))
    return tmp_path


def test_class_folders_give_labels_and_normalised_nchw(classes):
    options = ReaderOptions(mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0))
    data = load_dataset(classes, _spec(), "calibration", options)
    image = data.inputs["pixels"]
    assert image.shape == (3, 3, 8, 8) and image.dtype == np.float32  # resized to the model's 8x8
    assert data.labels.tolist() == [0, 0, 1]
    assert np.allclose(image[0, :, 0, 0], [(1 - 0.5) / 0.25, (0 - 0.5) / 0.5, (0 - 0.5) / 1.0])
    assert np.allclose(image[2], -0.5 / np.array([0.25, 0.5, 1.0])[:, None, None])


def test_nhwc_grayscale_and_size_from_metadata(tmp_path):
    _save(tmp_path / "x.png", np.full((20, 20), 51))  # flat folder: no labels
    spec = _spec(shape=(1, 4, 6, 1), preprocessing={"size": [4, 6], "mean": [0.2], "std": [0.5], "layout": "NHWC"})
    data = load_dataset(tmp_path, spec)
    assert data.labels is None and data.inputs["pixels"].shape == (1, 4, 6, 1)
    assert np.allclose(data.inputs["pixels"], 0.0, atol=1e-6)  # 51/255 = 0.2 = the mean


def test_options_override_metadata_and_reach_the_model_size(tmp_path):
    _save(tmp_path / "x.png", np.full((5, 5, 3), 255))
    spec = _spec(shape=(1, 3, 16, 16), preprocessing={"mean": [0.0], "std": [1.0]}, dynamic={0: "b", 2: "h", 3: "w"})
    data = load_dataset(tmp_path, spec, options=ReaderOptions(size=(10, 12), std=(2.0,)))
    assert data.inputs["pixels"].shape == (1, 3, 10, 12) and np.allclose(data.inputs["pixels"], 0.5)


@pytest.mark.parametrize("setup, options, message", [
    (lambda d: None, ReaderOptions(), "no images found"),
    (lambda d: (d / "broken.png").write_bytes(b"not an image"), ReaderOptions(), "not a readable image"),
    (lambda d: _save(d / "x.png", np.zeros((4, 4, 3))), ReaderOptions(mean=(0.1, 0.2)), "--mean: 2 values"),
    (lambda d: _save(d / "x.png", np.zeros((4, 4, 3))), ReaderOptions(std=(0.0,)), "--std"),
    (lambda d: _save(d / "x.png", np.zeros((4, 4, 3))), ReaderOptions(size=(4, 4)), "fixed at 8x8"),
])
def test_bad_image_folders_are_one_line_bad_input(tmp_path, setup, options, message):
    setup(tmp_path)
    with pytest.raises(BadInput, match=message) as error:
        load_dataset(tmp_path, _spec(), "calibration", options)
    assert error.value.exit_code == 2 and "\n" not in str(error.value)


def test_token_models_cannot_read_image_folders(classes):
    spec = ModelSpec(name="bert", inputs=[InputSpec(name="input_ids", dtype="int64", shape=(1, 128))])
    with pytest.raises(BadInput, match="one 4-D float input"):
        load_dataset(classes, spec)


def test_cli_image_folder_errors_exit_2_with_one_line(tmp_path):
    from conftest import run_cli

    (tmp_path / "empty").mkdir()
    result = run_cli("build", "--calib", str(tmp_path / "empty"), "--out", str(tmp_path / "b"))
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "no images found" in result.stderr
