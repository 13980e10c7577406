"""The TensorRT build mapping: profile + TensorRT version -> plan -> API calls and trtexec flags.

The expectations below are written from the profiles' facts and REFERENCE.md, not read back
from the plan, so a wrong mapping fails here even though the fake records whatever it is told.
"""

from __future__ import annotations

import json
import shlex

import onnx
from pathlib import Path

import pytest
from helpers.fake_tensorrt import VERSIONS, FakeTensorRT, expected_cache_header, fp32_onnx, qdq_onnx, static_onnx

from edgeopt import targets
from edgeopt.errors import BadInput, MissingEnvironment
from edgeopt.models.spec import InputSpec
from edgeopt.backends.tensorrt import api as tensorrt_api
from edgeopt.backends.tensorrt.builder import (
    NOT_INSTALLED,
    EngineBuilder,
    check_engine_matches,
    compile_tensorrt,
    read_plan,
)
from edgeopt.backends.tensorrt.api import DeviceInfo
from edgeopt.backends.tensorrt.plan import make_plan, trtexec_args, trtexec_timing_args

PROFILES = targets.load_all()
GPU_PROFILES = sorted(name for name, p in PROFILES.items() if p.backend == "tensorrt")
INPUTS = [InputSpec(name="x", shape=(1, 1, 8, 8))]
FLAG_LISTS = Path(__file__).resolve().parents[2] / "data" / "trtexec-flags"


def release_flags(pinned: str) -> set[str]:
    """Flags of the trtexec release a profile pins: '8.5.2' -> 8.5.txt, '10.3' -> 10.3.0.txt."""
    want = pinned.split(".")[:2]
    for path in FLAG_LISTS.glob("*.txt"):
        if path.stem.split(".")[:2] == want:
            return {line.strip() for line in path.read_text().splitlines() if line.strip()}
    raise AssertionError(f"no trtexec flag list for TensorRT {pinned} in {FLAG_LISTS}")


def flags_used(args: list[str]) -> set[str]:
    return {a.split("=", 1)[0] for a in args if a.startswith("--")}


def shapes_for(name: str) -> list[str]:
    """The pinned release's API shape, plus the TensorRT 10 and 11 shapes for every profile."""
    return sorted({str(PROFILES[name].tensorrt_major), "10", "11"}, key=int)


def version_for(target, shape: str) -> str:
    return target.software.tensorrt if target.tensorrt_major == int(shape) else VERSIONS[shape]


def run_builder(target, shape: str, tmp_path: Path, orin: DeviceInfo, *, sparsity=None):
    version = version_for(target, shape)
    plan = make_plan(target, INPUTS, onnx="model.int8.onnx", tensorrt=version, sparsity=sparsity)
    trt = FakeTensorRT(shape, version)
    cache = tmp_path / "calibration.cache"
    cache.write_bytes(b"TRT-8501-EntropyCalibration2\nx: 3c010a14\n")
    onnx = (fp32_onnx if plan.int8_mode == "implicit" else qdq_onnx)(tmp_path / "model.onnx")
    engine = EngineBuilder(trt=trt, device=orin).build(
        plan, onnx, timing_cache=tmp_path / plan.timing_cache,
        calibration_cache=cache if plan.int8_mode == "implicit" else None,
    )
    return plan, trt, engine


CASES = [(name, shape) for name in GPU_PROFILES for shape in shapes_for(name)]


