"""Issue 23 (trust, second pass): every kind of hostile or careless input, generated here.

Each case asserts what the user sees (exit code, exactly one stderr line naming the file) and
what must not happen: a payload runs (a marker file), a user file changes (hash before/after), a
file outside the named folder is opened (an audit hook on 'open'), a hang (a subprocess timeout).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import subprocess
import sys
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from helpers.cli_lines import assert_one_line, run

from edgeopt.errors import BadInput

REPO = Path(__file__).resolve().parents[2]
CALIB = REPO / "calibration" / "digits_calib.npz"


def tree_hash(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


_OPENED: list[str] = []
_HOOKED = False


def _audit(event, args):
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


@contextmanager
def opened_files():
    """Every path opened while the block runs (an audit hook cannot be removed: installed once)."""
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_audit)
        _HOOKED = True
    _OPENED.clear()
    seen: list[str] = []
    yield seen
    seen.extend(_OPENED)
    _OPENED.clear()


# --- 1. code from a model file runs ----------------------------------------------------------


class _Payload:
    marker = ""

    def __reduce__(self):
        return (Path(self.marker).touch, ())


def _payload(marker: Path) -> bytes:
    _Payload.marker = str(marker)
    return pickle.dumps(_Payload(), protocol=2)


def _torch_save_zip(marker: Path) -> bytes:
    """What torch.save writes (a zip with archive/data.pkl), its data.pkl a payload."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as inner:
        inner.writestr("archive/data.pkl", _payload(marker))
        inner.writestr("archive/version", "3\n")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def clean_pt2(tmp_path_factory) -> Path:
    import torch

    path = tmp_path_factory.mktemp("pt2") / "clean.pt2"
    program = torch.export.export(torch.nn.Linear(3, 2), (torch.randn(2, 3),))
    torch.export.save(program, str(path))
    return path


def _rewrite(clean: Path, out: Path, replace: dict, add: dict | None = None) -> Path:
    with zipfile.ZipFile(clean) as src, zipfile.ZipFile(out, "w") as dst:
        prefix = src.namelist()[0].split("/")[0]
        for item in src.infolist():
            data = src.read(item.filename)
            for suffix, new in replace.items():
                if item.filename.endswith(suffix):
                    data = new
            dst.writestr(item, data)
        for name, data in (add or {}).items():
            dst.writestr(f"{prefix}/{name}", data)
    return out


@pytest.mark.parametrize("where", ["sample_inputs", "legacy_weights", "opaque_constant", "pkl_member",
                                   "raw_pickle_sample"])
def test_every_pickled_part_of_a_pt2_is_refused_before_torch(tmp_path, clean_pt2, where):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pt2"
    if where == "sample_inputs":
        _rewrite(clean_pt2, evil, {"data/sample_inputs/model.pt": _torch_save_zip(marker)})
    elif where == "raw_pickle_sample":
        _rewrite(clean_pt2, evil, {"data/sample_inputs/model.pt": _payload(marker)})
    elif where == "legacy_weights":
        _rewrite(clean_pt2, evil, {}, {"serialized_state_dict.pt": _payload(marker)})
    elif where == "opaque_constant":
        config = {"config": {"c0": {"path_name": "constant_0", "use_pickle": True}}}
        _rewrite(clean_pt2, evil, {"model_constants_config.json": json.dumps(config).encode()},
                 {"data/constants/constant_0": _payload(marker)})
    else:
        _rewrite(clean_pt2, evil, {}, {"extra/data.pkl": _payload(marker)})
    code, lines = run("build", str(evil), "--calib", str(CALIB), "--out", str(tmp_path / "out"))
    assert_one_line(code, lines, 2, str(evil), "pickled")
    assert not marker.exists()
    assert not (tmp_path / "out").exists()


def test_the_inspector_finds_the_payload_global_without_running_it(tmp_path):
    from edgeopt.models.pt2_archive import pickle_globals

    marker = tmp_path / "PWNED"
    found = pickle_globals(_payload(marker))
    assert ("pathlib", "Path") in found or any("Path" in n for _, n in found), found
    assert pickle_globals(b"not a pickle") is None
    assert not marker.exists()


