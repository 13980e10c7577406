"""Progress inside a long stage (issue 21, item 6): calibration samples, candidates built and
timed, fallback-search steps.

Code deep inside a stage calls `step(done, total, label)`; while the pipeline runs that stage it
routes each step to its progress callback as `("step", stage, {"done", "total", "label"})`
(pipeline.Progress), which the CLI draws (a bar with fraction and ETA on a terminal, a plain line
now and then otherwise). A context variable carries the route, so the quantization helpers need
no callback parameter threaded through every signature; outside a pipeline (a direct call, a
test, a benchmark) `step` does nothing. `total` may be None where the number of steps is not
known in advance (the fallback search bisects). Dependency-free: any module may call it.
"""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator, Optional

Reporter = Callable[[int, Optional[int], str], None]  # (done, total, label)

_reporter: ContextVar[Reporter | None] = ContextVar("edgeopt_progress", default=None)


def step(done: int, total: int | None, label: str) -> None:
    """`done` of `total` units of `label` are finished (cheap: call it per sample if need be)."""
    reporter = _reporter.get()
    if reporter is not None:
        reporter(done, total, label)


@contextmanager
def reporting(reporter: Reporter) -> Iterator[None]:
    """Send every `step` made inside the block to `reporter`."""
    token = _reporter.set(reporter)
    try:
        yield
    finally:
        _reporter.reset(token)
