"""This machine: what it is, which libraries it has, and the one answer to "can this host stand
in for the target?" (quantize's candidate timing and validate's latency both ask it here).
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from pathlib import Path

from edgeopt.hashing import sha256_file, sha256_json
from edgeopt.version import __version__

TRACKED_LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxscript", "numpy", "torch-pruning",
                     "optimum-onnx", "transformers", "tensorrt")


def library_versions(names: tuple[str, ...] = TRACKED_LIBRARIES) -> dict[str, str]:
    """Installed versions of the libraries whose behaviour changes artifacts (absent ones omitted)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def machine() -> str:
    """The architecture as profiles name it: x86_64 or aarch64 (amd64/arm64 normalised)."""
    return platform.machine().lower().replace("amd64", "x86_64").replace("arm64", "aarch64")


def cpu_flags() -> set[str]:
    """CPU feature flags of this machine, as /proc/cpuinfo spells them (Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return set(value.split())
    return set()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model"):
                return value.strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def host_info() -> dict[str, str | int]:
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count() or 0,
        "node": platform.node(),
    }


def default_threads(target) -> int:
    """Threads for scoring and timing: the profile's build.threads, else every core here."""
    return target.build.threads or os.cpu_count() or 1


def stands_for(target) -> tuple[bool, str | None]:
    """(True, None) when latency measured here is the target's: an onnxruntime CPU target with
    this host's architecture and every CPU flag the profile requires; else (False, why not).
    The one answer: quantize's timing, validate's latency, verify and `cpu` (targets.host_profile) ask here."""
    if target.backend != "onnxruntime" or target.device.kind != "cpu":
        return False, "latency not measured: the target is a GPU; time the engine on the device"
    here = machine()
    if target.device.arch != here:
        return False, f"latency not measured: the target is {target.device.arch}, this host is {here}"
    missing = sorted(set(target.device.cpu_flags) - cpu_flags())
    if missing:
        return False, (f"latency not measured: the target needs CPU flags {', '.join(missing)}, "
                       "which this host lacks")
    return True, None


def edgeopt_fingerprint() -> str:
    """edgeopt's version plus a hash of its own source: a code change (a merge, a local edit)
    must never be served artifacts an older edgeopt made under the same version number."""
    root = Path(__file__).parent  # the edgeopt package
    digest = "".join(sha256_file(p) for p in sorted(root.rglob("*.py")))
    return f"{__version__}+{sha256_json(digest)}"
