"""Look inside a torch.export `.pt2` archive before torch opens it (issue 23).

Unpickling runs code the file chose (a `__reduce__` payload), and a `.pt2` has several parts
torch may unpickle: the weights and constants when their `*_config.json` says `use_pickle`,
legacy `serialized_*.pt` members, `*.pkl` members, and the sample inputs (`sample_inputs/*.pt`,
itself a zip holding `data.pkl`). Checking only the weights' config let payloads in the sample
inputs, a legacy weights file and an opaque constant run.

So every member is classified without executing anything (zipfile + the standard library's
`pickletools.genops`, a parser that never imports or calls):

- a member that is a pickle (named `.pkl`, or a byte stream that parses as a pickle), or a zip
  holding one, may only name the globals a plain tensor container needs (`_ALLOWED`, the set
  torch's own `weights_only` loader starts from); any other global (`os.system`,
  `pathlib.Path.touch`, `builtins.eval`, ...) refuses the archive;
- a weight or constant marked `use_pickle`, and the legacy `serialized_*` members, are refused
  outright (they hold whole pickled objects);
- archives nested deeper than one level, or members too large to inspect, are refused.

torch.export.save of a current torch writes raw tensor bytes and a sample-input pickle of
tensors only, so what edgeopt's own prune stage writes passes.
"""

from __future__ import annotations

import io
import json
import pickletools
import zipfile
from pathlib import Path

from edgeopt.errors import BadInput, cause_text

# module.name pairs a tensor-only pickle needs (torch.save of tensors / tuples / dicts of tensors)
_ALLOWED = {
    ("collections", "OrderedDict"),
    ("torch._utils", "_rebuild_tensor_v2"),
    ("torch._utils", "_rebuild_tensor"),
    ("torch._utils", "_rebuild_parameter"),
    ("torch", "Size"),
    ("torch", "device"),
    ("torch.storage", "UntypedStorage"),
    ("torch.serialization", "_get_layout"),
    ("torch", "strided"),
}
_ALLOWED_STORAGES = {f"{kind}Storage" for kind in (
    "Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte", "Bool",
    "ComplexFloat", "ComplexDouble", "Untyped")}
_LEGACY = ("serialized_state_dict.pt", "serialized_constants.pt", "serialized_example_inputs.pt")
_INSPECT_LIMIT = 64 << 20  # a pickle of tensor metadata is kilobytes; a bigger one is not read
_PICKLE_SUFFIXES = (".pkl", ".pickle")


def pickle_globals(data: bytes) -> list[tuple[str, str]] | None:
    """The (module, name) globals a pickle stream imports, found without running it; None if
    `data` is not a (complete) pickle."""
    found: list[tuple[str, str]] = []
    strings: list[str] = []  # recent string pushes, for STACK_GLOBAL
    memo: dict[int, str] = {}
    try:
        for opcode, arg, _ in pickletools.genops(data):
            name = opcode.name
            if name in ("GLOBAL", "INST"):
                module, _, attr = str(arg).partition(" ")
                found.append((module, attr))
            elif name == "STACK_GLOBAL":
                found.append((strings[-2], strings[-1]) if len(strings) >= 2 else ("?", "?"))
            elif name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
                          "BINSTRING", "SHORT_BINSTRING"):
                strings.append(str(arg))
            elif name in ("BINPUT", "LONG_BINPUT", "PUT") and strings:
                memo[int(arg)] = strings[-1]
            elif name == "MEMOIZE" and strings:
                memo[len(memo)] = strings[-1]
            elif name in ("BINGET", "LONG_BINGET", "GET"):
                if int(arg) in memo:
                    strings.append(memo[int(arg)])
            elif name in ("OBJ", "NEWOBJ", "NEWOBJ_EX", "EXT1", "EXT2", "EXT4"):
                found.append(("?", name))  # builds an object from a class on the stack
            if name == "STOP":
                return found
    except (ValueError, IndexError, KeyError, TypeError, UnicodeDecodeError, EOFError):
        return None
    return None


