"""Content hashes, atomic writes and the build directory's layout and manifest.

A build directory is written into a temporary sibling and renamed into place only when the build
finishes, so a crash or Ctrl-C never leaves a half-written build that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import tempfile
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Iterator

import edgeopt

MANIFEST_SCHEMA = 1
TRACKED_LIBRARIES = ("torch", "onnx", "onnxruntime", "onnxscript", "numpy", "torch-pruning",
                     "optimum-onnx", "transformers", "tensorrt")


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: str | Path) -> str:
    """Hash of a file, or of a folder's relative paths and file contents in sorted order."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for child in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(child.relative_to(path)).encode())
        digest.update(sha256_file(child).encode())
    return digest.hexdigest()


def sha256_json(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def library_versions(names: tuple[str, ...] = TRACKED_LIBRARIES) -> dict[str, str]:
    """Installed versions of the libraries whose behaviour changes artifacts (absent ones omitted)."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def host_info() -> dict[str, str | int]:
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "python": sys.version.split()[0],
        "cpus": os.cpu_count() or 0,
        "node": platform.node(),
    }


def write_json_atomic(path: str | Path, value: object) -> None:
    """Write JSON via a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(value, handle, indent=2, sort_keys=False, default=str)
        handle.write("\n")
    os.chmod(tmp, 0o644)  # mkstemp makes 0600
    os.replace(tmp, path)


@contextmanager
def staged_directory(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; on success it replaces `final`, on failure it is removed."""
    final = Path(final).resolve()
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-"))
    staging.chmod(0o755)  # mkdtemp makes 0700; a build directory is meant to be shared
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if final.exists():
        retired = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, retired)
        os.replace(staging, final)
        shutil.rmtree(retired, ignore_errors=True)
    else:
        os.replace(staging, final)


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
        "schema": MANIFEST_SCHEMA,
        "edgeopt": edgeopt.__version__,
        "libraries": library_versions(),
        "host": host or host_info(),
    }
