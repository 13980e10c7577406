"""Target device profiles: the schema, loading from YAML, aliases and host detection.

A profile is one YAML file per device (`targets/<name>.yaml`). It is validated on load: an
unknown key, a wrong type or a missing field is an error naming the file and the key, because a
typo in a profile (`precison: int8`) must never silently fall back to a default.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from edgeopt import host
from edgeopt.errors import BadInput, cause_text
from edgeopt.safe_io import PROFILE_LIMIT, read_text
from edgeopt.resources import shipped

HOST_CPU = "cpu"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Device(_Strict):
    """Hardware facts (REFERENCE.md). They drive build choices and appear in reports."""

    kind: Literal["cpu", "gpu"]
    product: str = Field(description="marketing name of the device")
    arch: str = Field(description="x86_64 / aarch64 for CPUs; ampere, volta, turing, ada for GPUs")
    compute_capability: str | None = Field(None, description="CUDA SM version, e.g. '8.7'")
    cuda_cores: int | None = None
    tensor_cores: int | None = None
    dla_cores: int = Field(0, description="NVDLA engines on the module")
    dla_version: str | None = None
    cpu_cores: int | None = None
    cpu_flags: list[str] = Field(
        default_factory=list,
        description="CPU flags (as /proc/cpuinfo names them) the host must have to match this profile",
    )
    memory_gb: float
    bandwidth_gbps: float | None = None
    int8_tops_dense: float | None = None
    int8_tops_sparse: float | None = None
    sparse_2_4: bool = Field(False, description="the hardware accelerates 2:4 semi-structured sparsity")
    power_modes: list[str] = Field(default_factory=list)


class Software(_Strict):
    """The software the device runs; an engine is only valid for exactly this TensorRT."""

    os: str | None = None
    jetpack: str | None = None
    tensorrt: str | None = None
    cuda: str | None = None
    cudnn: str | None = None
    onnxruntime_ep: str | None = Field(None, description="ONNX Runtime execution provider on the device")


class Range(_Strict):
    min: int
    opt: int
    max: int

    @model_validator(mode="after")
    def _ordered(self) -> "Range":
        if not (1 <= self.min <= self.opt <= self.max):
            raise ValueError(f"needs 1 <= min <= opt <= max, got {self.min}/{self.opt}/{self.max}")
        return self


class Build(_Strict):
    """How to build for this target."""

    precision: Literal["int8", "fp16", "fp32"] = "int8"
    int8_mode: Literal["explicit", "implicit"] = Field(
        "explicit",
        description="explicit: Q/DQ ONNX; implicit: TensorRT calibrator (TensorRT <= 10 only, e.g. DLA)",
    )
    activation_type: Literal["uint8", "int8"] = Field(
        "uint8", description="INT8 activation type for ONNX Runtime CPU kernels"
    )
    reduce_range: bool = Field(False, description="7-bit weights, avoids AVX2 VPMADDUBSW saturation")
    sparsity: bool = Field(False, description="ask the engine builder for 2:4 sparse weights")
    prune: float | None = Field(None, description="default structured pruning ratio (none: no pruning)")
    channel_multiple: int = Field(8, description="pruned channel counts are rounded to this multiple")
    threads: int | None = Field(None, description="intra-op threads on the device (none: all cores)")
    workspace_mb: int | None = None
    dla_core: int | None = None
    gpu_fallback: bool = True
    builder_optimization_level: int = Field(3, ge=0, le=5)
    batch: Range = Range(min=1, opt=1, max=1)
    seq_len: Range = Range(min=1, opt=128, max=128)


class Gates(_Strict):
    """Pass/fail thresholds checked by the validate stage."""

    max_accuracy_drop: float = Field(0.01, ge=0, description="FP32 minus INT8 top-1, as a fraction")
    max_latency_ms: float | None = Field(None, gt=0, description="p50 of the deployable on the device")
    # LLM builds (issue 18): judged on the --eval texts as deployed; the build exits 1 when violated
    max_perplexity_increase: float = Field(0.01, ge=0, description="LLM: deployed perplexity / FP32's - 1, as a fraction")
    min_greedy_agreement: float | None = Field(None, ge=0, le=1, description="LLM: share of greedy tokens equal to FP32's")
    min_speedup: float | None = Field(None, gt=0, description="FP32 p50 / deployable p50 on the host")
    # field feedback (issue 22): `edgeopt feedback` alerts (exit 1) when a quantized tensor crosses one
    max_field_saturation: float = Field(0.01, ge=0, le=1, description="field: share of a quantized tensor's values outside its calibrated range")
    max_field_psi: float = Field(0.25, ge=0, description="field: population stability index of a quantized tensor vs calibration (0.25: a major shift)")


class TargetProfile(_Strict):
    name: str
    description: str
    aliases: list[str] = Field(default_factory=list)
    backend: Literal["onnxruntime", "tensorrt"]
    device: Device
    software: Software = Software()
    build: Build = Build()
    gates: Gates = Gates()
    source: str = Field("", description="file the profile was loaded from (filled in on load)")

    @model_validator(mode="after")
    def _consistent(self) -> "TargetProfile":
        if self.backend == "tensorrt" and not self.software.tensorrt:
            raise ValueError("software.tensorrt: a tensorrt target must pin its TensorRT version")
        if self.build.dla_core is not None and self.build.dla_core >= self.device.dla_cores:
            raise ValueError(
                f"build.dla_core: {self.build.dla_core} but the device has {self.device.dla_cores} DLA cores"
            )
        if self.build.sparsity and not self.device.sparse_2_4:
            raise ValueError("build.sparsity: this device does not accelerate 2:4 sparsity")
        if self.build.int8_mode == "implicit" and self.tensorrt_major not in (None, 8, 9, 10):
            raise ValueError("build.int8_mode: implicit INT8 calibration was removed in TensorRT 11")
        return self

    @property
    def tensorrt_major(self) -> int | None:
        return int(self.software.tensorrt.split(".")[0]) if self.software.tensorrt else None

    def sha256(self) -> str:
        """Content hash of the profile (not of its file path), for cache keys and the manifest."""
        body = self.model_dump(exclude={"source"})
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def search_dirs(targets_dir: str | Path | None = None) -> list[Path]:
    """Profile folders, lowest priority first: shipped, then EDGEOPT_TARGETS, then --targets-dir."""
    dirs = [shipped("targets")]
    for entry in os.environ.get("EDGEOPT_TARGETS", "").split(os.pathsep):
        if entry:
            dirs.append(Path(entry))
    if targets_dir:
        dirs.append(Path(targets_dir))
    for folder in dirs[1:]:
        if not folder.is_dir():
            raise BadInput(f"{folder}: targets folder does not exist")
    return dirs


def describe_error(path: Path, error: ValidationError) -> str:
    """A schema error of one of edgeopt's YAML files (profiles, edgeopt.yaml) as one line naming the
    file and the key: unknown, missing, or what is wrong with its value."""
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "extra_forbidden":
        return f"{path}: unknown key '{key}'"
    if first["type"] == "missing":
        return f"{path}: missing key '{key}'"
    return f"{path}: key '{key}': {first['msg']}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load keeps the last of two equal keys silently; a profile is refused instead."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise BadInput(f"{_UniqueKeyLoader.current}: key '{key}' is written twice "
                           f"(line {key_node.start_mark.line + 1})")
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _read_yaml(path: Path, text: str):
    _UniqueKeyLoader.current = path
    return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass


def read_yaml_mapping(path: Path, *, missing: str, not_mapping: str, unique_keys: bool = True) -> dict:
    """A YAML file that must hold a mapping (target profiles, edgeopt.yaml), or BadInput naming the
    file: `missing` and `not_mapping` say what was expected. The one YAML reader of edgeopt's files."""
    try:
        if not path.exists() and not path.is_symlink():
            raise FileNotFoundError(path)
        text = read_text(path, PROFILE_LIMIT, "the YAML file")  # regular file, size bound, UTF-8
        raw = _read_yaml(path, text) if unique_keys else yaml.safe_load(text)
    except FileNotFoundError:
        raise BadInput(f"{path}: {missing}") from None
    except yaml.YAMLError as exc:
        raise BadInput(f"{path}: not valid YAML ({cause_text(exc)})") from None
    if not isinstance(raw, dict):
        raise BadInput(f"{path}: {not_mapping}")
    return raw


