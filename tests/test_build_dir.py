"""build_dir.py's typed manifest read: a real build's manifest.json read as Manifest (with the
target profile it was made for), artifacts checked by hash through it, and a block of the wrong
shape refused as bad input naming the file and the key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeopt.build_dir import LAYOUT, Manifest, read_typed_build, typed_manifest, verify_artifact
from edgeopt.errors import BadInput


def test_a_real_build_reads_as_its_type(jetson_build):
    build_dir = Path(jetson_build["build_dir"])
    manifest, target = read_typed_build(build_dir)
    assert isinstance(manifest, Manifest) and target.name == jetson_build["target"]["name"]
    assert manifest.engine["status"] == "deferred" and manifest.threshold("max_accuracy_drop") == 0.01
    assert manifest.spec["inputs"][0]["name"] == "image" and manifest.threshold("no_such_gate") is None
    assert manifest.document()["model"] == json.loads((build_dir / LAYOUT.manifest).read_text())["model"]
    assert verify_artifact(build_dir, manifest, LAYOUT.fp32_onnx) == build_dir / LAYOUT.fp32_onnx


def test_a_changed_artifact_or_a_wrong_block_is_bad_input(jetson_build, tmp_path):
    build_dir = Path(jetson_build["build_dir"])
    manifest = json.loads((build_dir / LAYOUT.manifest).read_text())
    (tmp_path / LAYOUT.fp32_onnx).write_bytes(b"not the exported model")
    with pytest.raises(BadInput, match="sha256 differs"):
        verify_artifact(tmp_path, Manifest.of(manifest), LAYOUT.fp32_onnx)
    with pytest.raises(BadInput, match=r"manifest.json: key 'engine' is not valid"):
        typed_manifest(tmp_path, {**manifest, "engine": "built"})
