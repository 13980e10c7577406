"""One notion of "written by edgeopt" (issue 23): a folder or file edgeopt may replace or delete.

A user's folder holding a file named like edgeopt's manifest (a web app's), a cache folder that is really a
project, a `docs/report.md` of the user's own: each was replaced or deleted because edgeopt
recognised its outputs by a file *name*. Now an output is edgeopt's only when it carries
edgeopt's own record, checked by content:

- a build folder: its manifest is a JSON object with edgeopt's `schema_version` (an int) and the
  `"edgeopt"` tool key (a version string), as `build_dir.new_manifest` writes it;
- anything else edgeopt writes into a user-named place (a cache entry, a report folder): a small
  marker file `.edgeopt-owned.json` = {"tool": "edgeopt", "schema": 1, "kind": <kind>}.

Markers are read through safe_io (regular file, size bound), so a FIFO named like one never hangs.
"""

from __future__ import annotations

from pathlib import Path

from edgeopt.errors import BadInput

MARKER = ".edgeopt-owned.json"
MARKER_SCHEMA = 1
_MARKER_LIMIT = 64 << 10


def _manifest_is_ours(value: object) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("schema_version"), int)
            and isinstance(value.get("edgeopt"), str) and bool(value.get("edgeopt")))


def is_edgeopt_build(folder: Path, manifest_name: str) -> bool:
    """True if `folder` holds a manifest edgeopt wrote (schema_version and the edgeopt key)."""
    from edgeopt.safe_io import read_json

    path = Path(folder) / manifest_name
    if path.is_symlink() or not path.is_file():
        return False
    try:
        return _manifest_is_ours(read_json(path, 16 << 20, "the build manifest"))
    except BadInput:
        return False


def mark(folder: Path, kind: str) -> None:
    """Record that edgeopt wrote `folder` (as `kind`); atomic."""
    import json
    import os
    import tempfile

    # written here, not through build_dir (which calls this module): no import cycle
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{MARKER}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump({"tool": "edgeopt", "schema": MARKER_SCHEMA, "kind": kind}, handle)
        os.replace(tmp, Path(folder) / MARKER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_marked(folder: Path, kind: str) -> bool:
    """True if `folder` carries edgeopt's marker of this kind."""
    from edgeopt.safe_io import read_json

    path = Path(folder) / MARKER
    if path.is_symlink() or not path.is_file():
        return False
    try:
        value = read_json(path, _MARKER_LIMIT, "edgeopt's marker")
    except BadInput:
        return False
    return value.get("tool") == "edgeopt" and value.get("schema") == MARKER_SCHEMA and value.get("kind") == kind


def check_may_write(folder: Path, names: list[str], kind: str, option: str) -> None:
    """Refuse to overwrite any of `names` in `folder` unless edgeopt marked the folder as its own."""
    folder = Path(folder)
    existing = [n for n in names if (folder / n).exists() or (folder / n).is_symlink()]
    if existing and not is_marked(folder, kind):
        raise BadInput(f"{folder / existing[0]}: already exists and was not written by edgeopt; it is never "
                       f"overwritten (choose another {option} or move the file)")
