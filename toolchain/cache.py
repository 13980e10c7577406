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

from edgeopt.artifacts import sha256_file, sha256_json

ENTRY_FILE = "entry.json"


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
        """A fresh folder for a stage to write its outputs into before `store`."""
        base = self.root if self.enabled else Path(tempfile.gettempdir())
        base.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=base, prefix=f".work-{stage}-"))

    def store(self, stage: str, key: str, workdir: Path, result: dict) -> CacheEntry:
        """Seal `workdir` as the entry for `key` (atomic rename); returns the entry."""
        files = {
            str(p.relative_to(workdir)): sha256_file(p)
            for p in sorted(workdir.rglob("*"))
            if p.is_file() and p.name != ENTRY_FILE
        }
        (workdir / ENTRY_FILE).write_text(json.dumps({"result": result, "files": files}, indent=2, default=str))
        if not self.enabled:
            return CacheEntry(workdir, result, files)
        final = self.root / stage / key
        final.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(final, ignore_errors=True)
        try:
            os.replace(workdir, final)
        except OSError:  # another process stored the same key first; theirs is as good
            shutil.rmtree(workdir, ignore_errors=True)
        return CacheEntry(final, result, files)