def test_a_clean_pt2_loads(clean_pt2):
    from edgeopt.models.pt2_archive import check_pt2

    check_pt2(clean_pt2)  # torch.export.save's sample inputs are tensors only


# --- 2. user files are lost ------------------------------------------------------------------


def test_out_with_a_foreign_manifest_json_is_not_replaced(tmp_path):
    app = tmp_path / "webapp"
    app.mkdir()
    (app / "manifest.json").write_text(json.dumps({"name": "my pwa", "icons": []}))
    (app / "index.html").write_text("<html></html>")
    before = tree_hash(app)
    code, lines = run("build", str(tmp_path / "none.onnx"), "--calib", str(CALIB), "--out", str(app))
    assert code == 2 and len(lines) == 1, lines
    assert tree_hash(app) == before


def test_ownership_recognises_only_edgeopt_manifests(tmp_path):
    from edgeopt.build_dir import new_manifest
    from edgeopt.ownership import is_edgeopt_build

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "manifest.json").write_text(json.dumps({"schema_version": 1, "name": "x"}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text(json.dumps(new_manifest({})))
    assert not is_edgeopt_build(tmp_path / "a", "manifest.json")
    assert is_edgeopt_build(tmp_path / "b", "manifest.json")


def test_cache_clear_on_a_user_project_deletes_nothing(tmp_path):
    project = tmp_path / "project"
    (project / "src" / "app").mkdir(parents=True)
    (project / "src" / "app" / "entry.json").write_text('{"files": {}, "result": {}}')  # a user's own file
    (project / "src" / "app" / "main.py").write_text("print('hi')\n")
    (project / ".work-x-pid1-abc").mkdir()  # a name like ours, but no marker: not ours
    before = tree_hash(project)
    code, lines = run("cache", "clear", "--cache-dir", str(project))
    assert tree_hash(project) == before
    assert (project / ".work-x-pid1-abc").is_dir()


def test_cache_clear_removes_real_entries(tmp_path):
    from edgeopt.cache import StageCache, cache_info

    cache = StageCache(tmp_path / "cache")
    cache.run_and_store("export", "0" * 64, lambda folder: (folder / "m.bin").write_bytes(b"x") and {})
    assert cache_info(tmp_path / "cache")["entries"] == 1
    code, lines = run("cache", "clear", "--cache-dir", str(tmp_path / "cache"))
    assert code == 0, lines
    assert cache_info(tmp_path / "cache")["entries"] == 0


def _baseline(tmp_path: Path) -> Path:
    from edgeopt.report import baseline

    path = tmp_path / "base.json"
    path.write_text(json.dumps(baseline.document({"model": {"name": "m"}, "target": {"name": "t"}, "metrics": {"fp32": {}, "int8": {}}})))
    return path


def test_report_out_never_overwrites_a_users_report(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "report.md").write_text("# my own report\n")
    before = tree_hash(docs)
    base = _baseline(tmp_path)
    code, lines = run("report", "--baseline", str(base), "--current", str(base), "--out", str(docs))
    assert_one_line(code, lines, 2, "report.md")
    assert tree_hash(docs) == before
    # a report edgeopt wrote may be replaced
    code, lines = run("report", "--baseline", str(base), "--current", str(base), "--out", str(tmp_path / "r"))
    assert code == 0, lines
    code, lines = run("report", "--baseline", str(base), "--current", str(base), "--out", str(tmp_path / "r"))
    assert code == 0, lines


# --- 3. files outside what the user named are read -------------------------------------------


def _hf_folder(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "model_type": "bert"}))
    (folder / "tokenizer.json").write_text("{}")
    return folder


