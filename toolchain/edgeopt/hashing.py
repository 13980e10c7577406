"""Content hashes: files, folders and JSON values, all SHA-256 in full (never truncated)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path


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


def source_sha256(package_dir: str | Path) -> str:
    """Hash of a Python package's source: every .py file's relative path and content, sorted
    (bytecode caches and shipped data left out), so two checkouts of one commit agree."""
    root = Path(package_dir)
    digest = hashlib.sha256()
    for child in sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts and "_shipped" not in p.parts):
        digest.update(child.relative_to(root).as_posix().encode() + b"\0" + sha256_file(child).encode())
    return digest.hexdigest()


def sha256_json(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()
