"""`edgeopt build` end to end on the bundled example (issue 2's "done when")."""

from __future__ import annotations

import os
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CALIB, EVAL, FAST, build_json, run_cli


def test_example_int8_within_one_point_of_fp32(example_build):
    fp32, int8 = example_build["metrics"]["fp32"], example_build["metrics"]["int8"]
    assert fp32["accuracy"] >= 0.97
    assert fp32["accuracy"] - int8["accuracy"] <= 0.01
    assert int8["agreement"] >= 0.98
    assert example_build["status"] == "ok"
    assert example_build["target"]["backend"] == "onnxruntime"


def test_json_document_has_the_design_keys(example_build):
    doc = example_build
    assert set(doc) >= {"status", "model", "target", "build_dir", "artifacts", "metrics", "engine", "stages", "gates"}
    assert set(doc["model"]) >= {"name", "source", "sha256", "params", "params_before_prune"}
    assert doc["model"]["params"] == 666282
    for key in ("onnx_fp32", "onnx_int8", "deployable"):
        assert Path(doc["artifacts"][key]).is_absolute() and Path(doc["artifacts"][key]).is_file()
    for precision in ("fp32", "int8"):
        latency = doc["metrics"][precision]["latency_ms"]
        assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert doc["engine"]["status"] == "not_applicable"
    assert [s["name"] for s in doc["stages"]] == ["load", "export", "quantize", "calib_stats", "compile", "validate"]
    assert doc["gates"][0]["name"] == "max_accuracy_drop" and doc["gates"][0]["passed"] is True


def test_manifest_records_every_artifact_with_its_hash(example_build):
    from edgeopt.hashing import sha256_file

    build_dir = Path(example_build["build_dir"])
    manifest = json.loads((build_dir / "manifest.json").read_text())
    assert manifest["schema_version"] == 1 and manifest["model"]["sha256"] == example_build["model"]["sha256"]
    assert manifest["target"]["name"] == example_build["target"]["name"]
    listed = {a["path"]: a for a in manifest["artifacts"]}
    assert {"model.fp32.onnx", "model.int8.onnx", "model.deployable.onnx", "session.json", "calibration.json"} <= set(listed)
    for path, entry in listed.items():
        assert sha256_file(build_dir / path) == entry["sha256"]
        assert (build_dir / path).stat().st_size == entry["bytes"]
    assert [s["name"] for s in manifest["stages"]] == ["load", "export", "quantize", "calib_stats", "compile", "validate"]
    assert not list(build_dir.parent.glob(".*partial*")), "a staging folder was left behind"


def test_int8_model_has_explicit_qdq_and_is_smaller(example_build):
    import onnx

    int8 = onnx.load(example_build["artifacts"]["onnx_int8"])
    ops = {n.op_type for n in int8.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    fp32_bytes = Path(example_build["artifacts"]["onnx_fp32"]).stat().st_size
    assert Path(example_build["artifacts"]["onnx_int8"]).stat().st_size < fp32_bytes / 2


def test_repeated_build_is_served_from_cache_without_importing_torch(example_build, tmp_path, cache_dir):
    """The second identical build reuses every stage; it must not even import torch (which alone
    takes over a second), which is what keeps it well under 3 s."""
    script = (
        "import sys, json; from click.testing import CliRunner; from edgeopt.cli import main;"
        f"r = CliRunner().invoke(main, ['build', '--out', {str(tmp_path / 'again')!r}, '--latency-seconds', '0.2', '--json']);"
        "d = json.loads(r.stdout); print(json.dumps({'code': r.exit_code, 'cached': [s['cached'] for s in d['stages']],"
        " 'torch': 'torch' in sys.modules, 'acc': d['metrics']['int8']['accuracy']}))"
    )
    env = {"EDGEOPT_CACHE": str(cache_dir), "PATH": "/usr/bin:/bin", **({"PYTHONPATH": os.environ["PYTHONPATH"]} if "PYTHONPATH" in os.environ else {})}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report == {"code": 0, "cached": [True] * 6, "torch": False, "acc": example_build["metrics"]["int8"]["accuracy"]}


def test_changing_only_the_target_reuses_load_and_export(example_build):
    """The dry run computes every key as a build does, and stops at the first stage the cache
    cannot serve: for another CPU profile that is quantize (avx2 quantizes with reduce_range, a
    different artifact), so load and export keep their keys."""
    result = run_cli("build", "--target", "cpu-x86-avx2", "--dry-run", "--json", *FAST)
    assert result.exit_code == 0, result.stderr
    rows = json.loads(result.stdout)["stages"]
    assert [(r["name"], r["cached"]) for r in rows] == [("load", True), ("export", True), ("quantize", False)]
    keys = {s["name"]: s["key"] for s in json.loads(Path(example_build["manifest"]).read_text())["stages"]}
    assert [r["key"] for r in rows[:2]] == [keys["load"], keys["export"]] and rows[2]["key"] != keys["quantize"]


@pytest.mark.slow
def test_no_cache_runs_every_stage(example_build, tmp_path):
    code, doc, _ = build_json("--no-cache", "--out", str(tmp_path / "fresh"), *FAST)
    assert code == 0
    assert not any(s["cached"] for s in doc["stages"])
    assert doc["metrics"]["int8"]["accuracy"] == example_build["metrics"]["int8"]["accuracy"]


def test_corrupt_cache_entry_is_rebuilt(example_build, tmp_path, cache_dir):
    """A damaged file in a cache entry (the compile stage's: the cheapest to rebuild; every stage's
    entry is looked up the same way) is noticed by hash, and the stage runs again."""
    import onnxruntime

    manifest = json.loads(Path(example_build["build_dir"], "manifest.json").read_text())
    stage = next(s for s in manifest["stages"] if s["name"] == "compile")
    damaged = next(name for name in stage["outputs"] if name.endswith(".onnx"))
    (cache_dir / "compile" / stage["key"] / damaged).write_bytes(b"corrupted")
    code, doc, _ = build_json("--out", str(tmp_path / "healed"), *FAST)
    assert code == 0
    assert {s["name"]: s["cached"] for s in doc["stages"]} == {
        "load": True, "export": True, "quantize": True, "calib_stats": True, "compile": False, "validate": True}
    onnxruntime.InferenceSession(doc["artifacts"]["deployable"], providers=["CPUExecutionProvider"])


def test_gate_failure_exits_1_and_still_writes_the_build(tmp_path):
    """A gate nothing can pass (p50 under a nanosecond) on a copy of this host's own profile: the
    build is judged gate_failed, exits 1, and the build directory is still written."""
    import yaml

    from edgeopt import targets

    raw = yaml.safe_load(Path(targets.resolve("cpu").source).read_text())
    raw.pop("aliases", None)
    raw.pop("name", None)
    raw["gates"] = {**raw.get("gates", {}), "max_latency_ms": 1e-6}
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "impossible.yaml").write_text(yaml.safe_dump(raw))
    code, doc, stderr = build_json("--out", str(tmp_path / "strict"), "--target", "impossible",
                                   "--targets-dir", str(tmp_path / "targets"),
                                   "--latency-seconds", "0.05", "--calib-samples", "32")
    assert code == 1, stderr
    assert doc["status"] == "gate_failed"
    latency = [g for g in doc["gates"] if "latency" in g["name"]]
    assert latency and latency[0]["passed"] is False
    assert Path(doc["build_dir"], "manifest.json").is_file()