def test_hf_shard_outside_the_folder_is_refused_and_never_opened(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("optimum")
    from edgeopt.models.huggingface import check_folder

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "model-00001.safetensors").write_bytes(b"canary")
    model = _hf_folder(tmp_path, "model")
    (model / "model.safetensors.index.json").write_text(
        json.dumps({"weight_map": {"w": "../victim/model-00001.safetensors"}}))
    with opened_files() as seen, pytest.raises(BadInput, match="leads outside"):
        check_folder(model)
    assert not [p for p in seen if "victim" in p], seen


def test_modules_json_path_outside_the_folder_is_refused(tmp_path):
    pytest.importorskip("transformers")
    pytest.importorskip("optimum")
    from edgeopt.models.huggingface import check_folder

    _hf_folder(tmp_path, "victim")
    model = tmp_path / "st"
    model.mkdir()
    (model / "modules.json").write_text(json.dumps(
        [{"idx": 0, "name": "0", "path": "../victim", "type": "sentence_transformers.models.Transformer"}]))
    with opened_files() as seen, pytest.raises(BadInput, match="leads outside"):
        check_folder(model)
    assert not [p for p in seen if "victim" in p], seen


def test_inside_refuses_every_way_out(tmp_path):
    from edgeopt.safe_io import inside

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "out").symlink_to("/etc")
    for name in ("../x", "/etc/passwd", "out/passwd", "a/../../x"):
        with pytest.raises(BadInput, match="outside"):
            inside(tmp_path / "pkg", name)
    assert inside(tmp_path / "pkg", "a/b.onnx") == (tmp_path / "pkg" / "a" / "b.onnx").resolve()


def test_verify_never_follows_a_symlink_out_of_a_package(tmp_path):
    from edgeopt.package.verify import check_files

    canary = tmp_path / "secret.txt"
    canary.write_text("secret")
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "SHA256SUMS").write_text(f"{'0' * 64}  model.onnx\n{'0' * 64}  ../secret.txt\n")
    (pkg / "model.onnx").symlink_to(canary)
    with opened_files() as seen, pytest.raises(BadInput, match="symlink"):
        check_files(pkg)
    assert str(canary) not in seen
    (pkg / "model.onnx").unlink()
    (pkg / "model.onnx").write_bytes(b"x")
    with opened_files() as seen:
        problems, _ = check_files(pkg)
    assert any("outside the package" in p for p in problems), problems
    assert str(canary) not in seen


# --- 4. hangs and crashes instead of a line --------------------------------------------------


def _subprocess_cli(*args: str, timeout: float = 60):
    done = subprocess.run([sys.executable, "-m", "edgeopt", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "CI": "true"})
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize("kind", ["fifo", "dev_zero", "folder", "not_utf8"])
def test_a_profile_that_is_no_regular_text_file_is_one_line(tmp_path, kind):
    targets = tmp_path / "targets"
    targets.mkdir()
    bad = targets / "bad.yaml"
    if kind == "fifo":
        os.mkfifo(bad)
    elif kind == "dev_zero":
        bad.symlink_to("/dev/zero")
    elif kind == "folder":
        bad.mkdir()
    else:
        bad.write_bytes(b"name: bad\n\xff\xfe\x00")
    code, lines = _subprocess_cli("targets", "list", "--targets-dir", str(targets), timeout=60)  # no hang
    assert_one_line(code, lines, 2, str(bad))


def test_a_fifo_as_data_is_refused_not_waited_on(tmp_path):
    from edgeopt.safe_io import read_lines

    fifo = tmp_path / "texts.txt"
    os.mkfifo(fifo)
    with pytest.raises(BadInput, match="FIFO"):
        list(read_lines(fifo))


def test_a_50_mb_single_line_is_refused_bounded(tmp_path):
    import tracemalloc

    from edgeopt.safe_io import read_lines

    big = tmp_path / "texts.txt"
    with open(big, "wb") as handle:
        handle.write(b"a" * (50 << 20))
    tracemalloc.start()
    with pytest.raises(BadInput, match="line 1"):
        list(read_lines(big))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 8 << 20, peak  # read bounded, never the whole line


