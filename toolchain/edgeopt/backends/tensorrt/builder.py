"""Compile stage for tensorrt targets: a build plan always, an engine where TensorRT matches.

An engine is tied to one TensorRT version and one GPU architecture, so the stage builds only
when the installed TensorRT and GPU are the ones the target pins; otherwise it writes the plan
and the equivalent trtexec command and says why it deferred. It never writes a file that looks
like an engine unless TensorRT produced it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

from pydantic import BaseModel, Field

from edgeopt.build_dir import LAYOUT, write_bytes_atomic, write_json_atomic
from edgeopt.hashing import sha256_file
from edgeopt.cache import default_cache_dir
from edgeopt.errors import BadInput, MissingEnvironment, ToolFailed, cause_text
from edgeopt.device_runtime import capability_matches
from edgeopt.models.spec import InputSpec
from edgeopt.backends.tensorrt import api as tensorrt_api
from edgeopt.backends.tensorrt.api import DeviceInfo
from edgeopt.backends.tensorrt.layers import layer_note, layer_report
from edgeopt.backends.tensorrt.operators import check_operators
from edgeopt.backends.tensorrt.plan import (
    BuildPlan,
    command_line,
    make_plan,
    trtexec_args,
    trtexec_timing_args,
)
from edgeopt.targets import TargetProfile

NOT_INSTALLED = "deferred: TensorRT is not installed on this host"


class TensorRTResult(BaseModel):
    """What the compile stage produced; `model_dump(mode="json")` is what the stage cache keeps."""

    status: Literal["built", "deferred"]
    reason: str
    plan_path: Path
    trtexec: str
    plan: BuildPlan
    trtexec_timing: str = ""
    engine_path: Path | None = None
    engine_metadata: dict | None = None
    notes: list[str] = Field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The `engine` block of `edgeopt build --json` (absolute paths)."""
        return {
            "status": self.status,
            "reason": self.reason,
            "plan": str(self.plan_path.resolve()),
            "trtexec": self.trtexec,
            "engine_path": str(self.engine_path.resolve()) if self.engine_path else None,
            "metadata": self.engine_metadata,
        }


def _relative_name(path: Path, base: Path) -> str:
    """A name that works from inside the build directory (trtexec runs there)."""
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        return path.name


def _check_quantization(onnx_path: Path, plan: BuildPlan) -> None:
    """Explicit INT8 needs the Q/DQ ONNX; a calibrator on a Q/DQ graph would be ignored."""
    if plan.int8_mode is None:
        return
    import onnx

    try:
        graph = onnx.load(str(onnx_path), load_external_data=False).graph
    except Exception as exc:  # onnx raises several types for a damaged file
        raise BadInput(f"{onnx_path}: not a readable ONNX model ({cause_text(exc)})") from None
    has_qdq = any(node.op_type in ("QuantizeLinear", "DequantizeLinear") for node in graph.node)
    if plan.int8_mode == "explicit" and not has_qdq:
        raise BadInput(f"{onnx_path}: explicit INT8 needs a Q/DQ ONNX but the model has no QuantizeLinear nodes")
    if plan.int8_mode == "implicit" and has_qdq:
        raise BadInput(f"{onnx_path}: implicit INT8 (calibrator) needs the FP32 ONNX, this one has Q/DQ nodes")


# --- the API path -----------------------------------------------------------------------------


