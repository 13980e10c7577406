"""The errors edgeopt reports to a user, each with the exit code DESIGN.md assigns, and the one
helper (`user_line`) that turns any exception into the line the user sees.

Exit codes: 2 bad input (the user's file/option/data is wrong); 3 this host lacks something;
4 a tool (exporter, TensorRT, ONNX Runtime) failed on valid input (never blamed on the input);
74 an output location could not be written (disk full, read-only); 70 a bug in edgeopt.
"""

from __future__ import annotations

import errno

EXIT_TOOL_FAILED = 4
EXIT_CANNOT_WRITE = 74  # sysexits EX_IOERR
EXIT_INTERNAL = 70

# Lines exporters print as a banner above the real cause; never the line we show.
_BANNER_PREFIXES = ("failed to export", "an error occurred", "the above exception", "traceback",
                    "for more information", "exception raised from", "while executing", "----")


class EdgeoptError(Exception):
    exit_code = 2


class BadInput(EdgeoptError):
    """The user's file, option, profile or data is wrong (exit 2)."""

    exit_code = 2


class MissingEnvironment(EdgeoptError):
    """This host lacks something the command needs, such as TensorRT (exit 3)."""

    exit_code = 3


# import name -> the install line that provides it (optional extras and peer tools)
INSTALL_LINES = {
    "torch_pruning": "pip install torch-pruning",
    "transformers": "pip install 'edgeopt[hf]'",
    "optimum": "pip install 'edgeopt[hf]'",
    "tokenizers": "pip install 'edgeopt[hf]'",
    "safetensors": "pip install 'edgeopt[hf]'",
    "PIL": "pip install pillow",
    "onnxconverter_common": "pip install onnxconverter-common",
    "skimage": "pip install scikit-image",
}


def missing_package(error: BaseException) -> MissingEnvironment | None:
    """A ModuleNotFoundError for a package outside edgeopt as exit 3 with the exact install line
    (never an internal error); None for edgeopt's own modules (a bug, not the environment)."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    top = error.name.split(".")[0]
    if top == "edgeopt":
        return None
    line = INSTALL_LINES.get(top, f"pip install {top.replace('_', '-')}")
    return MissingEnvironment(f"the Python package '{top}' is not installed: {line}")


class ToolFailed(EdgeoptError):
    """A library edgeopt calls failed on input that passed edgeopt's checks (exit 4)."""

    exit_code = EXIT_TOOL_FAILED


class CannotWrite(EdgeoptError):
    """An output location is full, read-only or not a folder (exit 74)."""

    exit_code = EXIT_CANNOT_WRITE


def root_cause(exc: BaseException) -> BaseException:
    """The innermost exception of the __cause__/__context__ chain (what actually failed)."""
    seen = set()
    while id(exc) not in seen:
        seen.add(id(exc))
        nxt = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if nxt is None:
            break
        exc = nxt
    return exc


def chain(exc: BaseException) -> list[BaseException]:
    """exc and every exception it was raised from or during, outermost first."""
    out, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        out.append(exc)
        exc = exc.__cause__ or exc.__context__
    return out


def cause_text(exc: BaseException, limit: int = 300) -> str:
    """One line saying what failed: the most specific line of the root cause's message, not a
    banner. torch.export guard failures keep the guard text."""
    cause = root_cause(exc)
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    guard = [line for line in lines if "guard" in line.lower() or line.lower().startswith(("constraint", "-"))]
    useful = [line for line in lines if not line.lower().startswith(_BANNER_PREFIXES)]
    line = (guard or useful or lines or [""])[0]
    name = type(cause).__name__
    text = f"{name}: {line}" if line else name
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_disk_full(exc: BaseException) -> bool:
    cause = root_cause(exc)
    return any(isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
               for e in (exc, cause))


def user_line(exc: BaseException) -> tuple[str, int]:
    """(the one stderr line, the exit code) for any exception escaping a command."""
    if any(isinstance(e, KeyboardInterrupt) for e in chain(exc)):
        return "edgeopt: interrupted", 130
    if isinstance(exc, EdgeoptError):
        return f"edgeopt: error: {exc}", exc.exit_code
    if is_disk_full(exc):
        cause = root_cause(exc)
        named = [getattr(e, "filename", None) for e in chain(exc)] + [getattr(e, "filename2", None) for e in chain(exc)]
        where = next((str(n) for n in named if n), None) or getattr(exc, "edgeopt_location", None) or "an output location"
        return (f"edgeopt: error: cannot write {where}: {cause_text(exc)} (free space or choose another "
                "--out/--cache-dir)", EXIT_CANNOT_WRITE)
    if isinstance(exc, MemoryError):
        return "edgeopt: error: out of memory (reduce --size, --calib-samples or the batch)", EXIT_TOOL_FAILED
    return (f"edgeopt: internal error: {cause_text(exc)} (rerun with --debug for the traceback)", EXIT_INTERNAL)