@pytest.mark.parametrize("kind", ["zero_byte", "huge_header", "random"])
def test_bad_npz_is_bad_input_naming_the_file(tmp_path, kind):
    import numpy as np

    from edgeopt.data.npz import read_npz
    from edgeopt.models.spec import InputSpec

    path = tmp_path / "calib.npz"
    if kind == "zero_byte":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(os.urandom(300))
    else:
        np.savez(path, input=np.zeros((2, 3), np.float32))
        with zipfile.ZipFile(path) as src:
            data = src.read("input.npy")
        header = data[:data.index(b"\n") + 1].replace(b"(2, 3)", b"(1125899906842624, 1000)")
        header = header[:-1].ljust(len(data[:data.index(b"\n")]), b" ") + b"\n" if len(header) < 128 else header
        with zipfile.ZipFile(path, "w") as dst:
            dst.writestr("input.npy", header + data[data.index(b"\n") + 1:])
    spec = InputSpec(name="input", dtype="float32", shape=(1, 3), dynamic_axes={0: "batch"})
    with pytest.raises(BadInput, match=str(path)):
        read_npz(path, [spec])


def test_pillow_decompression_bomb_is_bad_input(tmp_path, monkeypatch):
    Image = pytest.importorskip("PIL.Image")
    from edgeopt.data.images import read_image_folder
    from edgeopt.models.spec import InputSpec

    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("L", (300, 300)).save(folder / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100 // 2)  # 300x300 > 2x the limit: Pillow's bomb error
    spec = InputSpec(name="x", dtype="float32", shape=(1, 1, 8, 8), dynamic_axes={0: "batch"})
    with pytest.raises(BadInput, match="big.png"):
        read_image_folder(folder, [spec], {})


# --- 5. messages -----------------------------------------------------------------------------


def test_a_usage_error_is_one_line_with_the_help_hint():
    code, lines = _subprocess_cli("build", "--no-such-option", timeout=60)
    assert_one_line(code, lines, 2, "--no-such-option", "--help")
    assert lines[0].startswith("edgeopt: error:")


def test_exit_74_names_the_path():
    import errno

    from edgeopt.errors import user_line

    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/cache/export/abc/model.onnx")
        except OSError as inner:
            raise RuntimeError("copy failed") from inner
    except RuntimeError as outer:
        line, code = user_line(outer)
    assert code == 74 and "/cache/export/abc/model.onnx" in line


def test_a_release_model_path_leaving_the_project_is_refused(tmp_path):
    from edgeopt.project import load_project

    (tmp_path / "outside.onnx").write_bytes(b"x")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "edgeopt.yaml").write_text("models:\n  m:\n    source: ../outside.onnx\ntargets: [cpu]\n")
    loaded = load_project(project / "edgeopt.yaml")
    with pytest.raises(BadInput, match="outside"):
        loaded.source(loaded.models["m"])
    (project / "edgeopt.yaml").write_text("models:\n  m:\n    source: models/missing.onnx\ntargets: [cpu]\n")
    loaded = load_project(project / "edgeopt.yaml")
    with pytest.raises(BadInput, match="does not exist"):
        loaded.source(loaded.models["m"])


def _onnx_with_external(folder: Path, location: str) -> Path:
    import numpy as np
    import onnx
    from onnx import helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 2])], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = folder / "m.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True, location="w.bin",
              size_threshold=0)
    if location != "w.bin":
        reloaded = onnx.load(str(path), load_external_data=False)
        for entry in reloaded.graph.initializer[0].external_data:
            if entry.key == "location":
                entry.value = location
        onnx.save(reloaded, str(path))
    return path


def test_onnx_external_data_beside_the_model_loads(tmp_path):
    from edgeopt.models.onnx_loader import load_checked

    model = load_checked(_onnx_with_external(tmp_path, "w.bin"))
    assert model.graph.initializer[0].raw_data


def test_onnx_external_data_outside_the_folder_is_refused_unopened(tmp_path):
    from edgeopt.models.onnx_loader import load_checked

    (tmp_path / "secret.bin").write_bytes(b"\0" * 24)
    (tmp_path / "model").mkdir()
    path = _onnx_with_external(tmp_path / "model", "../secret.bin")
    with opened_files() as seen, pytest.raises(BadInput, match="leads outside"):
        load_checked(path)
    assert str(tmp_path / "secret.bin") not in seen