@pytest.mark.parametrize("name,shape", CASES)
def test_builder_calls_follow_the_profile_and_api_shape(name, shape, tmp_path, orin):
    target = PROFILES[name]
    if target.build.int8_mode == "implicit" and shape == "11":
        with pytest.raises(BadInput, match="TensorRT 11"):
            make_plan(target, INPUTS, onnx="m.onnx", tensorrt=VERSIONS["11"])
        return
    plan, trt, engine = run_builder(target, shape, tmp_path, orin)
    assert engine == b"FAKE-SERIALIZED-ENGINE"

    # network: TRT 8 needs EXPLICIT_BATCH for ONNX, 10 takes 0, 11 is strongly typed
    expected_network = {
        "8": 1 << int(getattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", 0)),
        "10": 0,
        "11": 1 << int(getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", 0)),
    }[shape]
    assert trt.args("create_network") == [expected_network]

    flags = {flag.name for flag in trt.args("set_flag")}
    if shape == "11":
        assert not flags & {"INT8", "FP16", "BF16", "FP8"}, "TensorRT 11 takes precision from the ONNX"
    else:
        assert {"INT8", "FP16"} <= flags  # every shipped GPU profile is INT8
    on_dla = target.build.dla_core is not None
    assert ("GPU_FALLBACK" in flags) == (on_dla and target.build.gpu_fallback)
    assert ("SPARSE_WEIGHTS" in flags) == target.build.sparsity

    if on_dla:
        assert trt.args("config.default_device_type") == [trt.DeviceType.DLA]
        assert trt.args("config.DLA_core") == [target.build.dla_core]
    else:
        assert not trt.args("config.default_device_type") and not trt.args("config.DLA_core")

    calibrators = trt.args("config.int8_calibrator")
    if target.build.int8_mode == "implicit":
        assert len(calibrators) == 1 and isinstance(calibrators[0], trt.IInt8EntropyCalibrator2)
        # the host wrote the cache for another version: TensorRT reads it only under its own header
        header, rows = calibrators[0].read_calibration_cache().split(b"\n", 1)
        assert header.decode() == expected_cache_header(trt.__version__) and rows == b"x: 3c010a14\n"
        assert calibrators[0].get_batch(["x"]) is None  # never calibrates on the device
        assert trt.names().count("set_calibration_profile") == 1
    else:
        assert calibrators == [] and "set_calibration_profile" not in trt.names()

    assert trt.args("set_memory_pool_limit") == [(trt.MemoryPoolType.WORKSPACE, target.build.workspace_mb << 20)]

    # the ONNX leaves the batch free: a profile even when min = opt = max (the DLA profile's 1/1/1)
    batch = target.build.batch
    assert trt.args("set_shape") == [("x", (batch.min, 1, 8, 8), (batch.opt, 1, 8, 8), (batch.max, 1, 8, 8))]
    assert trt.names().count("add_optimization_profile") == 1

    level = trt.args("config.builder_optimization_level")
    assert level == ([] if version_for(target, shape).startswith("8.5") else [target.build.builder_optimization_level])

    assert trt.args("create_timing_cache") == [b""] and trt.args("set_timing_cache") == [False]
    assert (tmp_path / plan.timing_cache).read_bytes() == f"TIMING-{trt.__version__}:".encode()

    # order (REFERENCE.md): builder, network, parser, parse, config, settings, timing cache, build
    names = trt.names()
    head = ["Builder", "create_network", "OnnxParser", "parse_from_file", "create_builder_config"]
    assert names[: len(head)] == head
    build_at = names.index("build_serialized_network")
    assert build_at == len(names) - 1
    assert names.index("set_timing_cache") < build_at
    assert all(n.startswith(("set_", "config.", "create_", "add_")) for n in names[len(head) : build_at])


@pytest.mark.parametrize("name", [n for n in GPU_PROFILES if PROFILES[n].device.sparse_2_4])
@pytest.mark.parametrize("shape", ["10", "11"])
def test_sparse_weights_on_devices_that_accelerate_2_4(name, shape, tmp_path, orin):
    target = PROFILES[name]
    if target.build.int8_mode == "implicit" and shape == "11":
        pytest.skip("implicit INT8 does not exist in TensorRT 11 (tested above)")
    plan, trt, _ = run_builder(target, shape, tmp_path, orin, sparsity=True)
    assert "SPARSE_WEIGHTS" in {flag.name for flag in trt.args("set_flag")}
    assert "--sparsity=enable" in trtexec_args(plan)


@pytest.mark.parametrize("name", [n for n in GPU_PROFILES if not PROFILES[n].device.sparse_2_4])
def test_sparsity_refused_where_the_gpu_has_no_2_4(name):
    with pytest.raises(BadInput, match="2:4"):
        make_plan(PROFILES[name], INPUTS, onnx="m.onnx", sparsity=True)


def test_implicit_int8_refused_on_tensorrt_11():
    dla = [p for p in PROFILES.values() if p.build.int8_mode == "implicit"]
    assert dla, "a shipped DLA profile uses implicit INT8"
    with pytest.raises(BadInput, match="implicit needs TensorRT <= 10"):
        make_plan(dla[0], INPUTS, onnx="m.onnx", tensorrt="11.1")


@pytest.mark.parametrize("name", GPU_PROFILES)
@pytest.mark.parametrize("sparse", [False, True])
def test_trtexec_uses_only_flags_of_the_pinned_release(name, sparse):
    target = PROFILES[name]
    if sparse and not target.device.sparse_2_4:
        pytest.skip("no 2:4 sparsity on this GPU")
    plan = make_plan(target, INPUTS, onnx="model.int8.onnx", sparsity=sparse)
    allowed = release_flags(target.software.tensorrt)
    for args in (trtexec_args(plan), trtexec_timing_args(plan)):
        assert flags_used(args) <= allowed, f"{name}: {flags_used(args) - allowed} not in trtexec {target.software.tensorrt}"


@pytest.mark.parametrize("name", GPU_PROFILES)
def test_trtexec_and_api_apply_the_same_settings(name, tmp_path, orin):
    """One plan drives both: every recorded API setting has its trtexec flag and back."""
    target = PROFILES[name]
    plan, trt, _ = run_builder(target, str(target.tensorrt_major), tmp_path, orin,
                               sparsity=target.device.sparse_2_4 or None)
    args = trtexec_args(plan)
    values = dict(a.split("=", 1) for a in args if "=" in a)
    flags = {flag.name for flag in trt.args("set_flag")}
    assert ("--int8" in args) == ("INT8" in flags)
    assert ("--fp16" in args) == ("FP16" in flags)
    assert ("--allowGPUFallback" in args) == ("GPU_FALLBACK" in flags)
    assert ("--sparsity=enable" in args) == ("SPARSE_WEIGHTS" in flags)
    strongly = "STRONGLY_TYPED" in trt.NetworkDefinitionCreationFlag.__members__ and bool(
        trt.args("create_network")[0] & (1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)))
    assert ("--stronglyTyped" in args) == strongly
    assert ("--calib" in values) == bool(trt.args("config.int8_calibrator"))
    assert values.get("--useDLACore") == (str(trt.args("config.DLA_core")[0]) if trt.args("config.DLA_core") else None)
    pool = trt.args("set_memory_pool_limit")[0][1]
    assert values["--memPoolSize"] == f"workspace:{pool >> 20}"
    level = trt.args("config.builder_optimization_level")
    assert values.get("--builderOptimizationLevel") == (str(level[0]) if level else None)
    (_, lo, mid, hi), = trt.args("set_shape")  # the batch axis is free in every profile's ONNX
    assert values["--minShapes"] == "x:" + "x".join(map(str, lo))
    assert values["--optShapes"] == "x:" + "x".join(map(str, mid))
    assert values["--maxShapes"] == "x:" + "x".join(map(str, hi))
    assert values["--timingCacheFile"] == plan.timing_cache and "/" not in plan.timing_cache


def test_a_static_model_builds_without_a_profile_or_shapes(tmp_path, orin):
    """No free axis: no profile (TensorRT needs none) and no --minShapes (trtexec refuses them)."""
    target = targets.resolve("jetson").model_copy(update={"build": targets.resolve("jetson").build.model_copy(
        update={"precision": "fp16"})})
    static = [InputSpec(name="x", shape=(1, 1, 8, 8), dynamic_axes={})]
    plan = make_plan(target, static, onnx="m.onnx")
    trt = FakeTensorRT("10", "10.3.0.30")
    EngineBuilder(trt=trt, device=orin).build(plan, static_onnx(tmp_path / "m.onnx"), timing_cache=tmp_path / "tc")
    assert "create_optimization_profile" not in trt.names() and "build_serialized_network" in trt.names()
    assert not [a for a in trtexec_args(plan) if a.startswith(("--minShapes", "--optShapes", "--maxShapes"))]
    assert not [a for a in trtexec_timing_args(plan) if a.startswith("--shapes")]


def test_a_fixed_batch_still_gets_a_profile_and_explicit_shapes(tmp_path, orin):
    """min = opt = max with a free batch axis: TensorRT needs the profile; trtexec without
    --minShapes would force the -1 to 1 and build something else than the API path."""
    dla = PROFILES["jetson-orin-nx-16gb-dla"]
    plan = make_plan(dla, INPUTS, onnx="model.fp32.onnx")
    assert plan.inputs[0].min == plan.inputs[0].max == (1, 1, 8, 8) and plan.inputs[0].free_axes == (0,)
    args = trtexec_args(plan)
    for flag in ("--minShapes", "--optShapes", "--maxShapes"):
        assert f"{flag}=x:1x1x8x8" in args
    assert "--shapes=x:1x1x8x8" in trtexec_timing_args(plan)
    # without the profile the strict fake fails as TensorRT does, with TensorRT's message
    old = plan.model_copy(update={"inputs": [plan.inputs[0].model_copy(update={"free_axes": ()})]})
    cache = tmp_path / "calibration.cache"
    cache.write_text("TRT-100300-EntropyCalibration2\nx: 3c010a14\n")
    with pytest.raises(BadInput, match="no optimization profile has been defined"):
        EngineBuilder(trt=FakeTensorRT("10", "10.3.0.30"), device=orin).build(
            old, fp32_onnx(tmp_path / "m.onnx"), timing_cache=tmp_path / "tc", calibration_cache=cache)


def test_an_invalid_profile_is_refused_in_one_line(tmp_path, orin, qdq_model):
    plan = make_plan(targets.resolve("jetson"), INPUTS, onnx="m.onnx")
    bad = plan.model_copy(update={"inputs": [plan.inputs[0].model_copy(update={"min": (9, 1, 8, 8)})]})
    trt = FakeTensorRT("10", "10.3.0.30")
    with pytest.raises(BadInput, match=r"rejected the optimization profile \(x \(9, 1, 8, 8\)") as error:
        EngineBuilder(trt=trt, device=orin).build(bad, qdq_model, timing_cache=tmp_path / "tc")
    assert "\n" not in str(error.value) and "build_serialized_network" not in trt.names()


def test_a_timing_cache_of_another_tensorrt_is_replaced(tmp_path, orin, qdq_model):
    plan = make_plan(targets.resolve("jetson"), INPUTS, onnx="m.onnx")
    stale = tmp_path / plan.timing_cache
    stale.write_bytes(b"TIMING-10.3.0.1:")
    trt = FakeTensorRT("10", "10.3.0.30")
    assert EngineBuilder(trt=trt, device=orin).build(plan, qdq_model, timing_cache=stale) == b"FAKE-SERIALIZED-ENGINE"
    assert trt.args("create_timing_cache") == [b"TIMING-10.3.0.1:", b""]
    assert stale.read_bytes() == b"TIMING-10.3.0.30:"


def test_int64_inputs_are_int32_on_8_5_and_int64_from_10(tmp_path):
    """What the strict fake's parser makes of an int64 input (the session casts feeds to it)."""
    from helpers.fake_tensorrt import _Network, _Parser
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["ids"], ["y"])], "ids",
                              [helper.make_tensor_value_info("ids", TensorProto.INT64, ["batch", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, ["batch", 4])])
    path = tmp_path / "ids.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    for shape, expected in (("8", "INT32"), ("10", "INT64"), ("11", "INT64")):
        network = _Network()
        assert _Parser(FakeTensorRT(shape), network).parse_from_file(str(path))
        dims, dtype = network.inputs["ids"]
        assert dims == (-1, 4) and dtype.name == expected


