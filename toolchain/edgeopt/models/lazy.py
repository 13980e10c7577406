"""The model as a torch module, loaded on first use and kept for the build.

Stages that need torch (load on a cache miss, prune, export) share one `LazyModel`, so the
user's module is loaded once; a fully cached build never calls `module()` and never imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from edgeopt.models.source import ModelSource


@dataclass(frozen=True)
class HuggingFaceInput:
    """A Hugging Face folder's layout (checked on every build) and the sequence length texts use."""

    layout: object  # models.huggingface.Layout
    seq_len: int


class LazyModel:
    def __init__(self, source: ModelSource, hf: HuggingFaceInput | None = None, trust_remote_code: bool = False,
                 trust_pickle: bool = False):
        self.source = source
        self.hf = hf
        self.trust_remote_code = trust_remote_code
        self.trust_pickle = trust_pickle  # a .pt2 with pickled parts is refused unless the user asked
        self._module = None

    def module(self):
        if self._module is None:
            if self.hf is not None:
                from edgeopt.models import huggingface

                self._module = huggingface.load_model(self.hf.layout, self.trust_remote_code)
            else:
                from edgeopt.models import torch_loader

                self._module = torch_loader.load_module(self.source, self.trust_pickle)
        return self._module


def pruned_source(original: ModelSource, path: Path, sha256: str) -> ModelSource:
    """The prune stage's `.pt2` as the model the export stage takes (edgeopt wrote it: no pickle)."""
    return ModelSource("pt2", str(path), original.name, [path], metadata=original.metadata, sha256=sha256,
                       options={"pruned": True})


def huggingface_input(source: ModelSource, *, trust_remote_code: bool, task: str | None, seq_len: int | None,
                      profile_seq_len: int) -> HuggingFaceInput | None:
    """For a Hugging Face folder: check it on every build (cached or not, so remote code never
    slips through a cache hit) and fix the sequence length its texts are tokenized to."""
    if source.kind != "huggingface":
        return None
    from edgeopt.models import huggingface

    layout = huggingface.check_folder(source.files[0], trust_remote_code, task)
    return HuggingFaceInput(layout, huggingface.sequence_length(layout, seq_len, profile_seq_len))
