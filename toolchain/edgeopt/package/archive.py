"""Package archives: extraction that never writes outside its folder.

Refused: absolute paths, `..`, links and device files; tarfile's `data` filter is applied on top
where Python has it. Limits on total size and file count stop a decompression bomb before it
fills the disk, and extraction goes into a fresh folder that is renamed into place: an existing
folder is never merged into or overwritten.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

from edgeopt.errors import BadInput, cause_text

MAX_TOTAL_BYTES = 8 << 30  # an engine plus ONNX files; far above any real package
MAX_FILES = 10_000


def safe_extract(archive: Path, dest: Path, max_bytes: int = MAX_TOTAL_BYTES, max_files: int = MAX_FILES) -> None:
    """Extract a .tar.gz into the new folder `dest` (which must not exist), refusing members that
    leave it, links, special files, and archives over `max_bytes` or `max_files`."""
    dest = Path(dest).resolve()
    if dest.exists() or dest.is_symlink():
        raise BadInput(f"{dest}: already exists; edgeopt extracts a package only into a new folder "
                       "(remove or rename it first)")
    staging = None
    try:
        with tarfile.open(archive, "r:*") as tar:
            members, total = [], 0
            for member in tar:  # streamed: a bomb is stopped at the limit, not after reading it all
                path = PurePosixPath(member.name)
                if path.is_absolute() or ".." in path.parts:
                    raise BadInput(f"{archive}: member '{member.name}' would be written outside {dest}")
                if not (member.isfile() or member.isdir()):
                    raise BadInput(f"{archive}: member '{member.name}' is a link or special file; refused")
                if not (dest / member.name).resolve().is_relative_to(dest):
                    raise BadInput(f"{archive}: member '{member.name}' would be written outside {dest}")
                members.append(member)
                total += member.size
                if len(members) > max_files:
                    raise BadInput(f"{archive}: more than {max_files} files; refused (not an edgeopt package?)")
                if total > max_bytes:
                    raise BadInput(f"{archive}: unpacks to more than {max_bytes >> 20} MB; refused "
                                   "(not an edgeopt package?)")
            dest.parent.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.extract-pid{os.getpid()}-"))
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, members=members, filter="data")
            else:  # Python < 3.11.4: the checks above are the filter
                tar.extractall(staging, members=members)
        os.rename(staging, dest)  # fails if dest appeared meanwhile: never merged
        staging = None
    except FileExistsError:
        raise BadInput(f"{dest}: appeared while extracting; refused to merge into it") from None
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise BadInput(f"{archive}: not a readable .tar.gz package ({cause_text(exc, 200)})") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