class EngineBuilder:
    """Executes a BuildPlan with the TensorRT Python API. Tests pass a recording `trt` stand-in
    and a DeviceInfo; on a device both default to the real thing."""

    def __init__(self, trt: ModuleType | None = None, device: DeviceInfo | None = None):
        self._trt = trt
        self._device = device

    @property
    def trt(self) -> ModuleType:
        if self._trt is None:
            self._trt = tensorrt_api.module()
        return self._trt

    def version(self) -> str:
        return str(self.trt.__version__)

    def device(self) -> DeviceInfo:
        if self._device is None:
            self._device = tensorrt_api.device_info()
        return self._device

    def build(
        self,
        plan: BuildPlan,
        onnx_path: Path,
        *,
        timing_cache: Path,
        calibration_cache: Path | None = None,
    ) -> bytes:
        """Parse, configure per the plan, build; returns the serialized engine."""
        trt = self.trt
        logger = _capturing_logger(trt)
        builder = trt.Builder(logger)
        network_flags = 0
        if plan.explicit_batch:
            network_flags |= 1 << int(tensorrt_api.flag(trt, "NetworkDefinitionCreationFlag", "EXPLICIT_BATCH"))
        if plan.strongly_typed:
            network_flags |= 1 << int(tensorrt_api.flag(trt, "NetworkDefinitionCreationFlag", "STRONGLY_TYPED"))
        network = builder.create_network(network_flags)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            raise BadInput(_parser_error(parser, onnx_path, self.version()))

        config = builder.create_builder_config()
        if plan.workspace_mb:
            pool = tensorrt_api.flag(trt, "MemoryPoolType", "WORKSPACE")
            config.set_memory_pool_limit(pool, plan.workspace_mb << 20)
        for name in plan.builder_flags:
            config.set_flag(tensorrt_api.flag(trt, "BuilderFlag", name))
        if plan.dla_core is not None:
            if builder.num_DLA_cores <= plan.dla_core:
                raise MissingEnvironment(
                    f"target needs DLA core {plan.dla_core} but this device has {builder.num_DLA_cores} DLA cores"
                )
            config.default_device_type = tensorrt_api.flag(trt, "DeviceType", "DLA")
            config.DLA_core = plan.dla_core

        profile = _add_profile(builder, config, plan)
        if plan.int8_mode == "implicit":
            if calibration_cache is None:
                raise BadInput("implicit INT8 needs the calibration cache (calibration.cache) from the quantize stage")
            config.int8_calibrator = tensorrt_api.cache_calibrator(trt, calibration_cache)
            if profile is not None:
                config.set_calibration_profile(profile)

        if plan.builder_optimization_level is not None:
            config.builder_optimization_level = plan.builder_optimization_level
        # keeps what the engine inspector needs for the layer report (trtexec --profilingVerbosity=detailed)
        config.profiling_verbosity = tensorrt_api.flag(trt, "ProfilingVerbosity", "DETAILED")

        cache = _use_timing_cache(config, timing_cache, logger)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            detail = logger.last_error or "see the TensorRT log"
            raise BadInput(f"TensorRT could not build the engine for target '{plan.target}': {detail}")
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(timing_cache, bytes(cache.serialize()))
        return bytes(serialized)


def _add_profile(builder: Any, config: Any, plan: BuildPlan) -> Any:
    """One optimization profile covering every input with a free axis (None when none has one);
    TensorRT returns -1 from add_optimization_profile for an invalid profile."""
    if not plan.dynamic:
        return None
    profile = builder.create_optimization_profile()
    for shapes in plan.profiled:
        profile.set_shape(shapes.name, shapes.min, shapes.opt, shapes.max)
    if config.add_optimization_profile(profile) < 0:
        ranges = "; ".join(f"{s.name} {s.min}/{s.opt}/{s.max}" for s in plan.profiled)
        raise BadInput(f"target '{plan.target}': TensorRT rejected the optimization profile ({ranges})")
    return profile


def _use_timing_cache(config: Any, path: Path, logger: Any) -> Any:
    """The saved timing cache, or a fresh one when TensorRT refuses it (set_timing_cache returns
    False for a cache of another TensorRT or GPU, or a damaged file): a stale cache must not stop
    a build, but it is said in the log."""
    saved = path.read_bytes() if path.is_file() else b""
    cache = config.create_timing_cache(saved)
    if config.set_timing_cache(cache, ignore_mismatch=False):
        return cache
    logger.messages.append(f"timing cache {path.name} does not match this TensorRT/GPU: started a fresh one")
    cache = config.create_timing_cache(b"")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        raise ToolFailed("TensorRT refused an empty timing cache")
    return cache


