"""The build directory: every file name in it, its manifest, and atomic writes.

A build directory is written into a temporary sibling and renamed into place only when the build
finishes, so a crash or Ctrl-C never leaves a half-written build that looks complete. Every
module that reads or writes a build directory (the pipeline, `engine build`, device validation,
packaging) takes its file names from `BuildLayout` and its manifest I/O from here.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from edgeopt.version import __version__
from edgeopt.errors import BadInput, cause_text
from edgeopt.hashing import sha256_file, source_sha256
from edgeopt.host import host_info, library_versions

SCHEMA_VERSION = 1  # of every JSON document edgeopt writes (manifest, metrics, --json output)


@dataclass(frozen=True)
class BuildLayout:
    """File names of a build directory (relative to it). Stages write these names into their
    own folders; the pipeline copies them into the build directory unchanged."""

    fp32_onnx: str = "model.fp32.onnx"
    int8_onnx: str = "model.int8.onnx"
    fp16_onnx: str = "model.fp16.onnx"  # --precision fp16 for TensorRT 11 (strongly typed)
    calibration_json: str = "calibration.json"
    tensorrt_calibration_cache: str = "calibration.cache"
    ort_deployable: str = "model.deployable.onnx"
    ort_session: str = "session.json"
    tensorrt_plan: str = "build_plan.json"
    tensorrt_engine: str = "model.engine"
    tensorrt_engine_json: str = "engine.json"
    pruned_model: str = "model.pruned.pt2"
    unpruned_fp32_onnx: str = "unpruned.fp32.onnx"
    metrics: str = "metrics.json"
    latency_samples: str = "latency.json"  # raw single-run times (ms) of the validate stage, per precision
    manifest: str = "manifest.json"
    # release packages (package/bundle.py): files a package adds beside the build's own
    package_info: str = "package.json"
    checksums: str = "SHA256SUMS"  # `sha256sum -c SHA256SUMS` format
    signature: str = "SHA256SUMS.sig"  # DER ECDSA-SHA256 over SHA256SUMS (package/signing.py), when signed
    provenance: str = "provenance.json"  # in-toto Statement v1, SLSA provenance v1 (package/provenance.py)
    sbom: str = "sbom.cdx.json"  # CycloneDX 1.6 (package/sbom.py)
    report: str = "report.md"
    device_runner: str = "run_on_device.sh"  # a sh fallback (sha256sum + trtexec) for hosts without python3
    device_runner_py: str = "run_on_device.py"  # device_runner.py: build, validate, time with JetPack only
    device_runtime_py: str = "device_runtime.py"  # its CUDA/session half, imported from beside it
    timing_py: str = "timing.py"  # latency statistics (trtexec's rules), the host's own module
    compare_py: str = "compare.py"  # the one comparison of engine and FP32 outputs, the host's own module
    user_metric_py: str = "user_metric.py"  # the build's --metric file, when it had one
    device_results: str = "device_results.json"  # what run_on_device.py measured, for the workstation
    device_manifest: str = "device_manifest.json"  # manifest.json + what the device built (the shipped one stays signed)
    layer_report: str = "layers.json"  # per-layer precision and DLA/GPU placement (engine inspector)
    release_builds: str = "builds"  # a release folder's builds/<model>/<target>/ (release.py)
    eval_inputs: str = "eval_inputs.npz"
    eval_fp32_outputs: str = "eval_fp32_outputs.npz"
    # field feedback (issue 22, field/): calibration statistics, in builds and packages, and the monitor
    calib_stats: str = "calib_stats.json"
    field_monitor_py: str = "field_monitor.py"  # field/monitor.py: numpy + ONNX Runtime, beside the model
    field_capture_py: str = "field_capture.py"  # field/capture.py, which it imports
    # Triton model repository (package/triton.py): <model>/config.pbtxt and <model>/1/<file>
    triton_config: str = "config.pbtxt"
    triton_onnx: str = "model.onnx"
    triton_plan: str = "model.plan"
    # decoder-only LLMs (issue 18): the KV-cache decoder, as optimum writes it and onnxruntime-genai reads it
    causal_lm_onnx: str = "model.onnx"
    genai_dir: str = "genai"  # the CPU deployable folder (og.Model(folder)); `edgeopt bench` times it
    # their Jetson path (backends/tensorrt/edge_llm.py): TensorRT Edge-LLM, or llama.cpp on a GGUF
    edge_llm_dir: str = "edge_llm"
    llama_cpp_dir: str = "llama_cpp"
    edge_llm_plan: str = "llm_plan.json"
    edge_llm_checkpoint: str = "hf_checkpoint"
    edge_llm_calibration: str = "calibration_texts"
    edge_llm_calibration_texts: str = "calib.txt"
    edge_llm_onnx: str = "edge_llm_onnx"
    edge_llm_quantized: str = "edge_llm_quantized"
    edge_llm_engines: str = "edge_llm_engines"
    edge_llm_input: str = "llm_input.json"
    edge_llm_output: str = "llm_output.json"
    edge_llm_host_script: str = "export_on_gpu_host.sh"
    edge_llm_device_script: str = "build_on_device.sh"
    llama_cpp_gguf: str = "model.gguf"
    llama_cpp_eval_texts: str = "eval.txt"


LAYOUT = BuildLayout()


@dataclass(frozen=True)
class Artifact:
    """A file one stage wrote and a later one reads: where it is and what it holds. Stages pass
    these to each other (pipeline.py, steps.py), so a reader never re-hashes a file or names its folder."""

    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name

    @staticmethod
    def of(file: "Artifact | str | Path") -> "Artifact":
        """`file` as an artifact (a plain path is hashed once, here)."""
        return file if isinstance(file, Artifact) else Artifact(Path(file), sha256_file(file))


def write_json_atomic(path: str | Path, value: object) -> None:
    """Write JSON via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(value, handle, indent=2, sort_keys=False, default=str)
            handle.write("\n")
        os.chmod(tmp, 0o644)  # mkstemp makes 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write bytes to a sibling temporary file, then rename: a crash never leaves half a file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def place(source: Path, destination: Path) -> Path:
    """Copy a cached artifact into the build directory. A copy, not a hard link: a build
    directory is a deliverable people edit and package, and an edit must not reach the cache."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, destination)
    return destination


def describe_artifact(path: Path, root: Path) -> dict:
    return {"path": str(path.relative_to(root)), "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def new_manifest(host: dict | None = None) -> dict:
    return {
        "schema_version": SCHEMA_VERSION,
        "edgeopt": __version__,
        "edgeopt_source": source_sha256(Path(__file__).parent),  # which edgeopt code built it (provenance)
        "libraries": library_versions(),
        "host": host or host_info(),
    }


class Manifest(BaseModel):
    """manifest.json as one type: assemble.write_build writes it, the package, Triton and release
    readers read it (`Manifest.of(dict)`). Unknown keys are kept, so an older or newer build (an
    LLM build, an `engine build` update) reads and writes back unchanged; a missing or null block
    reads as empty, so no reader writes `manifest.get("engine") or {}`."""

    model_config = ConfigDict(extra="allow")

    schema_version: int = SCHEMA_VERSION
    edgeopt: str | None = None
    edgeopt_source: str | None = None  # sha256 of edgeopt's .py files (hashing.source_sha256); older builds: None
    libraries: dict[str, Any] = {}
    host: dict[str, Any] = {}
    model: dict[str, Any] = {}
    target: dict[str, Any] = {}
    data: dict[str, Any] = {}
    stages: list[dict[str, Any]] = []
    artifacts: list[dict[str, Any]] = []
    metrics: dict[str, Any] | None = None
    gates: list[dict[str, Any]] = []
    engine: dict[str, Any] = {}
    deployable: str | None = None
    warnings: list[str] = []
    prune: dict[str, Any] | None = None

    @field_validator("libraries", "host", "model", "target", "data", "engine", mode="before")
    @classmethod
    def _empty_block(cls, value):
        return {} if value is None else value

    @field_validator("stages", "artifacts", "gates", "warnings", mode="before")
    @classmethod
    def _empty_list(cls, value):
        return [] if value is None else value

    @classmethod
    def of(cls, manifest: "dict | Manifest") -> "Manifest":
        return manifest if isinstance(manifest, Manifest) else cls.model_validate(manifest)

    def document(self) -> dict:
        return self.model_dump(mode="json")

    @property
    def spec(self) -> dict[str, Any]:
        """The model spec the host judged with (`model.spec`); empty when the build recorded none."""
        return self.model.get("spec") or {}

    def threshold(self, gate: str) -> float | None:
        """The threshold the build judged `gate` by (a --max-accuracy-drop included), None if absent."""
        return next((g.get("threshold") for g in self.gates if g.get("name") == gate), None)


# --- reading and updating an existing build directory ----------------------------------------


def find_build(path: Path) -> Path:
    """The build directory at `path` (or the single one nested one level below it)."""
    path = Path(path)
    if (path / LAYOUT.manifest).is_file():
        return path
    nested = [p.parent for p in path.glob(f"*/{LAYOUT.manifest}")] if path.is_dir() else []
    if len(nested) != 1:
        raise BadInput(f"{path}: no {LAYOUT.manifest} (is this an edgeopt build directory?)")
    return nested[0]


def read_manifest(build_dir: Path) -> dict:
    """manifest.json, or the device runner's device_manifest.json (the same record plus the engine
    built on the device) when a package folder has been run on its device."""
    path = Path(build_dir) / LAYOUT.device_manifest
    if not path.is_file():
        path = Path(build_dir) / LAYOUT.manifest
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BadInput(f"{path}: not a readable manifest ({exc.__class__.__name__}: {exc})") from None
    if not isinstance(manifest, dict):
        raise BadInput(f"{path}: not a readable manifest (not a JSON object)")
    return manifest


def typed_manifest(build_dir: Path, manifest: "dict | Manifest") -> Manifest:
    """The manifest as its type; a block of the wrong shape is bad input naming the file and key."""
    try:
        return Manifest.of(manifest)
    except ValidationError as exc:
        key = ".".join(str(part) for part in exc.errors()[0]["loc"])
        raise BadInput(f"{Path(build_dir) / LAYOUT.manifest}: key '{key}' is not valid ({cause_text(exc)})") from None


def manifest_target(build_dir: Path, manifest: "dict | Manifest"):
    """The target profile a build was made for, as the manifest recorded it."""
    from edgeopt.targets import TargetProfile

    path = Path(build_dir) / LAYOUT.manifest
    recorded = typed_manifest(build_dir, manifest).target  # the profile as built, plus keys the manifest adds (sha256)
    if not recorded:
        raise BadInput(f"{path}: no key 'target'")
    try:
        return TargetProfile.model_validate({k: v for k, v in recorded.items() if k in TargetProfile.model_fields})
    except ValidationError as exc:
        raise BadInput(f"{path}: key 'target' is not a valid profile ({cause_text(exc)})") from None


def verify_artifact(build_dir: Path, manifest: "dict | Manifest", name: str) -> Path:
    """The file, checked against the manifest's sha256 when the manifest lists it."""
    path = Path(build_dir) / name
    if not path.is_file():
        raise BadInput(f"{path}: missing from the build directory")
    for entry in typed_manifest(build_dir, manifest).artifacts:
        if entry.get("path") == name and entry.get("sha256") and entry["sha256"] != sha256_file(path):
            raise BadInput(f"{path}: sha256 differs from {LAYOUT.manifest} (changed or damaged in transfer)")
    return path