def test_a_metric_that_raises_or_is_missing_is_bad_input(tmp_path):
    from edgeopt.metrics.outputs import load_user_metric

    with pytest.raises(BadInput, match="not found"):
        load_user_metric(str(tmp_path / "none.py") + ":score")
    (tmp_path / "m.py").write_text("def score(ref, cand, labels):\n    raise RuntimeError('boom')\n")
    metric = load_user_metric(str(tmp_path / "m.py") + ":score")
    with pytest.raises(BadInput, match="m.py:score: the function raised RuntimeError: boom"):
        metric({}, {}, None)


def test_a_safetensors_header_claiming_2_62_bytes_is_bad_input(tmp_path):
    import struct

    pytest.importorskip("transformers")
    pytest.importorskip("optimum")
    from edgeopt.models.huggingface import check_folder

    model = _hf_folder(tmp_path, "model")
    (model / "model.safetensors").write_bytes(struct.pack("<Q", 1 << 62) + b"{}")
    with pytest.raises(BadInput, match="model.safetensors: not a valid safetensors"):
        check_folder(model)


@pytest.mark.slow
def test_a_valid_onnx_with_external_data_builds(example_build, tmp_path):
    """Exit 0 with the weights read from beside the model (was exit 70)."""
    import onnx
    from conftest import FAST, build_json

    model = onnx.load(example_build["artifacts"]["onnx_fp32"])
    (tmp_path / "model").mkdir()
    onnx.save(model, str(tmp_path / "model" / "digits.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="digits.weights", size_threshold=0)
    code, document, stderr = build_json(str(tmp_path / "model" / "digits.onnx"), "--calib", str(CALIB),
                                        "--eval", str(REPO / "calibration" / "digits_eval.npz"),
                                        "--out", str(tmp_path / "out"), *FAST)
    assert code == 0, stderr
    assert document["metrics"]["int8"]["accuracy"] > 0.9


def test_a_custom_domain_operator_is_one_line_naming_it(tmp_path):
    import onnx
    from onnx import helper

    graph = helper.make_graph([helper.make_node("Mystery", ["x"], ["y"], name="odd", domain="com.example")], "g",
                              [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 3])],
                              [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.example", 1)])
    onnx.save(model, str(tmp_path / "custom.onnx"))
    code, lines = run("build", str(tmp_path / "custom.onnx"), "--calib", str(CALIB), "--out", str(tmp_path / "out"))
    assert_one_line(code, lines, 2, "custom.onnx", "'com.example'", "Mystery")
    assert not (tmp_path / "out").exists()


def test_a_release_whose_model_file_is_missing_is_one_line_and_writes_no_dist(tmp_path, monkeypatch):
    (tmp_path / "edgeopt.yaml").write_text("models:\n  m:\n    source: models/missing.onnx\ntargets: [cpu]\n")
    monkeypatch.chdir(tmp_path)
    code, lines = run("release")
    assert_one_line(code, lines, 2, "missing.onnx", "does not exist")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["edgeopt.yaml"]


def test_a_cache_cleared_during_a_cold_build_is_one_line_not_an_internal_error(tmp_path, monkeypatch):
    import shutil

    from edgeopt.stages.quantize import QuantizeStage

    cache = tmp_path / "cache"
    original = QuantizeStage.run

    def cleared_first(self, folder):  # `edgeopt cache clear` from another shell, just before quantize
        shutil.rmtree(cache / "export")
        return original(self, folder)

    monkeypatch.setattr(QuantizeStage, "run", cleared_first)
    code, lines = run("build", "--cache-dir", str(cache), "--out", str(tmp_path / "out"), "--latency-seconds", "0.1")
    assert_one_line(code, lines, 4, "removed from the cache", "run the build again")
    assert not (tmp_path / "out").exists()