def test_exit_code_follows_the_accuracy_gate(tmp_path):
    """A zero accuracy budget: whichever way two calibration samples go, the gate's verdict is
    the measured drop's, and the exit code and status follow it."""
    code, doc, _ = build_json("--out", str(tmp_path / "zero"), "--latency-seconds", "0.05",
                              "--max-accuracy-drop", "0", "--calib-samples", "2")
    drop = doc["metrics"]["fp32"]["accuracy"] - doc["metrics"]["int8"]["accuracy"]
    gate = next(g for g in doc["gates"] if "accuracy" in g["name"])
    assert gate["passed"] is (drop <= 0)
    failed = any(g["passed"] is False for g in doc["gates"])
    assert (code, doc["status"]) == ((1, "gate_failed") if failed else (0, "ok"))


def test_human_summary_names_stages_accuracy_speedup_and_artifacts(example_build, tmp_path):
    result = run_cli("build", "--out", str(tmp_path / "human"), *FAST)
    assert result.exit_code == 0
    text = result.stdout
    for needle in ("load", "export", "quantize", "compile", "validate", "accuracy", "speedup", "build dir", str(tmp_path / "human")):
        assert needle in text
    assert "{" not in text.splitlines()[0]


def test_explicit_data_paths_match_the_bundled_defaults(example_build, tmp_path):
    code, doc, _ = build_json("--calib", str(CALIB), "--eval", str(EVAL), "--out", str(tmp_path / "explicit"), *FAST)
    assert code == 0
    assert doc["metrics"]["int8"]["accuracy"] == example_build["metrics"]["int8"]["accuracy"]


def test_jetson_build_defers_the_engine_and_says_what_to_run(example_build, tmp_path, no_tensorrt):
    code, doc, stderr = build_json("--target", "jetson", "--out", str(tmp_path / "jetson"), *FAST)
    assert code == 0, stderr
    assert doc["target"] == {"name": "jetson-orin-nano-8gb", "backend": "tensorrt"}
    engine = doc["engine"]
    assert engine["status"] == "deferred" and "TensorRT is not installed" in engine["reason"]
    assert Path(engine["plan"]).is_file() and json.loads(Path(engine["plan"]).read_text())
    assert engine["trtexec"].startswith("trtexec ") and "--onnx=model.int8.onnx" in engine["trtexec"]
    assert doc["artifacts"]["deployable"] is None  # nothing pretends to be an engine
    assert not [p for p in Path(doc["build_dir"]).iterdir() if p.suffix in (".engine", ".plan", ".trt")]
    # INT8 accuracy is still validated, on this CPU with ONNX Runtime; latency is the device's to measure
    assert doc["metrics"]["fp32"]["accuracy"] - doc["metrics"]["int8"]["accuracy"] <= 0.01
    assert doc["metrics"]["int8"]["latency_ms"] is None and "GPU" in doc["metrics"]["latency_note"]
    assert {s["name"]: s["cached"] for s in doc["stages"]}["export"] is True


def test_latency_seconds_reaches_the_quantize_stage(example_build, tmp_path, monkeypatch):
    """`--latency-seconds` is the quantize stage's candidate timing too (it was always 2 s)."""
    from edgeopt.stages import recipe_choice

    asked = []
    real = recipe_choice.bench.measure_onnx

    def spy(models, data, threads, **kwargs):
        asked.append(kwargs["duration_s"])
        return real(models, data, threads, **kwargs)

    monkeypatch.setattr(recipe_choice.bench, "measure_onnx", spy)
    # 32 calibration samples: a quicker quantize stage, timed all the same
    code, doc, stderr = build_json("--out", str(tmp_path / "half"), "--latency-seconds", "0.1", "--calib-samples", "32")
    assert code == 0, stderr
    assert {s["name"]: s["cached"] for s in doc["stages"]}["quantize"] is False
    assert asked and set(asked) == {0.1}