def update_manifest(build_dir: Path, updates: dict, files: list[str]) -> dict:
    """Merge `updates` into manifest.json and refresh the artifact entries of `files`; atomic. In an
    unpacked package (SHA256SUMS beside it) the shipped manifest stays as signed and the record goes
    to device_manifest.json, as the device runner's does."""
    build_dir = Path(build_dir)
    record = LAYOUT.device_manifest if (build_dir / LAYOUT.checksums).is_file() else LAYOUT.manifest
    manifest = read_manifest(build_dir)
    manifest.update(updates)
    entries = [e for e in manifest.get("artifacts", []) if e.get("path") not in files]
    entries += [describe_artifact(build_dir / name, build_dir) for name in files if (build_dir / name).is_file()]
    manifest["artifacts"] = sorted(entries, key=lambda e: e["path"])
    write_json_atomic(build_dir / record, manifest)
    return manifest


def read_build(build_dir: Path):
    """(manifest as read, target profile) of a build directory; package/ still reads the dict."""
    manifest = read_manifest(build_dir)
    return manifest, manifest_target(build_dir, manifest)


def read_typed_build(build_dir: Path):
    """(Manifest, target profile) of a build directory: the typed read."""
    manifest = typed_manifest(build_dir, read_manifest(build_dir))
    return manifest, manifest_target(build_dir, manifest)
