"""Serving logic as plain classes (Ray Serve wraps them in ``serve_deployments``).

The work of a request is split the way the scoring graph is: :class:`QueryBuilder` turns a
request into text and the items to mask (cheap, at the edge), :class:`QueryEncoder` runs the
language model (the expensive, batchable part), :class:`CandidateRanker` finds the best items
for an embedding among the precomputed item embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llmrec.bundle import ModelBundle
from llmrec.data.text import render_user
from llmrec.serving.schemas import RecommendedItem, RecommendRequest


class RequestError(ValueError):
    """A request that cannot be served as asked; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Query:
    """A request resolved against the model version: text to encode and items to mask."""

    text: str
    exclude: tuple[str, ...]


class QueryBuilder:
    """Resolves users and histories against one model version's catalogue and logs."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.catalogue = bundle.catalogue
        self.histories = bundle.histories
        self.max_history = bundle.config.data.max_history

    def build(self, req: RecommendRequest) -> Query:
        """Raises RequestError 404 for an unknown user, 422 for unknown items in a history."""
        if req.user_id is not None:
            if req.user_id not in self.histories:
                raise RequestError(
                    404,
                    f"unknown user_id {req.user_id!r}: no history in the "
                    "training logs; send a history or a query instead",
                )
            history = self.histories[req.user_id]
        else:
            history = list(req.history or [])
            unknown = [i for i in history if i not in self.catalogue]
            if unknown:
                shown = ", ".join(repr(i) for i in unknown[:10])
                raise RequestError(
                    422,
                    f"unknown item ids in history: {shown}"
                    + (f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""),
                )
        text = render_user(history, self.catalogue.items, req.query, self.max_history)
        return Query(text=text, exclude=tuple(history))


class QueryEncoder:
    """The language model side: text in, normalised embedding out."""

    def __init__(self, bundle: ModelBundle, threads: int = 1) -> None:
        torch.set_num_threads(threads)
        self.scorer = bundle.load_scorer()

    def encode(self, texts: list[str]) -> np.ndarray:
        """``[len(texts), dim]`` float32 embeddings, one forward pass for the whole batch."""
        return self.scorer.encode(texts, kind="query", batch_size=max(len(texts), 1)).numpy()


class CandidateRanker:
    """Exact top-k by dot product over the version's item embeddings, seen items masked."""

    def __init__(self, bundle: ModelBundle) -> None:
        self.ids = bundle.catalogue.ids
        self.index = bundle.catalogue.index
        self.titles = [bundle.catalogue.title(i) for i in self.ids]
        self.embeddings = bundle.item_embeddings

    def top_k(self, query: np.ndarray, exclude: tuple[str, ...], k: int) -> list[RecommendedItem]:
        scores = self.embeddings @ np.asarray(query, dtype=np.float32).reshape(-1)
        masked = [self.index[i] for i in exclude if i in self.index]
        scores[masked] = -np.inf
        k = min(k, len(self.ids) - len(set(masked)))
        if k <= 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [
            RecommendedItem(item_id=self.ids[i], score=float(scores[i]), title=self.titles[i])
            for i in top
        ]
