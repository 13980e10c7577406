"""`edgeopt bench` on an LLM build folder and LLM verdicts in baselines and `edgeopt report`
(issue 18, items 5 and 7)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from llm_zoo import texts, tiny_llama  # noqa: F401 - fixtures

from edgeopt.report import compare


def _llm(per_token_ms: float, perplexity: float = 20.0, agreement: float = 0.9, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    tokens = list(per_token_ms * (1 + 0.02 * rng.standard_normal(200)))
    return {"perplexity": perplexity, "agreement": agreement, "decode_tokens_per_s": 1000 / per_token_ms,
            "ttft_ms": 10 * per_token_ms, "token_samples_ms": tokens, "ttft_samples_ms": [10 * t for t in tokens[:8]]}


def _verdicts(a: dict, b: dict) -> dict:
    return {r["metric"]: r["verdict"] for r in compare.llm_rows(a, b, 0.05, 0.005)}


def test_llm_verdicts_on_speed_perplexity_and_agreement():
    assert _verdicts(_llm(5.0), _llm(5.0, seed=1)) == {"decode_tokens_per_s": "unchanged", "ttft_ms": "unchanged",
                                                       "perplexity": "unchanged", "greedy_agreement": "unchanged"}
    slower = _verdicts(_llm(5.0), _llm(6.0, seed=1))
    assert slower["decode_tokens_per_s"] == "regressed" and slower["ttft_ms"] == "regressed"
    assert _verdicts(_llm(5.0), _llm(4.0, seed=1))["decode_tokens_per_s"] == "improved"
    assert _verdicts(_llm(5.0), _llm(5.0, perplexity=21.0))["perplexity"] == "regressed"  # +5%
    assert _verdicts(_llm(5.0), _llm(5.0, perplexity=19.0))["perplexity"] == "improved"
    assert _verdicts(_llm(5.0), _llm(5.0, agreement=0.8))["greedy_agreement"] == "regressed"
    no_samples = {k: v for k, v in _llm(5.0).items() if not k.endswith("samples_ms")}
    assert _verdicts(no_samples, _llm(6.0))["decode_tokens_per_s"] == "not judged"
    assert compare.llm_rows(None, None, 0.05, 0.005) == []


def test_bench_baseline_and_report_on_an_llm_build(tiny_llama, texts, tmp_path):
    from conftest import build_json, run_cli

    calib, evaluation = texts
    out = tmp_path / "build"
    code, document, stderr = build_json(str(tiny_llama), "--target", "cpu", "--calib", str(calib), "--eval",
                                        str(evaluation), "--out", str(out), "--save-baseline", str(tmp_path / "base.json"))
    assert document is not None, stderr
    baseline = json.loads((tmp_path / "base.json").read_text())
    assert baseline["llm"]["perplexity"] == document["metrics"]["llm"]["perplexity"]
    assert len(baseline["llm"]["token_samples_ms"]) > 100  # raw times: a ratio with a confidence interval
    (tmp_path / "current.json").write_text(json.dumps(document))
    result = run_cli("report", "--baseline", str(tmp_path / "base.json"), "--current", str(tmp_path / "current.json"),
                     "--format", "json", "--out", str(tmp_path / "report"))
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    rows = {r["metric"]: r for r in report["comparisons"][0]["rows"]}
    assert rows["perplexity"]["verdict"] == "unchanged" and rows["greedy_agreement"]["delta"] == 0
    assert rows["decode_tokens_per_s"]["ratio"] == pytest.approx(1.0)  # the same samples: ratio exactly 1

    bench = run_cli("bench", str(out), "--duration", "0.2", "--json")
    assert bench.exit_code == 0, bench.stderr
    doc = json.loads(bench.stdout)
    assert doc["kind"] == "causal-lm" and doc["runs"] >= 3 and doc["decode_tokens_per_s"] > 0 and doc["ttft_ms"] > 0
    assert len(doc["token_samples_ms"]) == doc["runs"] * (doc["new_tokens"] - 1)
    onnx = [p for p in (out / "genai").iterdir() if p.name.startswith("model.onnx")]
    assert doc["model_bytes"] == sum(p.stat().st_size for p in onnx)
    assert doc["peak_rss_mb"] >= doc["rss_before_load_mb"] > 0
    assert doc["token_latency_ms"]["p50"] <= doc["token_latency_ms"]["p99"]
    text = run_cli("bench", str(out), "--duration", "0.1")
    assert "tok/s" in text.stdout and "peak RSS" in text.stdout


@pytest.mark.parametrize("target, folder", [("cpu", "genai"), ("jetson", "edge_llm")])
def test_package_and_verify_an_llm_build(tiny_llama, texts, tmp_path, target, folder):
    import tarfile

    from conftest import build_json, run_cli

    calib, evaluation = texts
    out = tmp_path / "build"
    code, document, stderr = build_json(str(tiny_llama), "--target", target, "--calib", str(calib), "--eval",
                                        str(evaluation), "--out", str(out))
    assert document is not None, stderr
    packaged = run_cli("package", str(out), "--out", str(tmp_path / "dist"), "--json")
    assert packaged.exit_code == 0, packaged.stderr
    path = json.loads(packaged.stdout)["path"]
    with tarfile.open(path) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    deployable = {str(p.relative_to(out)) for p in (out / folder).rglob("*") if p.is_file()}
    assert deployable <= names and "manifest.json" in names and "SHA256SUMS" in names
    verified = run_cli("verify", path, "--json")
    assert verified.exit_code == 0 and json.loads(verified.stdout)["ok"], verified.stdout
    from edgeopt.hashing import sha256_file

    shown = json.loads(run_cli("verify", path, "--show", "--json").stdout)["provenance"]
    deps = {d["name"]: d.get("digest", {}).get("sha256") for d in shown["predicate"]["buildDefinition"]["resolvedDependencies"]}
    assert deps["calibration data"] == sha256_file(calib) and deps["evaluation data"] == sha256_file(evaluation)
    assert deps["target profile"]  # the profile as built, by hash
    extracted = tmp_path / "x"
    with tarfile.open(path) as archive:
        archive.extractall(extracted, filter="data")
    root = next(extracted.iterdir())
    changed = sorted(p for p in (root / folder).rglob("*") if p.is_file())[0]
    changed.write_bytes(changed.read_bytes() + b" ")
    broken = run_cli("verify", str(root), "--json")
    assert broken.exit_code == 1 and any(changed.name in p for p in json.loads(broken.stdout)["problems"])


def test_llm_in_edgeopt_yaml_release_and_matrix(tiny_llama, texts, tmp_path):
    from conftest import run_cli

    import shutil

    calib, evaluation = texts
    shutil.copytree(tiny_llama, tmp_path / "tinylm")  # paths in a project file stay inside its folder
    for file in texts:
        shutil.copyfile(file, tmp_path / file.name)
    project = tmp_path / "edgeopt.yaml"
    project.write_text(f"models:\n  tinylm:\n    source: tinylm\n    calib: {calib.name}\n    eval: {evaluation.name}\n"
                       "    task: text-generation\n    metric: perplexity\ntargets: [cpu, jetson]\n")
    matrix = run_cli("matrix", "-p", str(project), "--by", "pair")
    assert matrix.exit_code == 0, matrix.stderr + matrix.stdout
    assert json.loads(matrix.stdout)["include"] == [{"model": "tinylm", "target": "cpu"}, {"model": "tinylm", "target": "jetson"}]
    # one pair (a release spawns a process per pair): the Jetson one, whose engine is deferred
    result = run_cli("release", "-p", str(project), "--out", str(tmp_path / "dist"), "-j", "1", "-t", "jetson", "--json")
    assert result.stdout.strip(), result.stderr
    summary = json.loads(result.stdout)
    pairs = {(p["model"], p["target"]): p for p in summary["rows"]}
    assert set(pairs) == {("tinylm", "jetson")}, summary
    assert all(p["status"] in ("ok", "gate_failed") for p in pairs.values()), summary
    assert all(p["metric"] == "perplexity" and p["metric_value"] > 1 for p in pairs.values())
    assert pairs[("tinylm", "jetson")]["engine"] == "deferred"
    assert all(Path(p["package"]).is_file() for p in pairs.values())