def _capturing_logger(trt: ModuleType) -> Any:
    """A trt.ILogger that keeps warnings and errors (a stage never prints): the last error
    becomes the one-line message when the build fails."""
    base = trt.ILogger

    class CapturingLogger(base):  # type: ignore[misc, valid-type]
        def __init__(self) -> None:
            base.__init__(self)
            self.messages: list[str] = []
            self.last_error: str | None = None

        def log(self, severity: Any, msg: str) -> None:
            text = str(severity)
            if "ERROR" in text or "WARNING" in text:
                self.messages.append(f"{text}: {msg}")
            if "ERROR" in text and msg.strip():
                self.last_error = msg.strip().splitlines()[-1]

    return CapturingLogger()


def _parser_error(parser: Any, onnx_path: Path, version: str) -> str:
    """One line naming the first node the ONNX parser rejected."""
    if not parser.num_errors:
        return f"{onnx_path}: TensorRT {version} could not parse the model"
    error = parser.get_error(0)
    node_name = getattr(error, "node_name", None)  # 8.6+; older parsers only give the index
    node = node_name() if callable(node_name) else None
    if not node and callable(getattr(error, "node", None)) and error.node() >= 0:
        node = f"#{error.node()}"  # -1: the error is not tied to a node (e.g. an unsupported opset)
    op = getattr(error, "node_operator", None)
    op_text = f" ({op()})" if callable(op) and op() else ""
    where = f"node {node}{op_text}" if node else "the model"
    return f"{onnx_path}: TensorRT {version} cannot parse {where}: {error.desc()}"


# --- matching engines and targets -------------------------------------------------------------


def _mismatch(installed_version: str, cc: str, pinned_version: str, pinned_cc: str | None) -> list[str]:
    problems = []
    if not tensorrt_api.version_matches(installed_version, pinned_version):
        problems.append(f"TensorRT {installed_version} but the target pins {pinned_version}")
    if not capability_matches(cc, pinned_cc):
        problems.append(f"compute capability {cc} but the target is {pinned_cc}")
    return problems


def check_engine_matches(metadata: dict, target: TargetProfile) -> None:
    """Refuse an engine built for another TensorRT or GPU than its target (one line)."""
    version, cc = metadata.get("tensorrt_version"), metadata.get("compute_capability")
    if not version or not cc:
        raise BadInput(f"engine metadata lacks tensorrt_version or compute_capability (target '{target.name}')")
    problems = _mismatch(str(version), str(cc), target.software.tensorrt or "?", target.device.compute_capability)
    if problems:
        raise BadInput(f"engine does not match target '{target.name}': built with " + "; ".join(problems))


def host_mismatch(builder: EngineBuilder, plan: BuildPlan) -> list[str]:
    device = builder.device()
    return _mismatch(builder.version(), device.compute_capability, plan.tensorrt, plan.compute_capability)


def build_engine(
    plan: BuildPlan,
    onnx_path: Path,
    out_dir: Path,
    builder: EngineBuilder,
    *,
    calibration_cache: Path | None = None,
    timing_cache_dir: Path | None = None,
) -> tuple[Path, dict]:
    """Build per the plan, write the engine and engine.json; the caller checked the host match."""
    timing_cache = (timing_cache_dir or default_cache_dir() / "tensorrt") / plan.timing_cache
    engine = builder.build(plan, onnx_path, timing_cache=timing_cache, calibration_cache=calibration_cache)
    engine_path = out_dir / plan.engine
    write_bytes_atomic(engine_path, engine)
    device = builder.device()
    metadata = {
        "target": plan.target,
        "tensorrt_version": builder.version(),
        "gpu_name": device.name,
        "compute_capability": device.compute_capability,
        "onnx_sha256": plan.onnx_sha256 or sha256_file(onnx_path),
        "engine": plan.engine,
        "engine_sha256": hashlib.sha256(engine).hexdigest(),
        "builder_settings": plan.model_dump(
            include={"precision", "int8_mode", "strongly_typed", "builder_flags", "dla_core", "gpu_fallback",
                     "sparse_weights", "workspace_mb", "builder_optimization_level", "inputs"},
            mode="json",
        ),
    }
    layers = layer_report(builder.trt, engine)
    if layers is not None:
        write_json_atomic(out_dir / LAYOUT.layer_report, layers)
        metadata["layers"] = layers["counts"]
    write_json_atomic(out_dir / LAYOUT.tensorrt_engine_json, metadata)
    return engine_path, metadata


