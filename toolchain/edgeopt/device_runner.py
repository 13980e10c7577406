#!/usr/bin/env python3
"""edgeopt's device runner: build, check and time a TensorRT engine on the device itself.

Copied into every TensorRT build package. It needs nothing on the device but JetPack: Python >= 3.8
(JetPack 5 ships 3.8, the only Python TensorRT 8.5's bindings exist for), numpy and the system
tensorrt module; the CUDA runtime is reached through ctypes. It imports nothing but the modules
shipped beside it, which are the toolchain's own (device_runtime.py, timing.py, compare.py: the
host judges and times with the same code); the few rules it still spells (file names, the
calibration cache header) are checked against the toolchain by its tests.

    python3 run_on_device.py            # check, build, layer report, validate, time (default)
    python3 run_on_device.py doctor     # what this device has, and a tiny engine built and run

Everything is written back into the package folder (engine, engine.json, layers.json,
device_results.json, device_manifest.json) for the workstation to read. The shipped files are never
changed (manifest.json stays as SHA256SUMS and the signature list it, so run_on_device.sh verifies
the package again before every run); device_manifest.json is manifest.json plus what the device
built, and build_dir.read_manifest prefers it. Exit codes: 0 done, 1 accuracy
gate failed, 2 the package is wrong, 3 this device lacks something (TensorRT, a GPU, the version
or compute capability the plan was made for).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

# File names (the toolchain's BuildLayout owns them; tests check these equal it)
PLAN, MANIFEST, ENGINE_JSON = "build_plan.json", "manifest.json", "engine.json"
DEVICE_MANIFEST = "device_manifest.json"
EVAL_INPUTS, EVAL_OUTPUTS = "eval_inputs.npz", "eval_fp32_outputs.npz"
RESULTS, LAYERS = "device_results.json", "layers.json"
USER_METRIC = "user_metric.py"
# The printed trtexec timing line's --warmUp / --duration, and trtexec's default --iterations
WARMUP_MS, DURATION_S, MIN_RUNS = 500, 10, 10

if __package__:  # imported as edgeopt.device_runner (the toolchain, its tests)
    from .compare import compare, first_output, load_metric, output_kinds
    from .device_runtime import (Cuda, Refused, Session, capability_matches, doctor, layer_report, time_engine,
                                 version_matches)
else:  # run as a script on the device, with device_runtime.py beside it
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from compare import compare, first_output, load_metric, output_kinds
    from device_runtime import (Cuda, Refused, Session, capability_matches, doctor, layer_report, time_engine,
                                version_matches)


# --- the build, from build_plan.json -----------------------------------------------------------


def read_json(folder: str, name: str) -> Dict[str, Any]:
    try:
        with open(os.path.join(folder, name)) as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise Refused("{}: not readable ({})".format(name, exc), 2)


def sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_header(version: str) -> str:
    """'TRT-<getInferLibVersion()>-EntropyCalibration2': the header TensorRT's entropy calibrator
    (and trtexec --calib) accepts; another version or algorithm makes it recalibrate."""
    major, minor, patch = [int(p) for p in (version.split(".") + ["0", "0"])[:3]]
    number = major * 10000 + minor * 100 + patch if major >= 10 else major * 1000 + minor * 100 + patch
    return "TRT-{}-EntropyCalibration2".format(number)


def needs_profile(shapes: Dict[str, Any]) -> bool:
    return bool(shapes.get("free_axes")) or shapes["min"] != shapes["max"]


def check_device(trt: Any, cuda: Any, plan: Dict[str, Any]) -> Tuple[str, str]:
    """(TensorRT version, compute capability), refused unless they are the plan's."""
    version, cc = str(trt.__version__), cuda.compute_capability()
    problems = []
    if not version_matches(version, plan["tensorrt"]):
        problems.append("TensorRT {} but the plan is for {}".format(version, plan["tensorrt"]))
    if not capability_matches(cc, plan.get("compute_capability")):
        problems.append("compute capability {} but the plan is for {}".format(cc, plan["compute_capability"]))
    if problems:
        raise Refused("this device has " + "; ".join(problems) + " (target '{}')".format(plan["target"]), 3)
    return version, cc


class _Logger:
    """Keeps the last error so a failed build is one line."""

    def __init__(self, trt: Any):
        base = trt.ILogger

        class Logger(base):  # type: ignore
            def __init__(self) -> None:
                base.__init__(self)
                self.last_error = None  # type: Optional[str]

            def log(self, severity: Any, msg: str) -> None:
                if "ERROR" in str(severity) and msg.strip():
                    self.last_error = msg.strip().splitlines()[-1]

        self.logger = Logger()


