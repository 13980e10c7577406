"""The errors edgeopt reports to a user, each with the exit code DESIGN.md assigns.

The CLI prints `str(error)` as one line on stderr and exits with `error.exit_code`; library
callers catch `EdgeoptError`. Anything else escaping the library is a bug and keeps its traceback.
"""


class EdgeoptError(Exception):
    exit_code = 2


class BadInput(EdgeoptError):
    """The user's file, option, profile or data is wrong (exit 2)."""

    exit_code = 2


class MissingEnvironment(EdgeoptError):
    """This host lacks something the command needs, such as TensorRT (exit 3)."""

    exit_code = 3
