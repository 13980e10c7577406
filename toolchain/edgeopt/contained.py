"""A build leaves the process as it found it.

Libraries edgeopt drives change process-wide state: Hugging Face reads HF_HUB_OFFLINE from the
environment, the exporters are quieted through logger levels, and a `file.py:factory` model is
imported as a module. A Python caller (a notebook, a release script building many models) must
not inherit any of that, so `contained()` snapshots what a build may touch and restores it.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import contextmanager
from typing import Iterator

ENVIRONMENT = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM", "TORCHINDUCTOR_CACHE_DIR")
LOGGERS = ("torch.onnx", "torch.export", "optimum", "transformers", "onnxruntime", "onnxscript", "root")
USER_MODULE_PREFIX = "edgeopt_user_model_"


@contextmanager
def contained() -> Iterator[None]:
    environment = {name: os.environ.get(name) for name in ENVIRONMENT}
    levels = {name: logging.getLogger(None if name == "root" else name).level for name in LOGGERS}
    modules = set(sys.modules)
    try:
        yield
    finally:
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        for name, level in levels.items():
            logging.getLogger(None if name == "root" else name).setLevel(level)
        for name in set(sys.modules) - modules:
            if name.startswith(USER_MODULE_PREFIX):
                del sys.modules[name]
