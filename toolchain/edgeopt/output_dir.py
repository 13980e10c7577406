"""--out and the staging folder: what edgeopt may replace, checks before any work, and the atomic
swap of a finished build into place (a crash or Ctrl-C never leaves a half-written build)."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from edgeopt.build_dir import LAYOUT
from edgeopt.errors import BadInput, CannotWrite


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def remove_stale(folder: Path, prefix: str) -> None:
    """Remove `<prefix>*-pid<N>-*` folders in `folder` whose process N is gone (a killed run)."""
    try:
        candidates = list(Path(folder).glob(f"{prefix}*"))
    except OSError:
        return
    for path in candidates:
        marker = path.name.split("-pid", 1)
        pid = marker[1].split("-", 1)[0] if len(marker) == 2 else ""
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _check_writable_dir(folder: Path, what: str, option: str) -> None:
    """`folder` (or its nearest existing ancestor) is a writable folder, checked by writing."""
    probe = Path(folder)
    try:
        probe.resolve(strict=False)
    except (RuntimeError, OSError) as exc:  # a symlink loop
        raise BadInput(f"{folder}: {what} cannot be resolved ({exc.__class__.__name__}: {exc}); choose another {option}") from None
    while not probe.exists() and not probe.is_symlink():
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.is_symlink() and not probe.exists():
        raise BadInput(f"{folder}: {what} goes through a broken symlink ({probe}); choose another {option}")
    if not probe.is_dir():
        raise BadInput(f"{folder}: {what} is under {probe}, which is a file, not a folder; choose another {option}")
    try:
        fd, tmp = tempfile.mkstemp(dir=probe, prefix=".edgeopt-write-check-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise CannotWrite(f"{folder}: {what} is not writable ({exc.strerror or exc}); choose another {option}") from None


def is_replaceable(out: Path) -> bool:
    """An edgeopt build (manifest present) or an empty folder: the only things --out replaces."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return True
    if out.is_symlink() or not out.is_dir():
        return False
    if (out / LAYOUT.manifest).exists():
        from edgeopt.ownership import is_edgeopt_build

        return is_edgeopt_build(out, LAYOUT.manifest)  # edgeopt's manifest by content, not by name
    return not any(out.iterdir())


def check_output_locations(out: Path, cache_dir: Path | None, force: bool = False) -> None:
    """Before the first stage: --out may be replaced (or --force) and is writable; the cache folder
    is writable. Also removes stale `.build.partial-*` siblings left by killed runs."""
    out = Path(out)
    _check_writable_dir(out.parent if out.name else out, "the build directory's parent (--out)", "--out")
    if out.exists() and not out.is_dir():
        raise BadInput(f"{out}: --out is an existing file; edgeopt writes a build folder there and never "
                       "replaces a file (choose another --out)")
    if not force and not is_replaceable(out):
        raise BadInput(f"{out}: --out is a folder that is not an edgeopt build (no {LAYOUT.manifest} written by edgeopt) and not "
                       "empty; edgeopt would replace its contents. Choose another --out, or pass --force")
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        if cache_dir.exists() and not cache_dir.is_dir():
            raise BadInput(f"{cache_dir}: the cache folder (--cache-dir / EDGEOPT_CACHE) is a file")
        _check_writable_dir(cache_dir, "the cache folder (--cache-dir / EDGEOPT_CACHE)", "--cache-dir")
    remove_stale(out.resolve().parent, f".{out.resolve().name}.partial-")


@contextmanager
def staged_directory(final: Path, force: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; on success it replaces `final`, on failure it is removed.
    Only an edgeopt build or an empty folder is replaced (unless `force`): never a user's folder."""
    final = Path(final).resolve()
    if final.exists() and not final.is_dir():
        raise BadInput(f"{final}: --out is an existing file")
    if not force and not is_replaceable(final):
        raise BadInput(f"{final}: --out is not an edgeopt build and not empty; pass --force to replace it")
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.partial-pid{os.getpid()}-"))
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