def write_plan(plan: BuildPlan, out_dir: Path) -> Path:
    path = out_dir / LAYOUT.tensorrt_plan
    body = plan.model_dump(mode="json")
    body["trtexec"] = command_line(trtexec_args(plan))
    body["trtexec_timing"] = command_line(trtexec_timing_args(plan))
    write_json_atomic(path, body)
    return path


def read_plan(path: Path) -> BuildPlan:
    """build_plan.json back to a BuildPlan (the printed commands are derived, not stored state)."""
    try:
        body = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not a readable build plan ({exc})") from None
    body.pop("trtexec", None)
    body.pop("trtexec_timing", None)
    try:
        return BuildPlan.model_validate(body)
    except Exception as exc:
        raise BadInput(f"{path}: invalid build plan ({cause_text(exc)})") from None


# --- the stage --------------------------------------------------------------------------------


def compile_tensorrt(
    onnx_path: Path,
    target: TargetProfile,
    inputs: list[InputSpec],
    out_dir: Path,
    *,
    calibration_cache: Path | None = None,
    sparsity: bool | None = None,
    timing_cache_dir: Path | None = None,
    builder: "EngineBuilder | None" = None,
) -> TensorRTResult:
    """Write build_plan.json and the trtexec command; build the engine when this host's
    TensorRT and GPU are the target's. For implicit INT8 pass the FP32 ONNX and the cache."""
    onnx_path, out_dir = Path(onnx_path), Path(out_dir)
    if not onnx_path.is_file():
        raise BadInput(f"{onnx_path}: ONNX model not found")
    out_dir.mkdir(parents=True, exist_ok=True)
    cache_name = _relative_name(calibration_cache, out_dir) if calibration_cache else LAYOUT.tensorrt_calibration_cache
    plan = make_plan(
        target, inputs, onnx=_relative_name(onnx_path, out_dir), sparsity=sparsity,
        onnx_sha256=sha256_file(onnx_path), calibration_cache=cache_name,
    )
    _check_quantization(onnx_path, plan)
    check_operators(onnx_path, plan.tensorrt, target.name)
    if plan.int8_mode == "implicit" and (calibration_cache is None or not Path(calibration_cache).is_file()):
        raise BadInput(f"target '{target.name}': implicit INT8 needs the calibration cache from the quantize stage")

    plan_path = write_plan(plan, out_dir)
    result = TensorRTResult(
        status="deferred", reason=NOT_INSTALLED, plan_path=plan_path, plan=plan,
        trtexec=command_line(trtexec_args(plan)), trtexec_timing=command_line(trtexec_timing_args(plan)),
        notes=list(plan.notes),
    )
    if builder is None:
        if not tensorrt_api.available():
            return result
        builder = EngineBuilder()
    try:
        problems = host_mismatch(builder, plan)
    except MissingEnvironment as exc:  # TensorRT installed, but no usable GPU or CUDA runtime
        result.reason = f"deferred: {exc}"
        return result
    if problems:
        result.reason = "deferred: this host has " + "; ".join(problems) + " (build on the device)"
        return result

    engine_path, metadata = build_engine(
        plan, onnx_path, out_dir, builder,
        calibration_cache=Path(calibration_cache) if calibration_cache else None,
        timing_cache_dir=timing_cache_dir,
    )
    result.status, result.reason = "built", f"built with TensorRT {metadata['tensorrt_version']}"
    result.engine_path, result.engine_metadata = engine_path, metadata
    result.notes += layer_note(metadata)
    return result
