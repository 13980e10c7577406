"""A build leaves no global state behind: environment, logger levels, imported user modules."""

from __future__ import annotations

import logging
import os
import sys

import pytest

from edgeopt import api
from edgeopt.contained import LOGGERS, contained


def _state():
    return (dict(os.environ), {n: logging.getLogger(None if n == "root" else n).level for n in LOGGERS},
            {n for n in sys.modules if n.startswith("edgeopt_user_model_")})


def test_contained_restores_what_libraries_change():
    before = _state()
    with contained():
        os.environ["HF_HUB_OFFLINE"] = "1"
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        sys.modules["edgeopt_user_model_x"] = sys  # what a factory import leaves
    assert _state() == before


@pytest.mark.slow
def test_a_factory_build_leaves_the_process_as_it_was(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = _state()
    result = api.build(out=tmp_path / "b", use_cache=False, latency_seconds=0.1)  # the bundled file.py:factory
    assert result.status == "ok"
    assert _state() == before
