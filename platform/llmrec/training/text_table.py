"""Text embeddings of a fixed list of texts that a tuned text encoder keeps up to date.

The sequential design reads the catalogue's and the requests' text embeddings from such a
table (:class:`llmrec.training.sequential.SequenceObjective`): constant when the encoder is
frozen (``model.text_tuning: frozen``); with an adapter to tune, the rows a batch asks for
are re-encoded with gradient and written back, and the whole table is re-encoded before
evaluation or export (:meth:`TextTable.refresh`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from llmrec.modeling.scorer import LLMScorer


class TextTable(nn.Module):
    """Text embeddings of a fixed list of texts: a cache, with rows re-encoded on request.

    Without an encoder (``model.text_tuning: frozen``) it is a constant table. With one, a
    call re-encodes up to ``budget`` of the asked rows with gradient (so the adapter learns)
    and writes them back into the cache.
    """

    cache: torch.Tensor

    def __init__(
        self,
        texts: Sequence[str],
        cache: np.ndarray,
        encoder: LLMScorer | None = None,
        kind: str = "item",
        budget: int = 64,
    ) -> None:
        super().__init__()
        self.texts = list(texts)
        # a copy: the driver's array arrives read-only from the object store, and a tuned
        # encoder writes re-encoded rows into the cache
        self.register_buffer("cache", torch.tensor(np.asarray(cache, dtype=np.float32)))
        self.encoder = encoder
        self.kind = kind
        self.budget = budget

    def forward(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        cache = self.cache
        if self.encoder is None or rows is None or not self.training:
            return cache
        rows = rows.unique()
        rows = rows[rows >= 0]
        if len(rows) > self.budget:
            rows = rows[torch.randperm(len(rows), device=rows.device)[: self.budget]]
        if len(rows) == 0:
            return cache
        texts = [self.texts[int(r)] for r in rows]
        fresh = (
            self.encoder.embed_items(texts)
            if self.kind == "item"
            else self.encoder.embed_queries(texts)
        )
        with torch.no_grad():
            cache[rows] = fresh.detach().to(cache.dtype)
        return cache.index_put((rows,), fresh.to(cache.dtype))

    @torch.no_grad()
    def refresh(self, batch_size: int = 128) -> None:
        """Re-encode every text with the current encoder (before evaluation or export)."""
        if self.encoder is not None and self.texts:
            self.cache.copy_(
                self.encoder.encode(self.texts, kind=self.kind, batch_size=batch_size).to(
                    self.cache.device
                )
            )


__all__ = ["TextTable"]