def test_axes_map_to_batch_and_sequence_ranges():
    target = PROFILES["l4"]
    spec = InputSpec(name="input_ids", dtype="int64", shape=(1, 128), dynamic_axes={0: "batch", 1: "sequence"})
    image = InputSpec(name="pixels", shape=(1, 3, 32, 32), dynamic_axes={0: "batch", 2: "height"})
    plan = make_plan(target, [spec, image], onnx="m.onnx")
    ids, pixels = plan.inputs
    assert (ids.min, ids.opt, ids.max) == ((1, 1), (8, 128), (64, 128))
    assert (pixels.min, pixels.max) == ((1, 3, 32, 32), (64, 3, 32, 32))
    assert any("height" in note for note in plan.notes)


# --- the stage ------------------------------------------------------------------------------


def test_without_tensorrt_the_stage_defers_with_plan_and_command(tmp_path, qdq_model, no_tensorrt):
    out = tmp_path / "build"
    target = targets.resolve("jetson")
    result = compile_tensorrt(qdq_model, target, INPUTS, out)
    assert result.status == "deferred" and result.reason == NOT_INSTALLED
    assert result.engine_path is None and result.engine_metadata is None
    assert not [p for p in out.iterdir() if p.suffix in (".engine", ".plan", ".trt")]
    body = json.loads(result.plan_path.read_text())
    assert result.plan_path == out / "build_plan.json"
    assert body["target"] == "jetson-orin-nano-8gb" and body["tensorrt"] == "10.3"
    assert body["precision"] == "int8" and body["int8_mode"] == "explicit" and body["strongly_typed"] is False
    assert body["builder_flags"] == ["INT8", "FP16"] and body["dla_core"] is None
    assert body["inputs"] == [{"name": "x", "dtype": "float32", "min": [1, 1, 8, 8], "opt": [1, 1, 8, 8],
                               "max": [8, 1, 8, 8], "free_axes": [0]}]
    assert body["timing_cache"] == "timing-sm87-trt10.3.cache" and body["onnx"] == "model.int8.onnx"
    assert body["trtexec"] == result.trtexec
    assert shlex.split(result.trtexec)[:3] == ["trtexec", "--onnx=model.int8.onnx", "--saveEngine=model.engine"]
    assert read_plan(result.plan_path) == result.plan
    json.dumps(result.model_dump(mode="json"))  # what the stage cache stores


