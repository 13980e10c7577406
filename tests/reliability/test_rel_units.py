"""Issue 15 / issue 9 item 7: the error helper, the cache's first-wins rule, stale-folder cleanup,
package limits, disk full at the artifact layer, and property tests for profiles and readers."""

from __future__ import annotations

import errno
import io
import os
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings, strategies as st

from edgeopt import build_dir, output_dir
from edgeopt.package.archive import safe_extract
from edgeopt.cache import StageCache, cache_clear, cache_info
from edgeopt.errors import BadInput, EdgeoptError, ToolFailed, cause_text, user_line


def _raise_chain():
    try:
        try:
            raise RuntimeError("Guard failed: x.size()[0] == 3\nmore detail")
        except RuntimeError as inner:
            raise ValueError("Failed to export the model with torch.export.\nsee above") from inner
    except ValueError as outer:
        return outer


def test_cause_text_keeps_the_innermost_cause_not_the_banner():
    assert cause_text(_raise_chain()) == "RuntimeError: Guard failed: x.size()[0] == 3"
    assert cause_text(ValueError()) == "ValueError"  # an empty message is still one line, exit 70 not a crash


def test_user_line_codes():
    assert user_line(BadInput("f: bad")) == ("edgeopt: error: f: bad", 2)
    assert user_line(ToolFailed("m: exporter failed"))[1] == 4
    assert user_line(KeyboardInterrupt()) == ("edgeopt: interrupted", 130)
    wrapped = RuntimeError("export failed")
    wrapped.__context__ = KeyboardInterrupt()
    assert user_line(wrapped)[1] == 130  # Ctrl-C while tracing is an interrupt, not a failed export
    line, code = user_line(OSError(errno.ENOSPC, "No space left on device", "/out/model.onnx"))
    assert code == 74 and "/out/model.onnx" in line
    line, code = user_line(_raise_chain())
    assert code == 70 and "Guard failed" in line and "\n" not in line


def test_no_splitlines_idiom_left():
    root = Path(__file__).resolve().parents[2] / "toolchain" / "edgeopt"
    offenders = [str(p) for p in root.rglob("*.py") if "splitlines()[0]" in p.read_text()]
    assert offenders == []


def _store(cache: StageCache, key: str, content: bytes):
    work = cache.new_workdir("export")
    (work / "model.fp32.onnx").write_bytes(content)
    return cache.store("export", key, work, {"n": content.decode()})


def test_cache_first_complete_entry_wins(tmp_path):
    cache = StageCache(tmp_path)
    first = _store(cache, "k" * 64, b"first")
    second = _store(cache, "k" * 64, b"second")
    assert second.folder == first.folder
    assert (first.folder / "model.fp32.onnx").read_bytes() == b"first"
    assert second.result == {"n": "first"} and second.files == first.files
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".work-")]


def test_stale_work_folders_of_dead_processes_are_removed(tmp_path):
    dead = tmp_path / ".work-export-pid999999999-abc"
    mine = tmp_path / f".work-export-pid{os.getpid()}-abc"
    dead.mkdir()
    mine.mkdir()
    StageCache(tmp_path).new_workdir("load")
    assert not dead.exists() and mine.exists()


def test_no_cache_scratch_is_removed(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    cache = StageCache(tmp_path / "unused", enabled=False)
    _store(cache, "k" * 64, b"x")
    cache.cleanup()
    assert list(tmp_path.iterdir()) == []


def test_cache_info_and_clear(tmp_path):
    cache = StageCache(tmp_path)
    for i in range(3):
        _store(cache, f"{i}" * 64, b"x" * 1000)
    assert cache_info(tmp_path)["entries"] == 3
    assert cache_clear(tmp_path, max_size=2500)["removed"] == 2
    assert cache_info(tmp_path)["entries"] == 1
    cache_clear(tmp_path)
    assert cache_info(tmp_path)["entries"] == 0


def _tar(tmp_path: Path, files: dict[str, bytes]) -> Path:
    path = tmp_path / "pkg.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            tar.addfile(member, io.BytesIO(data))
    return path


def test_package_bomb_is_refused_before_writing(tmp_path):
    archive = _tar(tmp_path, {"manifest.json": b"{}", "big.bin": b"\0" * (2 << 20)})
    with pytest.raises(BadInput, match="more than 1 MB"):
        safe_extract(archive, tmp_path / "dest", max_bytes=1 << 20)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pkg.tar.gz"]


def test_package_is_never_merged_into_an_existing_folder(tmp_path):
    archive = _tar(tmp_path, {"manifest.json": b"{}"})
    existing = tmp_path / "dest"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep")
    with pytest.raises(BadInput, match="already exists"):
        safe_extract(archive, existing)
    assert sorted(p.name for p in existing.iterdir()) == ["mine.txt"]


def test_truncated_package(tmp_path):
    archive = _tar(tmp_path, {"manifest.json": os.urandom(50_000)})
    archive.write_bytes(archive.read_bytes()[:2000])
    with pytest.raises(BadInput, match="not a readable"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_disk_full_at_the_artifact_layer_keeps_the_previous_build(tmp_path, monkeypatch):
    out = tmp_path / "build"
    with output_dir.staged_directory(out) as staging:
        build_dir.write_json_atomic(staging / "manifest.json", build_dir.new_manifest({}))  # recognised as an edgeopt build

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "model.fp32.onnx"))

    monkeypatch.setattr(build_dir.shutil, "copyfile", full)
    with pytest.raises(OSError) as caught:
        with output_dir.staged_directory(out) as staging:
            build_dir.place(tmp_path / "x", staging / "model.fp32.onnx")
    line, code = user_line(caught.value)
    assert code == 74 and "model.fp32.onnx" in line and "No space" in line
    assert (out / "manifest.json").read_text().strip().startswith("{")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]  # no partial left


_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=False),
                     st.text(max_size=8))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
_keys = st.sampled_from(["description", "backend", "device", "software", "build", "gates", "aliases", "name", "x"])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(_keys, _values, max_size=6))
def test_profile_schema_accepts_or_says_why(tmp_path, body):
    from edgeopt.targets import load_profile

    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(body))
    try:
        load_profile(path)
    except EdgeoptError as error:
        assert error.exit_code == 2 and str(path) in str(error) and "\n" not in str(error)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(shape=st.lists(st.integers(0, 4), min_size=0, max_size=4),
       dtype=st.sampled_from(["float32", "float64", "int8", "uint8", "bool", "complex64", "<U3"]),
       name=st.sampled_from(["image", "x", "labels"]), labels=st.one_of(st.none(), st.integers(0, 6)))
def test_npz_reader_accepts_or_says_why(tmp_path, shape, dtype, name, labels):
    from edgeopt.data.npz import read_npz
    from edgeopt.models.spec import InputSpec

    arrays = {name: np.zeros(shape, dtype=dtype)}
    if labels is not None and name != "labels":
        arrays["labels"] = np.arange(labels)
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    spec = [InputSpec(name="image", dtype="float32", shape=(1, 1, 4, 4))]
    try:
        data = read_npz(path, spec)
    except EdgeoptError as error:
        assert error.exit_code == 2 and str(path) in str(error) and "\n" not in str(error)
    else:
        assert data.inputs["image"].shape[1:] == (1, 4, 4)