def build(trt: Any, plan: Dict[str, Any], folder: str, timing_cache: str) -> bytes:
    """The API calls edgeopt's EngineBuilder makes for the same plan, plus detailed profiling
    verbosity so the engine inspector can say which layers run where and in which precision."""
    logger = _Logger(trt).logger
    builder = trt.Builder(logger)
    flags = 0
    if plan.get("explicit_batch"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    if plan.get("strongly_typed"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.path.join(folder, plan["onnx"])):
        error = parser.get_error(0) if parser.num_errors else None
        raise Refused("TensorRT {} cannot parse {}: {}".format(
            trt.__version__, plan["onnx"], error.desc() if error else "see the TensorRT log"), 2)
    config = builder.create_builder_config()
    if plan.get("workspace_mb"):
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan["workspace_mb"]) << 20)
    for name in plan.get("builder_flags", []):
        config.set_flag(getattr(trt.BuilderFlag, name))
    if plan.get("dla_core") is not None:
        if builder.num_DLA_cores <= plan["dla_core"]:
            raise Refused("the plan needs DLA core {} but this device has {}".format(
                plan["dla_core"], builder.num_DLA_cores), 3)
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan["dla_core"]
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    profiled = [s for s in plan["inputs"] if needs_profile(s)]
    profile = None
    if profiled:
        profile = builder.create_optimization_profile()
        for s in profiled:
            profile.set_shape(s["name"], tuple(s["min"]), tuple(s["opt"]), tuple(s["max"]))
        if config.add_optimization_profile(profile) < 0:
            raise Refused("TensorRT rejected the optimization profile of the plan", 2)
    if plan.get("int8_mode") == "implicit":
        with open(os.path.join(folder, plan["calibration_cache"]), "rb") as handle:
            rows = handle.read().partition(b"\n")[2]
        config.int8_calibrator = _calibrator(trt, cache_header(str(trt.__version__)).encode() + b"\n" + rows)
        if profile is not None:
            config.set_calibration_profile(profile)
    if plan.get("builder_optimization_level") is not None:
        config.builder_optimization_level = plan["builder_optimization_level"]
    saved = open(timing_cache, "rb").read() if os.path.isfile(timing_cache) else b""
    cache = config.create_timing_cache(saved)
    if not config.set_timing_cache(cache, False):
        cache = config.create_timing_cache(b"")  # another TensorRT's or a damaged cache: start afresh
        config.set_timing_cache(cache, False)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise Refused("TensorRT could not build the engine: {}".format(logger.last_error or "see the log"), 2)
    with open(timing_cache, "wb") as handle:
        handle.write(bytes(cache.serialize()))
    return bytes(engine)


def _calibrator(trt: Any, cache: bytes) -> Any:
    """Replays the workstation's calibration cache; never calibrates here (no data on the device)."""
    base = trt.IInt8EntropyCalibrator2

    class Calibrator(base):  # type: ignore
        def __init__(self) -> None:
            base.__init__(self)

        def get_batch_size(self) -> int:
            return 1

        def get_batch(self, names: List[str]) -> None:
            return None

        def read_calibration_cache(self) -> bytes:
            return cache

        def write_calibration_cache(self, data: bytes) -> None:
            pass

    return Calibrator()


class RecordedBuild:
    """manifest.json as the runner reads it: build_dir.Manifest's field names and rule (a missing or
    null block reads empty) without pydantic, which the device lacks; tests check both agree."""

    def __init__(self, document: Dict[str, Any]):
        if not isinstance(document, dict):
            raise Refused("{}: not a JSON object".format(MANIFEST), 2)
        self.document = document
        self.model = document.get("model") or {}  # type: Dict[str, Any]
        self.engine = document.get("engine") or {}  # type: Dict[str, Any]
        self.gates = document.get("gates") or []  # type: List[Dict[str, Any]]
        self.artifacts = document.get("artifacts") or []  # type: List[Dict[str, Any]]
        self.spec = self.model.get("spec") or {}  # type: Dict[str, Any]

    def threshold(self, gate: str) -> Optional[float]:
        return next((g.get("threshold") for g in self.gates if g.get("name") == gate), None)


def judging(manifest: RecordedBuild, folder: str, names: List[str]) -> Tuple[Dict[str, str], Any]:
    """Output kinds and the user metric as the host judged the build (its spec in manifest.json,
    the --metric file shipped as user_metric.py)."""
    spec = manifest.spec
    kinds = output_kinds(names, spec.get("task") or "classification", spec.get("output_kinds"), spec.get("outputs"))
    metric = spec.get("metric")
    if not metric:
        return kinds, None
    try:
        return kinds, load_metric(os.path.join(folder, USER_METRIC), metric.rpartition(":")[2])
    except ValueError as exc:
        raise Refused("--metric {}: {}".format(metric, exc), 2)


