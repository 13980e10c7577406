"""edgeopt: a fine-tuned model to a validated INT8 artifact for one edge device, in one command.

The Python API (edgeopt.api) is importable from here: `edgeopt.build(...)`, `edgeopt.plan(...)`,
`edgeopt.target(name)`; `edgeopt.targets` is the profile module (`load_all`, `resolve`). Imports
are lazy so that `import edgeopt` stays cheap.
"""

from edgeopt.version import __version__  # noqa: F401

_API = ("build", "plan", "target", "BuildOptions", "BuildResult")


def __getattr__(name: str):
    if name in _API:
        from edgeopt import api

        return getattr(api, name)
    raise AttributeError(f"module 'edgeopt' has no attribute {name!r}")
