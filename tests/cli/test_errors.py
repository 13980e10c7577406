"""Bad input: exit 2 and exactly one line on stderr naming the problem, no traceback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import CALIB, EVAL, run_cli


def assert_one_line_error(result, *needles: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_missing_model_file():
    assert_one_line_error(run_cli("build", "no/such/model.pt2", "--calib", str(CALIB)), "no/such/model.pt2", "not found")


def test_unknown_target():
    assert_one_line_error(run_cli("build", "--target", "jetson-nano-9000"), "jetson-nano-9000", "unknown target")


def test_profile_with_a_wrong_key(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "description: x\nbackend: onnxruntime\ndevice: {kind: cpu, product: x, arch: x86_64, memory_gb: 1}\n"
        "build: {precison: int8}\n")
    result = run_cli("build", "--target", "mine", "--targets-dir", str(tmp_path))
    assert_one_line_error(result, "mine.yaml", "build.precison")


def test_profile_with_a_wrong_type(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "description: x\nbackend: onnxruntime\ndevice: {kind: cpu, product: x, arch: x86_64, memory_gb: lots}\n")
    assert_one_line_error(run_cli("targets", "show", "mine", "--targets-dir", str(tmp_path)), "mine.yaml", "device.memory_gb")


def test_corrupt_onnx(tmp_path):
    model = tmp_path / "broken.onnx"
    model.write_bytes(b"\x08\x07not really protobuf")
    assert_one_line_error(run_cli("build", str(model), "--calib", str(CALIB)), "broken.onnx", "not a valid ONNX")


@pytest.mark.parametrize("case, needle", [
    ("wrong_name", "no array for model input 'image'"),
    ("wrong_shape", "per-sample shape (1, 16, 16)"),
    ("wrong_dtype", "dtype int32"),
    ("nan", "NaN"),
])
def test_bad_calibration_data(tmp_path, case, needle):
    image = np.load(CALIB)["image"]
    arrays = {
        "wrong_name": {"pixels": image, "extra": image},
        "wrong_shape": {"image": image[:, :, :16, :16]},
        "wrong_dtype": {"image": image.astype(np.int32)},
        "nan": {"image": np.where(np.arange(image.size).reshape(image.shape) == 5, np.nan, image).astype(np.float32)},
    }[case]
    data = tmp_path / f"{case}.npz"
    np.savez(data, **arrays)
    result = run_cli("build", "--calib", str(data), "--eval", str(EVAL), "--out", str(tmp_path / "out"))
    assert_one_line_error(result, f"{case}.npz", needle)
    assert not (tmp_path / "out").exists(), "a failed build must not leave a build directory"


def test_calib_required_for_a_user_model(tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")
    assert_one_line_error(run_cli("build", str(model)), "--calib")


def test_debug_shows_the_traceback():
    with pytest.raises(Exception):
        run_cli("--debug", "build", "--target", "nope")


def test_engine_build_without_tensorrt_exits_3_with_how_to_get_it(jetson_build, no_tensorrt):
    """On the session's deferred Jetson build (no second build of it), on a host without TensorRT."""
    folder = Path(jetson_build["build_dir"])
    before = sorted(p.name for p in folder.iterdir())
    result = run_cli("engine", "build", str(folder))
    assert result.exit_code == 3
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "TensorRT" in lines[0] and "JetPack" in lines[0]
    assert sorted(p.name for p in folder.iterdir()) == before  # nothing written, no engine


def test_engine_build_of_something_that_is_not_a_build(tmp_path):
    assert_one_line_error(run_cli("engine", "build", str(tmp_path / "nothing")), "nothing")


def test_a_missing_optional_package_is_exit_3_with_the_install_line(tmp_path, monkeypatch):
    """A factory whose module needs a package that is not installed: environment, not a bug."""
    (tmp_path / "net.py").write_text("import torch_pruning_not_here\n\ndef build():\n    pass\n")
    from click.testing import CliRunner
    from edgeopt.cli import main

    result = CliRunner().invoke(main, ["build", f"{tmp_path / 'net.py'}:build", "--calib", str(tmp_path / "c.npz"),
                                       "--input-shape", "x:1x3x8x8"])
    assert result.exit_code == 3
    assert "pip install torch-pruning-not-here" in result.stderr and "internal error" not in result.stderr