def test_built_when_the_host_matches_the_target(tmp_path, qdq_model, orin):
    target = targets.resolve("jetson")
    trt = FakeTensorRT("10", "10.3.0.30")
    result = compile_tensorrt(qdq_model, target, INPUTS, tmp_path / "out", timing_cache_dir=tmp_path / "tc",
                              builder=EngineBuilder(trt=trt, device=orin))
    assert result.status == "built"
    assert result.engine_path.read_bytes() == b"FAKE-SERIALIZED-ENGINE"
    meta = json.loads((tmp_path / "out" / "engine.json").read_text())
    assert meta == result.engine_metadata
    assert meta["tensorrt_version"] == "10.3.0.30" and meta["compute_capability"] == "8.7"
    assert meta["gpu_name"] == "Orin (nvgpu)" and meta["onnx_sha256"] == result.plan.onnx_sha256
    assert meta["builder_settings"]["builder_flags"] == ["INT8", "FP16"]
    assert (tmp_path / "tc" / "timing-sm87-trt10.3.cache").is_file()
    check_engine_matches(meta, target)


@pytest.mark.parametrize("version,cc,expect", [("10.16.1", "8.7", "TensorRT 10.16.1"), ("10.3.0", "8.9", "8.9")])
def test_deferred_when_the_host_is_another_tensorrt_or_gpu(tmp_path, qdq_model, version, cc, expect):
    builder = EngineBuilder(trt=FakeTensorRT("10", version), device=DeviceInfo("RTX", cc))
    result = compile_tensorrt(qdq_model, targets.resolve("jetson"), INPUTS, tmp_path / "out", builder=builder)
    assert result.status == "deferred" and expect in result.reason and result.engine_path is None
    assert not (tmp_path / "out" / "model.engine").exists()


