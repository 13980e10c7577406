"""Where the data the wheel carries lives: the device profiles and the bundled example.

`toolchain/_shipped/` holds symlinks to the repository's `targets/`, `examples/digits/` and
`calibration/`; a wheel build copies their contents, so the same path works installed or not.
"""

from pathlib import Path

_SHIPPED = Path(__file__).resolve().parent / "_shipped"


def shipped(relative: str) -> Path:
    """Path of a shipped data file or folder, e.g. `shipped("targets")`."""
    return _SHIPPED / relative
