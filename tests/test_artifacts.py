from __future__ import annotations

import pytest

from edgeopt.build_dir import new_manifest, write_json_atomic
from edgeopt.output_dir import staged_directory
from edgeopt.hashing import sha256_tree


def test_staged_directory_replaces_only_on_success(tmp_path):
    final = tmp_path / "build"
    with staged_directory(final) as staging:
        (staging / "a.txt").write_text("one")
        # an edgeopt build (its manifest by content, issue 23): the only folder it replaces
        (staging / "manifest.json").write_text(__import__("json").dumps(new_manifest({})))
    assert (final / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with staged_directory(final) as staging:
            (staging / "a.txt").write_text("half-written")
            raise RuntimeError("crash mid-build")
    assert (final / "a.txt").read_text() == "one"
    assert [p.name for p in tmp_path.iterdir()] == ["build"]


def test_tree_hash_covers_names_and_contents(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("1")
    first = sha256_tree(tmp_path / "x")
    (tmp_path / "x" / "f").write_text("2")
    assert sha256_tree(tmp_path / "x") != first


def test_json_written_atomically_and_readable(tmp_path):
    write_json_atomic(tmp_path / "m.json", {"a": 1})
    assert (tmp_path / "m.json").read_text().startswith("{")
    assert oct((tmp_path / "m.json").stat().st_mode & 0o777) == "0o644"
