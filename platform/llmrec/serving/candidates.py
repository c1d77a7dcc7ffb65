"""Where the ranker's candidates come from (:class:`CandidatePool`, over the indexes
:func:`searchable` builds), and the best of them once scored (:func:`top_rows`).

A query with a category filter (or a strict intent's categories) is scored exactly over
those categories' rows. Otherwise an exact index scores every item (no subset), and an
approximate one (FAISS) gives the rows nearest to the user vector together with the rows
the hybrid's other parts could lift above them: the most popular items (a popularity
weight), the history's (a CF or transition weight) and the items a typed request describes
(a text-match weight).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmrec.ranking.hybrid import HybridScorer
from llmrec.ranking.index import ItemIndex, build_index, choose_index
from llmrec.registry.bundle import ModelBundle
from llmrec.serving.settings import ServeSettings
from llmrec.understanding.query import Query


def searchable(
    bundle: ModelBundle, num_items: int, s: ServeSettings
) -> tuple[np.ndarray, HybridScorer, ItemIndex]:
    """The version's item vectors as the ranker keeps them, its hybrid and its item index,
    by catalogue size (:func:`~llmrec.ranking.index.choose_index`). A large catalogue keeps
    float16 vectors (candidates are re-scored in float32); from ``ann_min_items`` items, under
    an approximate item index, the hybrid finds the items a typed request describes in an
    approximate index too (:meth:`HybridScorer.index_text`: the exact product over every
    item's text took over a second a request at a million items)."""
    kind = choose_index(s.index, num_items, s.ann_min_items, s.compact_min_items)
    compact = kind != "exact" and num_items >= s.compact_min_items
    emb = bundle.read_embeddings(np.float16) if compact else bundle.item_embeddings
    hybrid = bundle.load_hybrid(emb)
    if kind != "exact" and num_items >= s.ann_min_items:
        hybrid.index_text()
    index = bundle.prebuilt_index(kind, s.hnsw_ef_search) or build_index(
        emb, kind, s.ann_min_items, s.hnsw_m, s.hnsw_ef_search, s.compact_min_items
    )
    return emb, hybrid, index


class CandidatePool:
    """The item index and the row sets candidates are drawn from.

    Args:
        index: The item index over the model's item vectors (exact or approximate).
        num_items: Rows in the index (its position ``p`` is item row ``p`` until live items
            are added: :meth:`add`).
        category_rows: Per category, the rows of its items.
        popularity: ``[items]`` standardised popularity (the most popular rows join an
            approximate index's candidates when the hybrid weighs popularity).
        size: Candidates taken from each source of an approximate index.
    """

    def __init__(
        self,
        index: ItemIndex,
        num_items: int,
        category_rows: dict[str, np.ndarray],
        popularity: np.ndarray,
        size: int,
    ) -> None:
        self.index = index
        self.ann_rows = np.arange(num_items)  # index position -> item row
        self.category_rows = category_rows
        self.size = size
        self.popular_rows = np.argsort(-popularity, kind="stable")[:size]

    def filter_categories(self, q: Query) -> tuple[str, ...]:
        """The categories that restrict a query's candidates: the request's filter, else a
        strict intent's wanted categories."""
        if q.categories:
            return q.categories
        if q.strict and q.intent is not None:
            return tuple(c for c in q.intent.categories if c in self.category_rows)
        return ()

    def rows(
        self,
        hybrid: HybridScorer,
        vec: np.ndarray,
        history: list[list[int]],
        q: Query,
        n: int,
        retired: int,
    ) -> np.ndarray | None:
        """Item rows to score for one query (``vec``: its ``[1, ...]`` user row, ``n``: rows
        it needs, ``retired``: how many items are retired): a category subset, approximate
        candidates, or None for all items."""
        categories = self.filter_categories(q)
        if categories:  # a category subset is scored exactly
            none = np.zeros(0, dtype=np.int64)  # a category only unembedded live items have
            return np.unique(np.concatenate([self.category_rows.get(c, none) for c in categories]))
        if self.index.kind == "exact":
            return None  # every item
        wanted = max(n, self.size) + retired
        found, _ = self.index.search(hybrid.split(vec)[0], wanted)
        parts = [self.ann_rows[found[0][found[0] >= 0]]]
        if hybrid.weights.popularity:
            parts.append(self.popular_rows)
        if hybrid.uses_history:
            parts.append(hybrid.history_candidates(history, self.size)[0])
        if hybrid.request_weights.text:  # the items a typed request describes
            parts.append(hybrid.text_candidates(vec, self.size)[0])
        return np.unique(np.concatenate(parts))

    def add(self, vectors: np.ndarray, rows: Sequence[int]) -> None:
        """Add model vectors to the index for item ``rows`` (live items; an updated item's
        old vector stays, pointing at the same row: its candidates are re-scored with the new
        vector)."""
        self.index.add(vectors)
        self.ann_rows = np.concatenate([self.ann_rows, np.array(rows)])

    def recategorise(self, row: int, old: set[str], new: set[str]) -> None:
        """Move item ``row`` from the categories ``old`` to the categories ``new``."""
        for c in old - new:
            self.category_rows[c] = self.category_rows[c][self.category_rows[c] != row]
        for c in new - old:
            rows = self.category_rows.get(c, np.zeros(0, dtype=np.int64))
            self.category_rows[c] = np.append(rows, row)


def category_rows(categories: Sequence[Sequence[str]]) -> dict[str, np.ndarray]:
    """Per category, the rows whose item has it (``categories``: each row's categories)."""
    by_cat: dict[str, list[int]] = {}
    for row, cats in enumerate(categories):
        for c in cats:
            by_cat.setdefault(c, []).append(row)
    return {c: np.array(r, dtype=np.int64) for c, r in by_cat.items()}


def top_rows(
    rows: np.ndarray, scores: np.ndarray, excluded: np.ndarray, dead: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``depth`` best scored ``rows`` and their scores, best first, leaving out the
    ``excluded`` rows and the retired ones (``dead``: a flag per row)."""
    keep = ~np.isin(rows, excluded) if len(excluded) else np.ones(len(rows), dtype=bool)
    keep &= ~dead[rows]
    rows, scores = rows[keep], scores[keep]
    if len(rows) == 0:
        return rows, scores
    depth = min(depth, len(rows))
    top = np.argpartition(-scores, depth - 1)[:depth]
    top = top[np.argsort(-scores[top], kind="stable")]
    return rows[top], scores[top]
