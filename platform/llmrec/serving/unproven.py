"""Exploration's candidates in the ranker: the items a version has little evidence of.

Exploration (:mod:`llmrec.experiments.exploration`, in the ingress) chooses among the
ranker's candidates. The wide list (``k + explore_pool``) holds what the model ranks near
the top; an item added live whose text undersells it ranks in the middle and would never
be a candidate, however much users would like it. A query with ``unproven > 0`` therefore
also gets, after its ``k`` items, the best-scored (for its user) of the *unproven* rows:
those the version was trained on with fewer than ``explore_max_impressions /
explore_trained_worth`` interactions, and every item added live (none). Only those rows are
scored (where the query was not scored over the whole catalogue already), so the cost is a
small hybrid scoring next to the catalogue's. What the impression log knows of them is the
ingress's part: an unproven row shown often enough is dropped there, not here.

The training interactions are counted once per version (:func:`training_counts`: the
hybrid's popularity counts, else the training logs the version ships) and that one count is
read everywhere: the unproven rows, the re-ranker's long tail
(:class:`~llmrec.serving.slates.Slates`) and, by item id (:meth:`UnprovenRows.by_id`),
exploration's evidence in the ingress and in the in-process study.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from llmrec.ranking.hybrid import HybridScorer
from llmrec.serving.item_rows import ItemRows
from llmrec.serving.settings import ServeSettings
from llmrec.serving.slates import history_counts


class UnprovenRows:
    """The rows of little training evidence and the best of them for a query.

    Args:
        items: the ranker's item rows (the retired flags are read from it).
        counts: ``[rows]`` the version's training interactions per item row
            (:func:`training_counts`; rows added later, live items, have none).
        settings: rows with fewer than ``explore_max_impressions / explore_trained_worth``
            interactions are unproven (``explore_trained_worth`` 0: every row).
    """

    def __init__(self, items: ItemRows, counts: np.ndarray, settings: ServeSettings) -> None:
        worth = settings.explore_trained_worth
        threshold = settings.explore_max_impressions / worth if worth > 0 else np.inf
        self.items = items
        self.counts = np.asarray(counts)
        self.trained = np.flatnonzero(self.counts.astype(float) < threshold)
        self.known = len(counts)

    def by_id(self) -> dict[str, int]:
        """The training interactions per item id of the rows counted (an item left out, one
        never trained on or added live, has none): what exploration adds to the impression
        log's evidence, so that it graduates exactly the items these rows leave out."""
        ids = self.items.ids[: self.known]
        return {i: int(c) for i, c in zip(ids, self.counts.tolist(), strict=True) if c > 0}

    def rows(self, num_items: int) -> np.ndarray:
        """Every unproven row of a catalogue of ``num_items`` rows (live rows included)."""
        live = np.arange(self.known, max(num_items, self.known), dtype=np.int64)
        return np.concatenate([self.trained.astype(np.int64), live])

    def extend(
        self,
        n: int,
        rows: np.ndarray,
        scores: np.ndarray,
        excluded: np.ndarray,
        score: Callable[[np.ndarray], np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray]:
        """An answer's ``rows`` and ``scores`` followed by the ``n`` best unproven rows that
        it does not hold, best first, leaving out the ``excluded`` rows and retired ones;
        ``score``: the query's scores of some rows (:func:`scorer`)."""
        dead = self.items.dead
        more = self.rows(len(dead))
        more = more[~np.isin(more, np.union1d(rows, excluded)) & ~dead[more]]
        if n <= 0 or len(more) == 0:
            return rows, scores
        found = np.asarray(score(more))
        top = np.argsort(-found, kind="stable")[:n]
        return np.concatenate([rows, more[top]]), np.concatenate([scores, found[top]])


def scorer(
    hybrid: HybridScorer,
    vec: np.ndarray,
    history: list[int],
    asked: bool,
    boosts: np.ndarray | None,
    full: np.ndarray | None,
) -> Callable[[np.ndarray], np.ndarray]:
    """One query's scores of chosen rows: read from ``full`` (its scores of every row,
    boosts included) when it was scored over the whole catalogue, else scored by the hybrid
    (``vec``: its ``[1, ...]`` user row; ``asked``: it has a typed request) plus the
    intent's ``boosts``."""
    if full is not None:
        return full.__getitem__

    def score(rows: np.ndarray) -> np.ndarray:
        out = hybrid.scores(vec, [history], rows, [asked])[0]
        return out if boosts is None else out + boosts[rows]

    return score


def training_counts(
    hybrid: HybridScorer, histories: Mapping[str, Sequence[str]], items: ItemRows
) -> np.ndarray:
    """``[rows]`` a version's training interactions per item row: its hybrid's popularity
    counts (every interaction it was trained on), else its training logs as the bundle ships
    them (``histories``, which may be a sample of its users) counted over ``items``."""
    counts = hybrid.popularity_counts
    return history_counts(histories, items.index, len(items)) if counts is None else counts


__all__ = ["UnprovenRows", "scorer", "training_counts"]
