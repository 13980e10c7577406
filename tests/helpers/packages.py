"""Packages as a device gets them: the archive unpacked with tarfile's data filter."""

from __future__ import annotations

import tarfile
from pathlib import Path


def extract(archive: Path, dest: Path) -> Path:
    """Unpack `archive` into `dest`; the package's one top folder."""
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    return next(dest.iterdir())
