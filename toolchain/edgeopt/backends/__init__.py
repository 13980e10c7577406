"""Backends: one compile-and-validate facade per runtime. The pipeline asks `backend_for(target)`
and never branches on the backend's name itself."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeopt.build_dir import LAYOUT


def backend_for(target, cache_root=None, **options):
    """The facade for `target.backend` ("onnxruntime" or "tensorrt"). `options` go to the
    TensorRT facade (tests give it a fake `engine_builder` and `cuda`)."""
    if target.backend == "tensorrt":
        from edgeopt.backends.tensorrt.facade import TensorRTBackend

        timing = cache_root / "tensorrt" if cache_root is not None else None
        return TensorRTBackend(target, timing_cache_dir=timing, **options)
    from edgeopt.backends.onnxruntime.facade import OnnxRuntimeBackend

    return OnnxRuntimeBackend(target, **options)


@dataclass(frozen=True)
class PackageNeeds:
    """What `edgeopt package` ships for a build of this backend: (name, role) of its files, and
    whether the device runner (evaluation data, run_on_device.py, the --metric file) goes too."""

    files: list[tuple[str, str]]
    device_runner: bool


def package_needs(backend: str, build_dir: Path, manifest) -> PackageNeeds:
    """Each backend's facade module says which of a build's files its package needs."""
    if getattr(manifest, "kind", None) == "causal-lm":  # decoder-only LLMs (issue 18): the deployable folder
        return PackageNeeds(llm_package_files(manifest), device_runner=False)
    if backend == "tensorrt":
        from edgeopt.backends.tensorrt.facade import package_files as tensorrt_files

        return PackageNeeds(tensorrt_files(build_dir, manifest), device_runner=True)
    from edgeopt.backends.onnxruntime.facade import package_files as onnxruntime_files

    return PackageNeeds(onnxruntime_files(build_dir, manifest), device_runner=False)


def export_opset(target) -> int:
    """The ONNX opset the export stage writes for `target` (the parser of its runtime decides)."""
    from edgeopt.backends.tensorrt.operators import export_opset as tensorrt_opset

    return tensorrt_opset(target)


LLM_ROLES = {LAYOUT.genai_dir: "onnxruntime-genai folder (og.Model(folder)): deploy this",
             LAYOUT.edge_llm_dir: "TensorRT Edge-LLM inputs: export on a CUDA host, then build_on_device.sh on the Jetson",
             LAYOUT.llama_cpp_dir: "llama.cpp with CUDA: the GGUF as given, build_on_device.sh on the Jetson"}


def llm_package_files(manifest) -> list[tuple[str, str]]:
    """(name, role) of an LLM build's deployable folder, as its manifest lists it (hashes checked)."""
    folder = (manifest.deployable or "").rstrip("/")
    role = LLM_ROLES.get(folder, "LLM deployable")
    return [(a["path"], role) for a in manifest.artifacts if str(a["path"]).startswith(folder + "/")]