def run_all(session: Session, plan: Dict[str, Any], inputs: Any, names: List[str], count: int) -> Dict[str, np.ndarray]:
    """Every output named in `names` for every sample, in batches as large as every profile allows;
    a short last batch is padded to the minimum and the padding's outputs dropped."""
    lo = max(s["min"][0] for s in plan["inputs"])
    hi = min(s["max"][0] for s in plan["inputs"])
    chunks = []  # type: List[Dict[str, np.ndarray]]
    for start in range(0, count, hi):
        stop = min(start + hi, count)
        size = max(stop - start, lo)
        feeds = {}
        for name in session.inputs:
            part = inputs[name][start:stop]
            feeds[name] = np.concatenate([part, np.repeat(part[-1:], size - len(part), axis=0)]) if len(part) < size else part
        result = session.infer(feeds)
        chunks.append({name: result[name][: stop - start] for name in names})
    return {name: np.concatenate([c[name] for c in chunks]) for name in names}


def validate(session: Session, plan: Dict[str, Any], folder: str, manifest: Optional[RecordedBuild] = None) -> Dict[str, Any]:
    """Every engine output on the packaged evaluation inputs against the FP32 outputs the
    workstation recorded, judged by compare.py as the host judges (output kinds, --metric); the
    first output's summary (top-1 agreement, cosine, accuracy with labels) for the report."""
    inputs, fp32 = np.load(os.path.join(folder, EVAL_INPUTS)), np.load(os.path.join(folder, EVAL_OUTPUTS))
    names = list(session.outputs)  # the engine's order is the ONNX's, as the host's FP32 session reports it
    missing = [n for n in names if n not in fp32.files]
    if missing:
        raise Refused("{} has no output '{}'".format(EVAL_OUTPUTS, missing[0]), 2)
    reference = {name: fp32[name] for name in names}
    count = len(reference[names[0]])
    engine = {name: value.astype(reference[name].dtype, copy=False)
              for name, value in run_all(session, plan, inputs, names, count).items()}
    labels = inputs["labels"].reshape(count) if "labels" in inputs.files else None
    kinds, metric = judging(manifest or RecordedBuild({}), folder, names)
    verdict = compare(reference, engine, labels, kinds, metric)
    first = first_output(reference[names[0]], engine[names[0]], labels, kinds[names[0]] == "class_scores")
    result = {"samples": count, "output": names[0], "cosine_mean": first["cosine_mean"],
              "max_abs_diff": round(first["max_abs_error"], 6), "outputs": verdict["outputs"],
              "drop": verdict["drop"], "judged_by": verdict["how"]}  # type: Dict[str, Any]
    if "agreement" in first:
        result["top1_agreement"] = first["agreement"]
    if "accuracy" in first:
        result["fp32_accuracy"], result["engine_accuracy"] = first["fp32_accuracy"], first["accuracy"]
    return result


# --- the commands -------------------------------------------------------------------------------


def write_json(folder: str, name: str, body: Dict[str, Any]) -> None:
    tmp = os.path.join(folder, "." + name + ".tmp")
    with open(tmp, "w") as handle:
        json.dump(body, handle, indent=2)
        handle.write("\n")
    os.replace(tmp, os.path.join(folder, name))


def record(folder: str, manifest: RecordedBuild, updates: Dict[str, Any], files: List[str]) -> None:
    """Write manifest.json + `updates` (`files` listed with their hashes) as device_manifest.json;
    manifest.json itself is a shipped, checksummed file and stays as it came."""
    entries = [e for e in manifest.artifacts if e.get("path") not in files]
    entries += [{"path": n, "bytes": os.path.getsize(os.path.join(folder, n)), "sha256": sha256(os.path.join(folder, n))}
                for n in files]
    document = dict(manifest.document, **updates)  # the keys the runner does not read, kept
    document["artifacts"] = sorted(entries, key=lambda e: e["path"])
    write_json(folder, DEVICE_MANIFEST, document)