@pytest.mark.parametrize("shape,node", [("10", "node conv"), ("8", "node #3"), ("8", "the model")])
def test_parser_failure_is_one_line_naming_the_node(tmp_path, qdq_model, orin, shape, node):
    target = PROFILES["jetson-xavier-nx"] if shape == "8" else targets.resolve("jetson")
    errors = [("" if node == "the model" else "conv", "Unsupported padding")]  # "": no node (index -1)
    trt = FakeTensorRT(shape, target.software.tensorrt, parse_errors=errors)
    device = DeviceInfo("Xavier", "7.2") if shape == "8" else orin
    with pytest.raises(BadInput) as error:
        compile_tensorrt(qdq_model, target, INPUTS, tmp_path / "out", builder=EngineBuilder(trt=trt, device=device))
    message = str(error.value)
    assert f"parse {node}" in message and "Unsupported padding" in message and "\n" not in message
    assert "#-1" not in message
    assert "build_serialized_network" not in trt.names()


def test_builder_failure_is_bad_input_and_writes_no_engine(tmp_path, qdq_model, orin):
    trt = FakeTensorRT("10", "10.3.0", build_fails=True)
    with pytest.raises(BadInput, match="could not build the engine"):
        compile_tensorrt(qdq_model, targets.resolve("jetson"), INPUTS, tmp_path / "out",
                         builder=EngineBuilder(trt=trt, device=orin))
    assert not (tmp_path / "out" / "model.engine").exists()


