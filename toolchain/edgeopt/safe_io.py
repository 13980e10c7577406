"""The one door through which edgeopt reads a user's file (issue 23).

Every user file (model metadata, profiles, baselines, package manifests, data, HF index files)
is opened here, so the same three rules hold everywhere:

- a regular file only: a FIFO, a device (/dev/zero, also through a symlink), a socket or a folder
  is refused with one line naming the path. The file is opened with O_NONBLOCK, so opening a FIFO
  never waits for a writer, and the type is checked on the open descriptor (no race with a swap);
- a size bound before parsing: a reader states how many bytes it will parse and a larger file is
  refused before one byte is read into memory (no multi-GB allocation, no abort);
- a path taken from a file (ONNX external data, HF shards, module paths, package manifest
  entries, symlinks in a package) must resolve inside the folder it came from.

Parse errors of json/yaml/UTF-8 become BadInput naming the file; exit 70 stays for bugs.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from edgeopt.errors import BadInput

KB, MB = 1 << 10, 1 << 20
# What a reader of each kind parses at most (a real file of that kind is far below).
PROFILE_LIMIT = 1 * MB  # a target profile or an edgeopt.yaml project
SMALL_JSON_LIMIT = 16 * MB  # metadata.json, configs, manifests, baselines, index files
LARGE_JSON_LIMIT = 256 * MB  # tokenizer.json of a large vocabulary
TEXT_LINE_LIMIT = 1 * MB  # one line of a text data file (jsonl / txt)


def _describe(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _oserror(path: Path, what: str, exc: OSError) -> BadInput:
    reason = exc.strerror or type(exc).__name__
    return BadInput(f"{path}: cannot read {what} ({reason})")


def check_regular(path: str | Path, what: str = "file") -> Path:
    """`path` if it is (or links to) a regular, readable file; else BadInput naming it. Never
    opens the file, so it never blocks (a FIFO is refused by its type)."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise BadInput(f"{path}: not found ({what})") from None
    except OSError as exc:
        raise _oserror(path, what, exc) from None
    if not stat.S_ISREG(mode):
        raise BadInput(f"{path}: {what} is {_describe(mode)}, not a regular file")
    return path


def open_regular(path: str | Path, what: str = "file", limit: int | None = None):
    """A binary file object of a regular file at most `limit` bytes; BadInput otherwise."""
    path = Path(path)
    check_regular(path, what)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise _oserror(path, what, exc) from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):  # swapped between stat and open
            raise BadInput(f"{path}: {what} is {_describe(info.st_mode)}, not a regular file")
        if limit is not None and info.st_size > limit:
            raise BadInput(f"{path}: {what} is {info.st_size / MB:.1f} MB; edgeopt reads at most "
                           f"{limit / MB:.0f} MB of it (is this the right file?)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | Path, limit: int, what: str = "file") -> bytes:
    with open_regular(path, what, limit) as handle:
        try:
            data = handle.read(limit + 1)
        except OSError as exc:
            raise _oserror(Path(path), what, exc) from None
    if len(data) > limit:  # grew while reading
        raise BadInput(f"{path}: {what} is larger than {limit / MB:.0f} MB; refused")
    return data


def read_text(path: str | Path, limit: int, what: str = "file") -> str:
    data = read_bytes(path, limit, what)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None


def read_json(path: str | Path, limit: int = SMALL_JSON_LIMIT, what: str = "this JSON file",
              expect: type | None = dict) -> Any:
    """The parsed JSON of `path` (a dict unless `expect` says otherwise); any parse error,
    including a nesting too deep for Python, is BadInput naming the file."""
    text = read_text(path, limit, what)
    try:
        value = json.loads(text)
    except RecursionError:
        raise BadInput(f"{path}: {what} is nested too deeply") from None
    except ValueError as exc:
        raise BadInput(f"{path}: {what} is not valid JSON ({exc})") from None
    if expect is not None and not isinstance(value, expect):
        raise BadInput(f"{path}: {what} must hold a JSON {'object' if expect is dict else expect.__name__}, "
                       f"not {type(value).__name__}")
    return value


def read_lines(path: str | Path, what: str = "this text file", line_limit: int = TEXT_LINE_LIMIT,
               limit: int | None = None):
    """The lines of a UTF-8 text file, each at most `line_limit` bytes (a 50 MB single line is
    refused after reading `line_limit` bytes of it, not allocated whole)."""
    with open_regular(path, what, limit) as handle:
        number = 0
        while True:
            raw = handle.readline(line_limit + 1)
            if not raw:
                return
            number += 1
            if len(raw) > line_limit and not raw.endswith(b"\n"):
                raise BadInput(f"{path}: line {number} of {what} is longer than {line_limit // KB} KB; refused")
            try:
                yield raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as exc:
                raise BadInput(f"{path}: line {number} of {what} is not UTF-8 (byte {exc.start})") from None


def inside(folder: str | Path, name: str | os.PathLike, what: str = "a path", source: str | Path | None = None) -> Path:
    """`folder / name`, resolved, if it stays inside `folder` (no `..`, no absolute path, no
    symlink leading out); else BadInput naming the file the path came from."""
    folder = Path(folder)
    text = os.fspath(name)
    where = source if source is not None else folder
    if not text or "\0" in text:
        raise BadInput(f"{where}: {what} '{text}' is empty or holds a NUL byte")
    try:
        root = folder.resolve(strict=False)
        target = (folder / text).resolve(strict=False)
    except (OSError, RuntimeError) as exc:
        raise BadInput(f"{where}: {what} '{text}' cannot be resolved ({exc})") from None
    if Path(text).is_absolute() or not target.is_relative_to(root):
        raise BadInput(f"{where}: {what} '{text}' leads outside {folder}; refused (a path named in a file "
                       "must stay inside the folder it came from)")
    return target


def links_leaving(folder: str | Path) -> list[Path]:
    """Every symlink under `folder` whose target resolves outside it (or loops)."""
    folder = Path(folder)
    root = folder.resolve()
    out = []
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            entry = Path(base) / name
            if entry.is_symlink():
                try:
                    target = entry.resolve(strict=False)
                except (OSError, RuntimeError):
                    out.append(entry)
                    continue
                if not target.is_relative_to(root):
                    out.append(entry)
    return out
