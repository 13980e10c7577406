"""The TensorRT build plan: every builder decision for one (target, TensorRT version, inputs).

The plan is the single source of truth: it is written to build_plan.json, the trtexec command
is printed from it, and the API builder (compile_tensorrt.EngineBuilder) executes it. Deciding
here, with no TensorRT import, keeps every decision testable on a host without a GPU.
"""

from __future__ import annotations

import shlex
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from edgeopt.backends.tensorrt import timing_defaults
from edgeopt.build_dir import LAYOUT
from edgeopt.errors import BadInput
from edgeopt.models.spec import InputSpec
from edgeopt.targets import TargetProfile

PLAN_SCHEMA = 1

_BATCH_WORDS = ("batch", "n")
_SEQ_WORDS = ("seq", "sequence", "seq_len", "sequence_length", "tokens", "length")


class InputShapes(BaseModel):
    """One input's optimization-profile shapes; min == opt == max for a fixed range."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    dtype: str
    min: tuple[int, ...]
    opt: tuple[int, ...]
    max: tuple[int, ...]
    free_axes: tuple[int, ...] = Field((), description="axes the ONNX leaves free (-1): each needs a profile")

    @property
    def dynamic(self) -> bool:
        """A shape range (min != max): DLA refuses it."""
        return self.min != self.max

    @property
    def needs_profile(self) -> bool:
        """TensorRT needs a profile for every input with a -1 dimension, even when min = opt = max
        ("Network has dynamic or shape inputs, but no optimization profile has been defined")."""
        return bool(self.free_axes) or self.dynamic


class BuildPlan(BaseModel):
    """What to build and how. File names are relative to the build directory."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = PLAN_SCHEMA
    target: str
    gpu: str = Field(description="the device's product name")
    compute_capability: str
    tensorrt: str = Field(description="TensorRT version the plan is for, e.g. '10.3'")
    tensorrt_major: int
    onnx: str = Field(description="ONNX file, relative to the build directory")
    onnx_sha256: str | None = None
    engine: str = LAYOUT.tensorrt_engine
    precision: Literal["int8", "fp16", "fp32"]
    int8_mode: Literal["explicit", "implicit"] | None
    strongly_typed: bool = Field(description="TensorRT 11: types come from the ONNX (Q/DQ), no precision flags")
    explicit_batch: bool = Field(description="TensorRT 8 needs the EXPLICIT_BATCH network flag for ONNX")
    builder_flags: list[str] = Field(description="BuilderFlag names set on the config, in order")
    calibration_cache: str | None = None
    dla_core: int | None = None
    gpu_fallback: bool = False
    sparse_weights: bool = False
    workspace_mb: int | None = None
    builder_optimization_level: int | None = Field(None, description="None where TensorRT < 8.6 lacks it")
    timing_cache: str
    inputs: list[InputShapes]
    notes: list[str] = Field(default_factory=list)

    @property
    def dynamic(self) -> bool:
        """Some input needs an optimization profile (the API path) and explicit shapes (trtexec)."""
        return any(shapes.needs_profile for shapes in self.inputs)

    @property
    def profiled(self) -> list[InputShapes]:
        return [shapes for shapes in self.inputs if shapes.needs_profile]


def timing_cache_name(compute_capability: str, tensorrt: str) -> str:
    """Timing caches are only valid for one GPU architecture and one TensorRT version."""
    return f"timing-sm{compute_capability.replace('.', '')}-trt{tensorrt}.cache"


def _at_least(version: str, major: int, minor: int) -> bool:
    parts = [int(p) for p in version.split(".")[:2] if p.isdigit()] + [0]
    return (parts[0], parts[1]) >= (major, minor)