def test_dla_profile_on_a_device_without_dla_cores(tmp_path, fp32_model, orin):
    target = PROFILES["jetson-orin-nx-16gb-dla"]
    cache = tmp_path / "calibration.cache"
    cache.write_bytes(b"cache")
    trt = FakeTensorRT("10", "10.3.0", dla_cores=0)
    with pytest.raises(MissingEnvironment, match="DLA core 0"):
        compile_tensorrt(fp32_model, target, INPUTS, tmp_path / "out", calibration_cache=cache,
                         builder=EngineBuilder(trt=trt, device=orin))


def test_quantization_mode_must_match_the_onnx(tmp_path, qdq_model, fp32_model, no_tensorrt):
    with pytest.raises(BadInput, match="no QuantizeLinear"):
        compile_tensorrt(fp32_model, targets.resolve("jetson"), INPUTS, tmp_path / "a")
    dla = PROFILES["jetson-orin-nx-16gb-dla"]
    cache = tmp_path / "calibration.cache"
    cache.write_bytes(b"cache")
    with pytest.raises(BadInput, match="FP32 ONNX"):
        compile_tensorrt(qdq_model, dla, INPUTS, tmp_path / "b", calibration_cache=cache)
    with pytest.raises(BadInput, match="calibration cache"):
        compile_tensorrt(fp32_model, dla, INPUTS, tmp_path / "c")
    result = compile_tensorrt(fp32_model, dla, INPUTS, tmp_path / "d", calibration_cache=cache)
    assert "--calib=calibration.cache" in shlex.split(result.trtexec)


def test_dla_needs_static_shapes():
    dla = PROFILES["jetson-orin-nx-16gb-dla"]
    dynamic = dla.model_copy(update={"build": dla.build.model_copy(update={"batch": PROFILES["t4"].build.batch})})
    with pytest.raises(BadInput, match="static shapes"):
        make_plan(dynamic, INPUTS, onnx="m.onnx")


def test_check_engine_matches_names_what_differs():
    target = targets.resolve("jetson")
    check_engine_matches({"tensorrt_version": "10.3.0.30", "compute_capability": "8.7"}, target)
    with pytest.raises(BadInput, match=r"TensorRT 10\.16\.0 but the target pins 10\.3$"):
        check_engine_matches({"tensorrt_version": "10.16.0", "compute_capability": "8.7"}, target)
    with pytest.raises(BadInput, match="compute capability 7.5 but the target is 8.7"):
        check_engine_matches({"tensorrt_version": "10.3.0", "compute_capability": "7.5"}, target)
    with pytest.raises(BadInput, match="TensorRT 8.5.2.*compute capability 7.2"):
        check_engine_matches({"tensorrt_version": "8.5.2", "compute_capability": "7.2"}, target)
    with pytest.raises(BadInput, match="lacks"):
        check_engine_matches({}, target)


@pytest.mark.parametrize("installed, pinned", [("8.7", "8.7"), ("8.7", "7.2"), ("8.7", "unknown"), ("8.7", None)])
def test_compute_capability_is_matched_alike_by_the_builder_and_the_device_runner(installed, pinned):
    """A profile without a compute capability plans "unknown": both sides accept any GPU then."""
    from edgeopt import device_runner
    from edgeopt.backends.tensorrt.builder import _mismatch
    from edgeopt.device_runtime import Refused

    builder_ok = _mismatch("10.3.0", installed, "10.3", pinned) == []
    trt = type("trt", (), {"__version__": "10.3.0"})
    cuda = type("cuda", (), {"compute_capability": lambda self: installed})()
    try:
        device_runner.check_device(trt, cuda, {"tensorrt": "10.3", "compute_capability": pinned, "target": "t"})
        runner_ok = True
    except Refused:
        runner_ok = False
    assert builder_ok == runner_ok == (pinned in (None, "unknown") or pinned == installed)


def test_version_matching_is_by_component():
    assert tensorrt_api.version_matches("10.3.0.30", "10.3")
    assert tensorrt_api.version_matches("8.5.2.2", "8.5.2")
    assert not tensorrt_api.version_matches("10.16.1", "10.1")
    assert not tensorrt_api.version_matches("10.3.0", "8.5.2")


def test_tensorrt_is_never_imported_at_module_import():
    import subprocess
    import sys

    code = ("import sys, edgeopt.backends.tensorrt.builder, edgeopt.backends.tensorrt.device; "
            "assert 'tensorrt' not in sys.modules, 'tensorrt imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)