def run(folder: str, trt: Any, cuda: Any, warmup_s: float = WARMUP_MS / 1000, duration_s: float = DURATION_S,
        min_runs: int = MIN_RUNS) -> Tuple[Dict[str, Any], bool]:
    """Check, build, inspect, validate, time; write the results. Returns (results, gate passed)."""
    plan, manifest = read_json(folder, PLAN), RecordedBuild(read_json(folder, MANIFEST))
    onnx_path = os.path.join(folder, plan["onnx"])
    if not os.path.isfile(onnx_path) or (plan.get("onnx_sha256") and sha256(onnx_path) != plan["onnx_sha256"]):
        raise Refused("{}: missing or not the ONNX {} was made for".format(plan["onnx"], PLAN), 2)
    version, cc = check_device(trt, cuda, plan)
    cache_dir = os.path.join(os.path.expanduser("~"), ".cache", "edgeopt", "tensorrt")
    os.makedirs(cache_dir, exist_ok=True)
    engine = build(trt, plan, folder, os.path.join(cache_dir, plan["timing_cache"]))
    with open(os.path.join(folder, plan["engine"]), "wb") as handle:
        handle.write(engine)
    metadata = {"target": plan["target"], "tensorrt_version": version, "gpu_name": plan.get("gpu"),
                "compute_capability": cc, "onnx_sha256": plan.get("onnx_sha256"), "engine": plan["engine"],
                "engine_sha256": hashlib.sha256(engine).hexdigest(), "built_by": "device_runner"}
    write_json(folder, ENGINE_JSON, metadata)
    session = Session(trt, cuda, engine, plan.get("dla_core"))
    try:
        layers = layer_report(session.engine, trt)
        write_json(folder, LAYERS, layers)
        accuracy = validate(session, plan, folder, manifest)
        session.fill({s["name"]: np.load(os.path.join(folder, EVAL_INPUTS))[s["name"]][: s["opt"][0]]
                      for s in plan["inputs"]})
        timing = time_engine(session, warmup_s, duration_s, min_runs)
    finally:
        session.close()
    threshold = manifest.threshold("max_accuracy_drop")
    drop = accuracy["drop"]  # compare.py's, as the host's gate reads it
    passed = threshold is None or drop is None or drop <= threshold
    results = {"device": {"tensorrt": version, "compute_capability": cc, "python": sys.version.split()[0]},
               "accuracy": dict(accuracy, accuracy_drop=drop, max_accuracy_drop=threshold, passed=passed),
               "timing": dict(timing, batch=plan["inputs"][0]["opt"][0]), "layers": layers["counts"]}
    write_json(folder, RESULTS, results)
    engine_block = dict(manifest.engine, status="built", engine=plan["engine"], metadata=metadata,
                        reason="built on the device with TensorRT {} (device runner)".format(version))
    record(folder, manifest, {"engine": engine_block, "deployable": plan["engine"], "device_results": results},
           [plan["engine"], ENGINE_JSON, LAYERS, RESULTS])
    return results, passed


def summary(results: Dict[str, Any]) -> List[str]:
    acc, t = results["accuracy"], results["timing"]
    lines = ["built and validated on {} samples (TensorRT {}, sm {})".format(
        acc["samples"], results["device"]["tensorrt"], results["device"]["compute_capability"])]
    if "top1_agreement" in acc:
        lines.append("top-1 agreement with FP32 {:.2%}; cosine mean {}".format(acc["top1_agreement"], acc["cosine_mean"]))
    if "engine_accuracy" in acc:
        lines.append("accuracy FP32 {:.2%}, engine {:.2%}".format(acc["fp32_accuracy"], acc["engine_accuracy"]))
    if acc.get("accuracy_drop") is not None:
        lines.append("drop {} ({}): {}".format(acc["accuracy_drop"], acc["judged_by"],
                                               "gate passed" if acc["passed"] else "GATE FAILED"))
    lines.append("host latency median {} ms, p99 {} ms; GPU compute median {} ms ({} runs, batch {})".format(
        t["host_latency"]["median"], t["host_latency"]["p99"], t["gpu_compute"]["median"], t["runs"], t["batch"]))
    lines.append("layers: " + ", ".join("{} {}".format(n, k) for k, n in sorted(results["layers"].items())))
    return lines


def main(argv: Optional[List[str]] = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    folder = os.path.dirname(os.path.abspath(__file__))
    try:
        try:
            import tensorrt as trt  # the system TensorRT that JetPack installs
        except ImportError:
            raise Refused("TensorRT is not importable by {}: install JetPack (sudo apt install nvidia-jetpack)".format(
                sys.executable), 3)
        if args[:1] == ["doctor"]:
            print(json.dumps(doctor(trt, Cuda()), indent=2))
            return 0
        results, passed = run(folder, trt, Cuda())
    except Refused as exc:
        print("run_on_device: " + str(exc), file=sys.stderr)
        return exc.code
    print("\n".join(summary(results)))
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