def _axis_range(target: TargetProfile, spec: InputSpec, axis: int, name: str, notes: list[str]):
    lowered = name.lower()
    if axis == 0 or lowered in _BATCH_WORDS or "batch" in lowered:
        r = target.build.batch
        return r.min, r.opt, r.max
    if lowered in _SEQ_WORDS or "seq" in lowered or "token" in lowered:
        r = target.build.seq_len
        return r.min, r.opt, r.max
    size = spec.shape[axis]
    notes.append(f"{spec.name}: dynamic axis {axis} ('{name}') has no profile range; fixed at {size}")
    return size, size, size


def input_shapes(target: TargetProfile, inputs: list[InputSpec], notes: list[str]) -> list[InputShapes]:
    """min/opt/max per input: batch axes from build.batch, sequence axes from build.seq_len."""
    result = []
    for spec in inputs:
        lo, mid, hi = list(spec.shape), list(spec.shape), list(spec.shape)
        if spec.shape and 0 not in spec.dynamic_axes and target.build.batch.max != spec.shape[0]:
            notes.append(f"{spec.name}: the model fixes batch {spec.shape[0]}; the profile's batch range "
                         f"{target.build.batch.min}..{target.build.batch.max} does not apply")
        for axis, axis_name in sorted(spec.dynamic_axes.items()):
            if axis >= len(spec.shape):
                raise BadInput(f"input '{spec.name}': dynamic axis {axis} but the shape has {len(spec.shape)} axes")
            lo[axis], mid[axis], hi[axis] = _axis_range(target, spec, axis, axis_name, notes)
        result.append(InputShapes(name=spec.name, dtype=spec.dtype, min=tuple(lo), opt=tuple(mid), max=tuple(hi),
                                  free_axes=tuple(sorted(spec.dynamic_axes))))
    return result


def make_plan(
    target: TargetProfile,
    inputs: list[InputSpec],
    *,
    onnx: str,
    tensorrt: str | None = None,
    sparsity: bool | None = None,
    onnx_sha256: str | None = None,
    calibration_cache: str = LAYOUT.tensorrt_calibration_cache,
) -> BuildPlan:
    """Decide every builder setting. `tensorrt` overrides the profile's pinned version (the
    installed one, or a what-if in tests); the profile's pin is the default."""
    if target.backend != "tensorrt":
        raise BadInput(f"target '{target.name}' uses backend {target.backend}, not tensorrt")
    version = tensorrt or target.software.tensorrt
    assert version is not None  # TargetProfile guarantees a pin for tensorrt targets
    trt_major = int(version.split(".")[0])
    build, device = target.build, target.device
    notes: list[str] = []

    int8_mode = build.int8_mode if build.precision == "int8" else None
    strongly_typed = trt_major >= 11
    if int8_mode == "implicit" and strongly_typed:
        raise BadInput(
            f"target '{target.name}': build.int8_mode implicit needs TensorRT <= 10 (calibrators were removed in "
            f"TensorRT {version}); use int8_mode: explicit"
        )

    flags: list[str] = []
    if not strongly_typed:
        if build.precision == "int8":
            flags += ["INT8", "FP16"]  # FP16 lets layers outside Q/DQ (or not calibrated) avoid FP32
        elif build.precision == "fp16":
            flags.append("FP16")
    elif build.precision == "fp16":
        notes.append("TensorRT 11 takes precision from the ONNX types: fp16 needs an FP16 ONNX (ModelOpt AutoCast)")

    dla_core = build.dla_core
    gpu_fallback = dla_core is not None and build.gpu_fallback
    if dla_core is not None and build.precision == "fp32":
        raise BadInput(f"target '{target.name}': build.dla_core needs precision int8 or fp16 (DLA has no FP32)")
    if gpu_fallback:
        flags.append("GPU_FALLBACK")

    wants_sparse = build.sparsity if sparsity is None else sparsity
    if wants_sparse and not device.sparse_2_4:
        raise BadInput(f"sparsity: {device.product} ({device.arch}) does not accelerate 2:4 sparse weights")
    if wants_sparse:
        flags.append("SPARSE_WEIGHTS")

    shapes = input_shapes(target, inputs, notes)
    if dla_core is not None and any(s.dynamic for s in shapes):
        raise BadInput(
            f"target '{target.name}': DLA needs static shapes; set build.batch (and seq_len) min = opt = max"
        )

    cc = device.compute_capability or "unknown"
    return BuildPlan(
        target=target.name,
        gpu=device.product,
        compute_capability=cc,
        tensorrt=version,
        tensorrt_major=trt_major,
        onnx=onnx,
        onnx_sha256=onnx_sha256,
        precision=build.precision,
        int8_mode=int8_mode,
        strongly_typed=strongly_typed,
        explicit_batch=trt_major < 10,
        builder_flags=flags,
        calibration_cache=calibration_cache if int8_mode == "implicit" else None,
        dla_core=dla_core,
        gpu_fallback=gpu_fallback,
        sparse_weights=bool(wants_sparse),
        workspace_mb=build.workspace_mb,
        builder_optimization_level=(
            build.builder_optimization_level if _at_least(version, 8, 6) else None
        ),
        timing_cache=timing_cache_name(cc, version),
        inputs=shapes,
        notes=notes,
    )


