from __future__ import annotations

import json

from edgeopt.cache import StageCache, cache_key


def test_key_changes_with_every_ingredient():
    base = cache_key("quantize", {"method": "minmax"}, {"onnx": "a"}, {"onnxruntime": "1.0"})
    assert len(base) == 64
    assert base == cache_key("quantize", {"method": "minmax"}, {"onnx": "a"}, {"onnxruntime": "1.0"})
    assert base != cache_key("export", {"method": "minmax"}, {"onnx": "a"}, {"onnxruntime": "1.0"})
    assert base != cache_key("quantize", {"method": "entropy"}, {"onnx": "a"}, {"onnxruntime": "1.0"})
    assert base != cache_key("quantize", {"method": "minmax"}, {"onnx": "b"}, {"onnxruntime": "1.0"})
    assert base != cache_key("quantize", {"method": "minmax"}, {"onnx": "a"}, {"onnxruntime": "1.1"})


def test_store_then_lookup_round_trip(tmp_path):
    cache = StageCache(tmp_path)
    work = cache.new_workdir("export")
    (work / "model.onnx").write_bytes(b"weights")
    cache.store("export", "k" * 64, work, {"max_abs_diff": 1e-6})
    entry = cache.lookup("export", "k" * 64)
    assert entry.result == {"max_abs_diff": 1e-6}
    assert entry.path("model.onnx").read_bytes() == b"weights"
    assert not work.exists()


def test_tampered_or_partial_entries_are_misses(tmp_path):
    cache = StageCache(tmp_path)
    work = cache.new_workdir("export")
    (work / "model.onnx").write_bytes(b"weights")
    entry = cache.store("export", "a" * 64, work, {})
    entry.path("model.onnx").write_bytes(b"tampered")
    assert cache.lookup("export", "a" * 64) is None
    partial = tmp_path / "export" / ("b" * 64)
    partial.mkdir(parents=True)
    (partial / "entry.json").write_text("{not json")
    assert cache.lookup("export", "b" * 64) is None
    assert not partial.exists()


def test_disabled_cache_never_hits(tmp_path):
    cache = StageCache(tmp_path, enabled=False)
    work = cache.new_workdir("load")
    entry = cache.store("load", "c" * 64, work, {"x": 1})
    assert json.loads((entry.folder / "entry.json").read_text())["result"] == {"x": 1}
    assert cache.lookup("load", "c" * 64) is None


def test_a_second_store_of_one_key_keeps_the_entry_another_process_may_be_reading(tmp_path):
    """Parallel release pairs: the loser of a store race discards its copy, never the winner's."""
    cache = StageCache(tmp_path)
    first = cache.new_workdir("export")
    (first / "model.onnx").write_bytes(b"first")
    kept = cache.store("export", "k" * 64, first, {"n": 1})
    reader = open(kept.path("model.onnx"), "rb")  # another pair copying it into its build
    second = cache.new_workdir("export")
    (second / "model.onnx").write_bytes(b"second")
    entry = cache.store("export", "k" * 64, second, {"n": 2})
    assert entry.result == {"n": 1} and entry.path("model.onnx").read_bytes() == b"first"
    assert reader.read() == b"first" and kept.path("model.onnx").is_file() and not second.exists()
    reader.close()
    # a corrupt entry is replaced by the new one
    kept.path("model.onnx").write_bytes(b"damaged")
    third = cache.new_workdir("export")
    (third / "model.onnx").write_bytes(b"third")
    assert cache.store("export", "k" * 64, third, {"n": 3}).path("model.onnx").read_bytes() == b"third"
    assert cache.lookup("export", "k" * 64).result == {"n": 3}
