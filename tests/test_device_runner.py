"""The device runner (run_on_device.py + device_runtime.py in TensorRT packages): Python 3.8
syntax only, the toolchain's names and rules, and a whole run against the strict fake TensorRT."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers.fake_device import FakeCuda, with_engine
from helpers.fake_tensorrt import FakeTensorRT
from onnx import TensorProto, helper

import edgeopt
from edgeopt import device_runner as runner, targets
from edgeopt.backends.tensorrt import api as tensorrt_api, timing_defaults
from edgeopt.backends.tensorrt.builder import compile_tensorrt
from edgeopt.build_dir import LAYOUT, read_manifest
from edgeopt.models.spec import InputSpec
from edgeopt.package.bundle import npz_bytes

SHIPPED = ["device_runner", "device_runtime", "timing", "compare"]  # the toolchain's own modules, in every GPU package
SOURCES = [Path(edgeopt.__file__).parent / f"{name}.py" for name in SHIPPED]
W = np.array([[1.0, 0.2, -0.5], [0.3, 1.1, 0.1], [-0.4, 0.6, 1.3], [0.5, -0.2, 0.4]], dtype=np.float32)
N = 10


def test_python_3_8_floor_checked_by_vermin(tmp_path):
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    assert vermin, "vermin is a dev dependency (pyproject [dev])"
    ok = subprocess.run([vermin, "-t=3.8-", "--no-tips", "--violations", "--eval-annotations", *map(str, SOURCES)],
                        capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    newer = tmp_path / "newer.py"
    newer.write_text("def f(x):\n    match x:\n        case 1:\n            return 'a'.removeprefix('b')\n")
    assert subprocess.run([vermin, "-t=3.8-", "--no-tips", "--violations", str(newer)], capture_output=True).returncode != 0


def test_imports_only_the_standard_library_numpy_and_tensorrt():
    import ast

    allowed = set(sys.stdlib_module_names) | {"numpy", "tensorrt", "__future__", *SHIPPED}
    for source in SOURCES:
        for node in ast.walk(ast.parse(source.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) else []
            assert {n.split(".")[0] for n in names} <= allowed, (source.name, names)


def test_the_runner_copies_agree_with_the_toolchain():
    assert (runner.PLAN, runner.MANIFEST, runner.ENGINE_JSON) == (LAYOUT.tensorrt_plan, LAYOUT.manifest, LAYOUT.tensorrt_engine_json)
    assert runner.DEVICE_MANIFEST == LAYOUT.device_manifest
    assert (runner.EVAL_INPUTS, runner.EVAL_OUTPUTS) == (LAYOUT.eval_inputs, LAYOUT.eval_fp32_outputs)
    assert (runner.RESULTS, runner.LAYERS) == (LAYOUT.device_results, LAYOUT.layer_report)
    assert (runner.WARMUP_MS, runner.DURATION_S, runner.MIN_RUNS) == (
        timing_defaults.WARMUP_MS, timing_defaults.DURATION_S, timing_defaults.MIN_RUNS)
    for version in ("8.5.2.2", "10.3.0.30", "10.16.1"):
        assert runner.cache_header(version) == tensorrt_api.cache_header(version)


@pytest.mark.parametrize("installed,cc", [("10.3.0.30", "8.7"), ("10.3.1", "8.7"), ("10.4.0", "8.7"), ("8.6.1", "8.7"),
                                          ("10.3.0.30", "8.6"), ("10.3.0.30", "unknown")])
@pytest.mark.parametrize("pinned_cc", ["8.7", "unknown", None])
def test_the_runner_refuses_a_device_exactly_when_the_builder_does(installed, cc, pinned_cc):
    """check_device (shipped) and builder._mismatch (host): one rule for versions and capabilities."""
    from types import SimpleNamespace

    from edgeopt.backends.tensorrt.builder import _mismatch

    plan = {"tensorrt": "10.3", "compute_capability": pinned_cc, "target": "jetson"}
    device = SimpleNamespace(compute_capability=lambda: cc)
    try:
        runner.check_device(SimpleNamespace(__version__=installed), device, plan)
        refused = False
    except runner.Refused:
        refused = True
    assert refused == bool(_mismatch(installed, cc, "10.3", pinned_cc)), (installed, cc, pinned_cc)


def test_the_runner_percentiles_are_the_hosts():
    """The device runner's statistics and the host harness's, on the same runs (trtexec's rule)."""
    from edgeopt import bench

    times = [3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0, 6.0, 5.0, 3.0, 7.5]
    from edgeopt import device_runtime

    host = bench.summarize(times).model_dump()
    device = device_runtime.percentiles(times)  # what device_results.json records
    assert device["median"] == host["p50"] == 4.0
    for key in ("p90", "p95", "p99", "mean", "min", "max"):
        assert device[key] == pytest.approx(host[key]), key
    assert (host["p90"], host["p99"]) == (7.5, 9.0)  # trtexec's rank, not numpy's interpolation (7.25, ~8.85)


def _package(folder: Path, target_name: str, version: str) -> tuple[Path, np.ndarray]:
    """What a TensorRT package holds for the runner: ONNX, plan, manifest, evaluation data."""
    io = ([helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
          [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3])])
    w = helper.make_tensor("w", TensorProto.FLOAT, [4, 3], W.flatten().tolist())
    inits = [helper.make_tensor("s", TensorProto.FLOAT, [], [0.02]), helper.make_tensor("z", TensorProto.INT8, [], [0]), w]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]), helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("MatMul", ["xd", "w"], ["logits"])]
    implicit = targets.resolve(target_name).build.int8_mode == "implicit"
    graph = helper.make_graph(nodes[2:] if implicit else nodes, "m", *io, [w] if implicit else inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    folder.mkdir(parents=True)
    onnx.save(model, str(folder / "model.onnx"))
    cache = None
    if implicit:
        cache = folder / LAYOUT.tensorrt_calibration_cache
        cache.write_text("TRT-8502-EntropyCalibration2\nx: 3c010a14\n")  # written for another version
    target = targets.resolve(target_name)
    tensorrt_api._cached, tensorrt_api._probed = None, True  # the host side: no TensorRT
    try:
        compile_tensorrt(folder / "model.onnx", target, [InputSpec(name="x", shape=(1, 4))], folder, calibration_cache=cache)
    finally:
        tensorrt_api._probed = False
    x = np.random.default_rng(0).normal(size=(N, 4)).astype(np.float32)
    logits = x @ W
    labels = logits.argmax(1)
    (folder / LAYOUT.eval_inputs).write_bytes(npz_bytes({"x": x, "labels": labels}))
    (folder / LAYOUT.eval_fp32_outputs).write_bytes(npz_bytes({"logits": logits}))
    manifest = {"target": {"name": target.name}, "gates": [{"name": "max_accuracy_drop", "threshold": 0.05}],
                "engine": {"status": "deferred", "trtexec": "trtexec ..."}, "artifacts": []}
    (folder / LAYOUT.manifest).write_text(json.dumps(manifest))
    return folder, x


def _fakes(version: str, profile: tuple, flip: int | None = 3, shape: str = "10"):
    cuda = FakeCuda()

    def fn(inputs):
        logits = inputs["x"] @ W
        if flip is not None and len(logits) > flip:
            logits[flip] = np.roll(logits[flip], 1)  # changes the top-1 of the batch's sample `flip`
        return {"logits": logits}

    return with_engine(FakeTensorRT(shape, version), cuda, {"x": profile}, ["logits"], fn), cuda


def test_a_whole_run_writes_the_results_back(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder, x = _package(tmp_path / "pkg", "jetson", "10.3.0.30")
    shipped = (folder / LAYOUT.manifest).read_bytes()
    trt, cuda = _fakes("10.3.0.30", ((1, 4), (8, 4)))
    results, passed = runner.run(str(folder), trt, cuda, warmup_s=0.0, duration_s=0.0, min_runs=5)
    # batches of 8 (the profile's max): samples 3 and 8+3 would flip, but the last batch has 2
    assert results["accuracy"]["top1_agreement"] == pytest.approx((N - 1) / N)
    assert results["accuracy"]["fp32_accuracy"] == 1.0 and results["accuracy"]["engine_accuracy"] == pytest.approx(0.9)
    assert passed is False  # a drop of 0.1 against the manifest's 0.05 gate
    assert results["timing"]["runs"] >= 5 and results["timing"]["batch"] == 1
    assert results["layers"] == {"GPU INT8": 1, "GPU FP16": 1, "GPU FP32": 1}
    assert [e["x"] for e in trt.executions[:2]] == [(8, 4), (2, 4)]  # then the timing runs at opt (1)
    assert (folder / "model.engine").read_bytes() == b"FAKE-SERIALIZED-ENGINE"
    manifest = json.loads((folder / LAYOUT.device_manifest).read_text())
    assert manifest["engine"]["status"] == "built" and manifest["deployable"] == "model.engine"
    assert read_manifest(folder) == manifest  # what the workstation reads back
    assert manifest["engine"]["trtexec"] == "trtexec ..."  # the host's record is kept
    listed = {a["path"] for a in manifest["artifacts"]}
    assert {"model.engine", LAYOUT.tensorrt_engine_json, LAYOUT.layer_report, LAYOUT.device_results} <= listed
    assert json.loads((folder / LAYOUT.device_results).read_text()) == manifest["device_results"]
    assert cuda.memory == {} and cuda.pinned == {} and cuda.streams == set()  # everything released
    assert "set_shape" in trt.names() and trt.args("config.profiling_verbosity") == [trt.ProfilingVerbosity.DETAILED]
    assert (tmp_path / "home" / ".cache" / "edgeopt" / "tensorrt" / "timing-sm87-trt10.3.cache").is_file()
    runner.run(str(folder), trt, cuda, warmup_s=0.0, duration_s=0.0, min_runs=1)
    assert (folder / LAYOUT.manifest).read_bytes() == shipped  # a signed package verifies again next run


def test_the_dla_plan_builds_with_a_profile_and_the_cache_under_this_version(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    folder, _ = _package(tmp_path / "pkg", "jetson-orin-nx-16gb-dla", "10.3.0.30")
    trt, cuda = _fakes("10.3.0.30", ((1, 4), (1, 4)), flip=None)
    results, passed = runner.run(str(folder), trt, cuda, warmup_s=0.0, duration_s=0.0, min_runs=1)
    assert passed and results["accuracy"]["top1_agreement"] == 1.0
    assert trt.args("set_shape") == [("x", (1, 4), (1, 4), (1, 4))] and "set_calibration_profile" in trt.names()
    assert trt.args("config.default_device_type") == [trt.DeviceType.DLA]


@pytest.mark.parametrize("version,cc,expect", [("10.16.1", "8.7", "TensorRT 10.16.1 but the plan is for 10.3"),
                                               ("10.3.0.30", "7.2", "compute capability 7.2")])
def test_another_tensorrt_or_gpu_is_refused_with_exit_3(tmp_path, version, cc, expect):
    folder, _ = _package(tmp_path / "pkg", "jetson", version)
    trt, cuda = _fakes(version, ((1, 4), (8, 4)))
    cuda.cc = cc
    with pytest.raises(runner.Refused, match=expect) as error:
        runner.run(str(folder), trt, cuda)
    assert error.value.code == 3 and not (folder / "model.engine").exists()


def test_main_without_tensorrt_is_one_line_exit_3(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert runner.main([]) == 3
    err = capsys.readouterr().err
    assert err.startswith("run_on_device: TensorRT is not importable") and err.count("\n") == 1


def test_doctor_builds_and_runs_a_tiny_engine():
    trt, cuda = _fakes("8.5.2.2", ((1, 4), (1, 4)), flip=None, shape="8")
    trt.engine_inputs, trt.engine_outputs = {"x": ((1, 4), (1, 4))}, ["x_identity"]
    trt.engine_fn = lambda inputs: {"x_identity": inputs["x"].copy()}
    report = runner.doctor(trt, cuda)
    assert report["tensorrt"] == "8.5.2.2" and report["compute_capability"] == "8.7" and report["dla_cores"] == 2
    assert report["tiny_engine"] == "built and ran"
    assert trt.args("create_network") == [1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)]


def test_edgeopt_doctor_without_tensorrt_is_one_line_exit_3(no_tensorrt):
    from click.testing import CliRunner

    from edgeopt.cli import main

    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 3 and result.output.count("\n") == 1 and "JetPack" in result.output


def test_edgeopt_doctor_reports_the_same_as_the_runner(monkeypatch, capsys):
    from edgeopt.backends.tensorrt.doctor import doctor

    trt, cuda = _fakes("10.3.0.30", ((1, 4), (1, 4)), flip=None)
    trt.engine_inputs, trt.engine_outputs = {"x": ((1, 4), (1, 4))}, ["x_identity"]
    trt.engine_fn = lambda inputs: {"x_identity": inputs["x"].copy()}
    report = doctor(trt, cuda)
    assert report["tiny_engine"] == "built and ran" and report["tensorrt"] == "10.3.0.30"
    assert trt.args("create_network") == [0]  # 10.x: no EXPLICIT_BATCH


def test_the_workstation_reports_on_what_the_device_measured(tmp_path, monkeypatch):
    """The folder copied back from the device is a report input: accuracy and raw host latencies."""
    from click.testing import CliRunner

    from edgeopt.cli import main

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folders = {}
    for name, flip in (("release", None), ("change", 3)):
        folders[name], _ = _package(tmp_path / name, "jetson", "10.3.0.30")
        trt, cuda = _fakes("10.3.0.30", ((1, 4), (8, 4)), flip=flip)
        runner.run(str(folders[name]), trt, cuda, warmup_s=0.0, duration_s=0.0, min_runs=20)
    assert len(json.loads((folders["change"] / LAYOUT.device_results).read_text())["timing"]["samples_ms"]) >= 20
    result = CliRunner().invoke(main, ["report", "--baseline", str(folders["release"]), "--current",
                                       str(folders["change"] / LAYOUT.device_results), "--format", "json",
                                       "--out", str(tmp_path / "report")])
    assert result.exit_code == 1, result.output  # the engine lost 10 points of accuracy: a regression
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    rows = {r["metric"]: r for r in report["comparisons"][0]["rows"]}
    assert rows["accuracy_int8"]["baseline"] == 1.0 and rows["accuracy_int8"]["current"] == pytest.approx(0.9)
    assert rows["accuracy_int8"]["verdict"] == "regressed"
    assert rows["latency_p50_int8"]["ci_low"] is not None  # bootstrapped from the device's raw samples
    missing = CliRunner().invoke(main, ["report", "--baseline", str(tmp_path), "--current", str(folders["change"])])
    assert missing.exit_code == 2 and "run_on_device.py" in missing.output


METRIC = '''import numpy as np


def score(reference, candidate, labels):
    """Higher is better: minus the mean box error to FP32 (a user's own yardstick)."""
    return -float(np.abs(candidate["box"] - reference["box"]).mean())
'''


def test_three_outputs_and_a_metric_get_the_host_verdict_and_percentiles_on_the_device(tmp_path, monkeypatch):
    """The same recorded outputs judged by the host (compare_all, the gate's drop) and by the
    device runner's numpy path: one verdict, one drop, every output; one percentile rule."""
    from edgeopt import bench
    from edgeopt.metrics.fidelity import compare_all

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder, x = _package(tmp_path / "pkg", "jetson", "10.3.0.30")
    names = ["logits", "embedding", "box"]

    def outputs(batch, flip=True):
        base = (batch["x"] if isinstance(batch, dict) else batch) @ W
        logits = base.copy()
        if flip and len(logits) > 3:
            logits[3] = np.roll(logits[3], 1)  # the engine changes one top-1: a 0.1 accuracy drop
        return {"logits": logits, "embedding": np.tanh(base) + 0.01 * flip, "box": base[:, :2] * (1 + 0.01 * flip)}

    reference = outputs(x, flip=False)
    (folder / LAYOUT.eval_fp32_outputs).write_bytes(npz_bytes(reference))
    (tmp_path / "metric.py").write_text(METRIC)
    (folder / LAYOUT.user_metric_py).write_text(METRIC)
    spec = {"task": "classification", "outputs": names, "output_kinds": {"embedding": "embedding", "box": "regression"},
            "metric": f"{tmp_path / 'metric.py'}:score"}
    manifest = json.loads((folder / LAYOUT.manifest).read_text())
    (folder / LAYOUT.manifest).write_text(json.dumps({**manifest, "model": {"name": "m", "spec": spec}}))
    cuda = FakeCuda()
    trt = with_engine(FakeTensorRT("10", "10.3.0.30"), cuda, {"x": ((1, 4), (8, 4))}, names, outputs,
                      compute_ms=[1.0, 1.3, 0.9, 2.5, 1.1, 4.0, 1.2])
    results, passed = runner.run(str(folder), trt, cuda, warmup_s=0.0, duration_s=0.0, min_runs=23)

    engine = {n: np.concatenate([outputs(x[:8])[n], outputs(x[8:])[n]]) for n in names}  # the runner's batches
    labels = np.load(folder / LAYOUT.eval_inputs)["labels"]
    _, _, host = compare_all(names, [reference[n] for n in names], [engine[n] for n in names], labels,
                             "classification", spec["output_kinds"], spec["metric"], names)
    device = results["accuracy"]
    assert host.how.startswith("user metric") and device["judged_by"] == host.how
    assert device["drop"] == device["accuracy_drop"] == host.drop
    assert device["outputs"] == [row.model_dump() for row in host.outputs] and len(device["outputs"]) == 3
    assert passed is (host.drop <= 0.05) is True  # by the metric; output 0's top-1 drop (0.1) alone would fail
    assert device["engine_accuracy"] == pytest.approx(0.9)

    timing = results["timing"]["host_latency"]
    on_host = bench.summarize(results["timing"]["samples_ms"])
    assert (timing["median"], timing["p90"], timing["p99"], timing["mean"]) == (
        on_host.p50, on_host.p90, on_host.p99, on_host.mean)
    assert timing["p90"] != round(float(np.percentile(results["timing"]["samples_ms"], 90)), 4)  # not numpy's default


def test_the_runners_manifest_reader_agrees_with_the_toolchains(jetson_build):
    """run_on_device.py reads manifest.json without pydantic (RecordedBuild); on the manifest a real
    Jetson build wrote, and on one with null blocks, it reads what build_dir.Manifest reads."""
    from edgeopt.build_dir import Manifest

    document = json.loads(Path(jetson_build["manifest"]).read_text())
    for recorded in (document, {**document, "model": None, "engine": None, "gates": None, "artifacts": None}):
        typed, runner_view = Manifest.of(recorded), runner.RecordedBuild(recorded)
        assert (runner_view.model, runner_view.engine, runner_view.gates, runner_view.artifacts, runner_view.spec) == (
            typed.model, typed.engine, typed.gates, typed.artifacts, typed.spec)
        assert runner_view.threshold("max_accuracy_drop") == typed.threshold("max_accuracy_drop")
    assert runner.RecordedBuild(document).threshold("max_accuracy_drop") == 0.01  # the jetson profile's gate, read
    assert runner.RecordedBuild(document).engine["status"] == "deferred" and runner.RecordedBuild(document).spec["task"]
    with pytest.raises(runner.Refused, match="manifest.json: not a JSON object"):
        runner.RecordedBuild(["not", "a", "manifest"])