def load_profile(path: str | Path) -> TargetProfile:
    """Read and validate one profile file; its name is the file name without `.yaml`."""
    path = Path(path)
    raw = read_yaml_mapping(path, missing="target profile not found", not_mapping="a target profile must be a YAML mapping")
    if "name" in raw and raw["name"] != path.stem:
        raise BadInput(f"{path}: key 'name' is '{raw['name']}' but the file is named '{path.stem}'")
    raw = {**raw, "name": path.stem, "source": str(path)}
    try:
        return TargetProfile.model_validate(raw)
    except ValidationError as exc:
        raise BadInput(describe_error(path, exc)) from None


def load_all(targets_dir: str | Path | None = None) -> dict[str, TargetProfile]:
    """Every profile by name; a user profile replaces a shipped one of the same name."""
    profiles: dict[str, TargetProfile] = {}
    for folder in search_dirs(targets_dir):
        for path in sorted(folder.glob("*.yaml")):
            profiles[path.stem] = load_profile(path)
    owner: dict[str, TargetProfile] = {}
    for profile in profiles.values():
        for alias in profile.aliases:
            other = owner.get(alias) or profiles.get(alias)
            if other is not None and other.name != profile.name:
                raise BadInput(f"{profile.source}: alias '{alias}' is also {'an alias of' if alias in owner else 'the name of'} "
                               f"profile '{other.name}' ({other.source}); an alias must name one profile")
            owner[alias] = profile
    return profiles


def host_profile(profiles: dict[str, TargetProfile]) -> TargetProfile:
    """The CPU profile that best describes this host: one this host stands for (host.stands_for),
    most specific (most required flags) first."""
    candidates = [p for p in profiles.values() if host.stands_for(p)[0]]
    if not candidates:
        raise BadInput(f"no CPU target profile matches this host ({host.machine()}); pass --target NAME")
    return max(candidates, key=lambda p: (len(p.device.cpu_flags), p.name))


def resolve(name: str, targets_dir: str | Path | None = None) -> TargetProfile:
    """A profile by name or alias; `cpu` is the host's own CPU profile."""
    profiles = load_all(targets_dir)
    if name == HOST_CPU:
        return host_profile(profiles)
    if name in profiles:
        return profiles[name]
    for profile in profiles.values():
        if name in profile.aliases:
            return profile
    known = ", ".join(sorted(profiles))
    raise BadInput(f"unknown target '{name}' (known: cpu, {known})")
