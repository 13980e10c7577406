"""The content-addressed stage cache.

A stage's key is the SHA-256 of its name, its parameters, the hashes of its input artifacts and
the versions of the libraries it calls (the full hash: Olive keyed on 8 hex characters and hit a
collision). An entry is a folder `<cache>/<stage>/<key>/` holding the stage's output files and
`entry.json` (the stage's result plus each file's sha256). Entries are written into a temporary
folder and renamed into place, so a crash leaves no half entry; an entry whose files no longer
match their recorded hashes is treated as missing and rebuilt.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from edgeopt.hashing import sha256_file, sha256_json
from edgeopt.output_dir import remove_stale

ENTRY_FILE = "entry.json"
ENTRY_SCHEMA = 1  # with "tool": "edgeopt": how `cache clear` tells our entries from a user's files


def default_cache_dir() -> Path:
    """$EDGEOPT_CACHE, else the user cache folder ($XDG_CACHE_HOME or ~/.cache)/edgeopt."""
    if os.environ.get("EDGEOPT_CACHE"):
        return Path(os.environ["EDGEOPT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "edgeopt"


def cache_key(stage: str, params: dict, input_hashes: dict, libraries: dict) -> str:
    return sha256_json({"stage": stage, "params": params, "inputs": input_hashes, "libraries": libraries})


@dataclass
class CacheEntry:
    folder: Path
    result: dict
    files: dict[str, str]  # relative name -> sha256

    def path(self, name: str) -> Path:
        return self.folder / name


class StageCache:
    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = Path(root) if root else default_cache_dir()
        self.enabled = enabled
        self._scratch: list[Path] = []

    def lookup(self, stage: str, key: str) -> CacheEntry | None:
        """The entry for `key` if it exists and every file still matches its hash."""
        if not self.enabled:
            return None
        folder = self.root / stage / key
        try:
            record = json.loads((folder / ENTRY_FILE).read_text())
            for name, digest in record["files"].items():
                if sha256_file(folder / name) != digest:
                    raise ValueError(f"{name} changed")
        except (OSError, ValueError, KeyError, TypeError):
            shutil.rmtree(folder, ignore_errors=True)  # corrupt or partial: rebuild
            return None
        return CacheEntry(folder, record["result"], record["files"])

    def new_workdir(self, stage: str) -> Path:
        """A fresh folder for a stage to write its outputs into before `store`. Its name carries
        our pid, so the next run removes it if this process is killed."""
        base = self.root if self.enabled else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        remove_stale(base, ".work-")
        folder = Path(tempfile.mkdtemp(dir=base, prefix=f".work-{stage}-pid{os.getpid()}-"))
        if not self.enabled:
            self._scratch.append(folder)
        return folder

    def cleanup(self) -> None:
        """--no-cache: remove this run's scratch folders (the build directory holds copies)."""
        while self._scratch:
            shutil.rmtree(self._scratch.pop(), ignore_errors=True)

    def run_and_store(self, stage: str, key: str, work) -> CacheEntry:
        """Run `work(folder)` (returns the JSON result) in a fresh folder and seal it as the entry;
        the folder is removed when the work fails or is interrupted."""
        workdir = self.new_workdir(stage)
        try:
            result = work(workdir)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        return self.store(stage, key, workdir, result)

    def store(self, stage: str, key: str, workdir: Path, result: dict) -> CacheEntry:
        """Seal `workdir` as the entry for `key` (atomic rename); returns the entry."""
        files = {
            str(p.relative_to(workdir)): sha256_file(p)
            for p in sorted(workdir.rglob("*"))
            if p.is_file() and p.name != ENTRY_FILE
        }
        (workdir / ENTRY_FILE).write_text(json.dumps({"tool": "edgeopt", "schema": ENTRY_SCHEMA, "result": result,
                                                      "files": files}, indent=2, default=str))
        if not self.enabled:
            return CacheEntry(workdir, result, files)
        final = self.root / stage / key
        final.parent.mkdir(parents=True, exist_ok=True)
        # The first complete entry wins and is never replaced under a reader: rename() onto an
        # existing non-empty folder fails, and then we use theirs (same key = same inputs).
        try:
            os.rename(workdir, final)
        except OSError:
            existing = self.lookup(stage, key)
            if existing is None:  # theirs was damaged and has just been removed: ours takes its place
                try:
                    os.rename(workdir, final)
                    return CacheEntry(final, result, files)
                except OSError:
                    existing = self.lookup(stage, key)
            shutil.rmtree(workdir, ignore_errors=True)
            if existing is not None:
                return existing
            raise
        return CacheEntry(final, result, files)


def is_entry(folder: Path) -> bool:
    """A folder edgeopt sealed as a cache entry: `<stage>/<64 hex key>/entry.json` whose record
    says tool edgeopt and this schema (recognised by content, not by the file's name)."""
    from edgeopt.errors import BadInput
    from edgeopt.safe_io import read_json

    folder = Path(folder)
    if len(folder.name) != 64 or any(c not in "0123456789abcdef" for c in folder.name) or folder.is_symlink():
        return False
    try:
        record = read_json(folder / ENTRY_FILE, 64 << 20, "a cache entry record")
    except BadInput:
        return False
    return record.get("tool") == "edgeopt" and record.get("schema") == ENTRY_SCHEMA and isinstance(record.get("files"), dict)


def _entries(root: Path) -> list[tuple[Path, int, float]]:
    """(entry folder, bytes, last modified) of every complete entry under `root`."""
    out = []
    for record in Path(root).glob(f"*/*/{ENTRY_FILE}"):
        folder = record.parent
        if not is_entry(folder):  # a user's own entry.json: never ours to remove
            continue
        try:
            size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            out.append((folder, size, record.stat().st_mtime))
        except OSError:  # removed by another process meanwhile
            continue
    return out


def cache_info(root: Path | None = None) -> dict:
    """Entries and bytes per stage, for `edgeopt cache info`."""
    root = Path(root) if root else default_cache_dir()
    stages: dict[str, dict] = {}
    for folder, size, _ in _entries(root):
        stage = stages.setdefault(folder.parent.name, {"entries": 0, "bytes": 0})
        stage["entries"] += 1
        stage["bytes"] += size
    return {"path": str(root), "entries": sum(s["entries"] for s in stages.values()),
            "bytes": sum(s["bytes"] for s in stages.values()), "stages": stages}


def cache_clear(root: Path | None = None, max_size: int | None = None) -> dict:
    """Remove entries (oldest first) until the cache holds at most `max_size` bytes (None: all),
    and stale `.work-*` folders of dead processes. Each entry goes by one rename out of the way, so
    a reader sees a whole entry or none."""
    root = Path(root) if root else default_cache_dir()
    remove_stale(root, ".work-")
    entries = sorted(_entries(root), key=lambda e: e[2])
    total = sum(size for _, size, _ in entries)
    removed = freed = 0
    for folder, size, _ in entries:
        if max_size is not None and total - freed <= max_size:
            break
        trash = folder.with_name(f".trash-{folder.name}-pid{os.getpid()}")
        try:
            os.rename(folder, trash)
        except OSError:
            continue
        shutil.rmtree(trash, ignore_errors=True)
        removed += 1
        freed += size
    return {"path": str(root), "removed": removed, "freed_bytes": freed, "bytes": total - freed}