def _disallowed(globals_: list[tuple[str, str]]) -> list[str]:
    bad = []
    for module, name in globals_:
        if (module, name) in _ALLOWED or (module == "torch" and name in _ALLOWED_STORAGES):
            continue
        bad.append(f"{module}.{name}")
    return bad


def _looks_like_pickle(data: bytes) -> bool:
    return data[:1] == b"\x80" and data[1:2] in (bytes([v]) for v in range(2, 6))


def inspect_member(label: str, data: bytes, depth: int = 0) -> str | None:
    """Why the member must not be opened by torch, or None if it is safe."""
    if data[:4] == b"PK\x03\x04":  # a nested zip (torch.save's format): inspect its pickles
        if depth >= 1:
            return f"{label}: an archive nested inside an archive"
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as inner:
                for info in inner.infolist():
                    if info.file_size > _INSPECT_LIMIT:
                        if info.filename.endswith(_PICKLE_SUFFIXES):
                            return f"{label}/{info.filename}: a pickle too large to inspect"
                        continue
                    why = inspect_member(f"{label}/{info.filename}", inner.read(info), depth + 1)
                    if why:
                        return why
        except (zipfile.BadZipFile, OSError, ValueError, NotImplementedError, EOFError) as exc:
            return f"{label}: an unreadable nested archive ({cause_text(exc, 80)})"
        return None
    named_pickle = label.endswith(_PICKLE_SUFFIXES)
    if not named_pickle and not _looks_like_pickle(data):
        return None
    found = pickle_globals(data)
    if found is None:
        return f"{label}: an unparseable pickle" if named_pickle else None
    bad = _disallowed(found)
    return f"{label}: a pickle that calls {bad[0]}" if bad else None


def check_pt2(path: Path, trust_pickle: bool = False) -> None:
    """Refuse a `.pt2` before torch opens it if any part would run code when torch loads it."""
    from edgeopt.safe_io import check_regular

    path = check_regular(path, "the .pt2 model")
    reasons: list[str] = []
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            names = [i.filename for i in infos]
            if not any(n.endswith("archive_format") for n in names) or not any("/models/" in n for n in names):
                raise BadInput(f"{path}: not a torch.export archive (no archive_format or models/ in the zip)")
            for info in infos:
                name = info.filename
                if name.endswith(_LEGACY):
                    reasons.append(f"{name}: a legacy pickled part")
                    continue
                if name.endswith("_config.json"):
                    if info.file_size > _INSPECT_LIMIT:
                        reasons.append(f"{name}: too large to inspect")
                        continue
                    config = json.loads(archive.read(info))
                    entries = config.get("config", {}) if isinstance(config, dict) else {}
                    reasons += [f"{name}:{key}: marked use_pickle" for key, entry in entries.items()
                                if isinstance(entry, dict) and entry.get("use_pickle")]
                    continue
                if info.file_size > _INSPECT_LIMIT:
                    if name.endswith(_PICKLE_SUFFIXES + (".pt", ".pth")):
                        reasons.append(f"{name}: a pickle too large to inspect")
                    continue  # raw tensor bytes: never unpickled unless marked use_pickle
                with archive.open(info) as handle:
                    head = handle.read(4)
                if head[:1] != b"\x80" and head != b"PK\x03\x04" and not name.endswith(_PICKLE_SUFFIXES):
                    continue
                why = inspect_member(name, archive.read(info))
                if why:
                    reasons.append(why)
    except BadInput:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, AttributeError, NotImplementedError, EOFError,
            RecursionError) as exc:
        raise BadInput(f"{path}: not a torch.export archive ({cause_text(exc, 160)})") from None
    if reasons and not trust_pickle:
        raise BadInput(f"{path}: holds pickled parts ({reasons[0]}); loading them runs code stored in the file. "
                       "Re-export with torch.export.save from a current torch, or pass --trust-pickle "
                       "if you trust where this file came from")