def _shape_spec(plan: BuildPlan, which: str) -> str:
    """Shapes of every input with a free axis: trtexec would otherwise force its -1s to 1."""
    return ",".join(f"{s.name}:{'x'.join(str(d) for d in getattr(s, which))}" for s in plan.profiled)


def trtexec_args(plan: BuildPlan) -> list[str]:
    """trtexec arguments with exactly the plan's settings (only flags of the pinned release)."""
    args = ["trtexec", f"--onnx={plan.onnx}", f"--saveEngine={plan.engine}"]
    if plan.strongly_typed:
        args.append("--stronglyTyped")
    names = set(plan.builder_flags)
    if "INT8" in names:
        args.append("--int8")
    if "FP16" in names:
        args.append("--fp16")
    if plan.calibration_cache:
        args.append(f"--calib={plan.calibration_cache}")
    if plan.dla_core is not None:
        args.append(f"--useDLACore={plan.dla_core}")
    if plan.gpu_fallback:
        args.append("--allowGPUFallback")
    if plan.sparse_weights:
        args.append("--sparsity=enable")
    if plan.workspace_mb:
        args.append(f"--memPoolSize=workspace:{plan.workspace_mb}")  # plain number = MiB in 8.5 to 11
    if plan.builder_optimization_level is not None:
        args.append(f"--builderOptimizationLevel={plan.builder_optimization_level}")
    args.append(f"--timingCacheFile={plan.timing_cache}")
    # the layer report (precision, DLA or GPU per layer), as the API path's engine inspector gives it
    args += ["--profilingVerbosity=detailed", f"--exportLayerInfo={LAYOUT.layer_report}"]
    if plan.dynamic:
        args += [f"--minShapes={_shape_spec(plan, 'min')}", f"--optShapes={_shape_spec(plan, 'opt')}",
                 f"--maxShapes={_shape_spec(plan, 'max')}"]
    args.append("--skipInference" if _at_least(plan.tensorrt, 8, 6) else "--buildOnly")
    return args


def trtexec_timing_args(plan: BuildPlan, *, warmup_ms: int = timing_defaults.WARMUP_MS,
                        duration_s: int = timing_defaults.DURATION_S) -> list[str]:
    """trtexec arguments that time the built engine at the opt shapes."""
    args = ["trtexec", f"--loadEngine={plan.engine}"]
    if plan.dla_core is not None:
        args.append(f"--useDLACore={plan.dla_core}")
    if plan.dynamic:
        args.append(f"--shapes={_shape_spec(plan, 'opt')}")
    args += [f"--warmUp={warmup_ms}", f"--duration={duration_s}", "--percentile=99"]
    return args


def command_line(args: list[str]) -> str:
    return " ".join(shlex.quote(a) for a in args)
