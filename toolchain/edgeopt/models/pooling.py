"""An encoder plus its pooling as one torch module, so the exported ONNX outputs the sentence
embedding itself (what sentence-transformers users consume), not per-token hidden states that
every caller would have to pool, and pool the same way, on the device."""

from __future__ import annotations

import torch


class PooledEncoder(torch.nn.Module):
    """`encoder(...)[0]` pooled over the tokens the attention mask keeps: mean, CLS or max."""

    def __init__(self, encoder: torch.nn.Module, pooling: str = "mean", normalize: bool = False):
        super().__init__()
        if pooling not in ("mean", "cls", "max"):
            raise ValueError(f"pooling {pooling!r}: expected mean, cls or max")
        self.encoder = encoder
        self.config = encoder.config  # optimum's exporter reads model.config
        self.pooling = pooling
        self.normalize = normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        kwargs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:  # DistilBERT's forward has no token_type_ids at all
            kwargs["token_type_ids"] = token_type_ids
        tokens = self.encoder(**kwargs)[0]
        mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
        if self.pooling == "cls":
            pooled = tokens[:, 0]
        elif self.pooling == "max":
            pooled = tokens.masked_fill(mask == 0, torch.finfo(tokens.dtype).min).max(dim=1).values
        else:
            pooled = (tokens * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        if self.normalize:
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return {"sentence_embedding": pooled}
