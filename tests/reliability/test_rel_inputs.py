"""Issue 15: every hostile or wrong input gets exit 2 (or its documented code) with one line,
no traceback, and nothing of the user's is lost. In-process through the CLI (fast)."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch


from helpers.cli_lines import assert_one_line, run

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calibration" / "digits_calib.npz"
EVAL = REPO / "calibration" / "digits_eval.npz"


class _Payload:
    marker: str = ""

    def __reduce__(self):
        return (Path(self.marker).touch, ())


def _evil_pt2(tmp_path: Path) -> tuple[Path, Path]:
    """A valid torch.export archive whose weight is marked use_pickle and holds a __reduce__ payload."""
    program = torch.export.export(torch.nn.Linear(3, 2), (torch.randn(2, 3),))
    clean = tmp_path / "clean.pt2"
    torch.export.save(program, str(clean))
    marker = tmp_path / "PWNED"
    _Payload.marker = str(marker)
    evil = tmp_path / "evil.pt2"
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(evil, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename.endswith("model_weights_config.json"):
                config = json.loads(data)
                for entry in config["config"].values():
                    entry["use_pickle"] = True
                data = json.dumps(config).encode()
            elif item.filename.endswith("data/weights/weight_0"):
                data = pickle.dumps(_Payload())
            dst.writestr(item, data)
    return evil, marker


@pytest.mark.slow
def test_pickled_pt2_is_refused_and_runs_nothing(tmp_path):
    evil, marker = _evil_pt2(tmp_path)
    code, lines = run("build", str(evil), "--calib", str(CALIB), "--out", str(tmp_path / "out"))
    assert_one_line(code, lines, 2, str(evil), "pickled", "--trust-pickle")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_clean_pt2_passes_the_pickle_check(tmp_path):
    from edgeopt.models.torch_loader import check_pt2

    program = torch.export.export(torch.nn.Linear(3, 2), (torch.randn(2, 3),))
    torch.export.save(program, str(tmp_path / "m.pt2"))
    check_pt2(tmp_path / "m.pt2")  # no exception: what the prune stage writes needs no pickle


def test_random_bytes_pt2(tmp_path):
    path = tmp_path / "junk.pt2"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    code, lines = run("build", str(path), "--calib", str(CALIB))
    assert_one_line(code, lines, 2, str(path), "not a torch.export archive")


@pytest.mark.parametrize("body, needle, exit_code", [
    ("def make():\n    raise ValueError('bad weights path')\n", "bad weights path", 2),
    ("def make(:\n", "SyntaxError", 2),
    ("import no_such_module_xyz\ndef make():\n    pass\n", "pip install no-such-module-xyz", 3),  # the environment's
])
def test_factory_failures_name_the_file(tmp_path, body, needle, exit_code):
    import sys

    factory = tmp_path / "net.py"
    factory.write_text(body)
    before = {name for name in sys.modules if name.startswith("edgeopt_user_model_")}
    code, lines = run("build", f"{factory}:make", "--calib", str(CALIB), "--input-shape", "image=1x1x32x32",
                      "--out", str(tmp_path / "out"))
    assert_one_line(code, lines, exit_code, str(factory), needle)
    assert {name for name in sys.modules if name.startswith("edgeopt_user_model_")} == before


def test_npy_as_calibration_data(tmp_path):
    npy = tmp_path / "calib.npy"
    np.save(npy, np.zeros((4, 1, 32, 32), np.float32))
    code, lines = run("build", "--calib", str(npy), "--out", str(tmp_path / "out"))
    assert_one_line(code, lines, 2, str(npy))


def test_huge_size_is_refused(tmp_path):
    code, lines = run("build", "--size", "100000x100000", "--out", str(tmp_path / "out"))
    assert code == 2 and "--size" in " ".join(lines) and "Traceback" not in " ".join(lines)


def test_out_on_a_user_folder_deletes_nothing(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text("print('mine')\n")
    code, lines = run("build", "--out", str(project))
    assert_one_line(code, lines, 2, str(project), "--force")
    assert (project / "train.py").read_text() == "print('mine')\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # no partial sibling either


def test_out_on_a_file_keeps_the_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("keep")
    for out in (target, target / "sub"):
        code, lines = run("build", "--out", str(out))
        assert_one_line(code, lines, 2, str(target))
    assert target.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_out_through_a_symlink_loop(tmp_path):
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    code, lines = run("build", "--out", str(tmp_path / "a" / "out"))
    assert_one_line(code, lines, 2)


def test_cache_dir_on_a_file(tmp_path):
    blocker = tmp_path / "cachefile"
    blocker.write_text("x")
    code, lines = run("build", "--cache-dir", str(blocker), "--out", str(tmp_path / "out"))
    assert_one_line(code, lines, 2, str(blocker))


AVX2 = REPO / "toolchain" / "edgeopt" / "_shipped" / "targets" / "cpu-x86-avx2.yaml"


def test_duplicate_yaml_key(tmp_path):
    (tmp_path / "mine.yaml").write_text(AVX2.read_text() + "backend: onnxruntime\n")
    code, lines = run("targets", "list", "--targets-dir", str(tmp_path))
    assert_one_line(code, lines, 2, "mine.yaml", "'backend'", "twice")


def test_two_profiles_with_one_alias(tmp_path):
    body = "\n".join(line for line in AVX2.read_text().splitlines() if not line.startswith("aliases"))
    for name in ("one", "two"):
        (tmp_path / f"{name}.yaml").write_text(body + "\naliases: [shared]\n")
    code, lines = run("targets", "list", "--targets-dir", str(tmp_path))
    assert_one_line(code, lines, 2, "two.yaml", "'shared'", "'one'")


@pytest.mark.slow
def test_labels_outside_the_models_classes(tmp_path):
    with np.load(EVAL) as data:
        arrays = dict(data)
    arrays["labels"] = arrays["labels"].copy()
    arrays["labels"][3] = 99
    bad = tmp_path / "eval.npz"
    np.savez(bad, **arrays)
    code, lines = run("build", "--eval", str(bad), "--out", str(tmp_path / "out"), "--latency-seconds", "0.1")
    assert_one_line(code, lines, 2, str(bad), "99", "classes")
