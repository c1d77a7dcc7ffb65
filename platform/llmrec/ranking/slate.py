"""The re-ranker interface shared by offline evaluation and serving.

:class:`ItemFacts` holds, per catalogue row, what re-ranking reads: similarity vectors, the
category distribution, the long-tail flag and attribute value codes. :class:`Reranker`
re-ranks batches of users' candidate lists under a :class:`~llmrec.ranking.rerank.SlateSpec`
(:func:`~llmrec.ranking.rerank.greedy` does the work); offline the batch is every user of a
split part, in serving one request.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from llmrec.data.catalogue import Catalogue
from llmrec.ranking.rerank import (
    Candidates,
    SlateSpec,
    category_distribution,
    greedy,
    history_distribution,
)

HEAD_SHARE = 0.2
"""The head: the most popular 20% of items by training interactions; the rest is the tail."""


def long_tail(counts: np.ndarray, head_share: float = HEAD_SHARE) -> np.ndarray:
    """``[items]`` True for items outside the ``ceil(head_share * items)`` most popular
    (equal counts at the boundary: catalogue order decides)."""
    counts = np.asarray(counts)
    tail = np.ones(len(counts), dtype=bool)
    head = math.ceil(head_share * len(counts))
    tail[np.argsort(-counts, kind="stable")[:head]] = False
    return tail


def encode_values(per_item: Sequence[Sequence[str]]) -> tuple[np.ndarray, tuple[str, ...]]:
    """``[items, m]`` integer codes of each item's values (-1 pads), and the value names
    (sorted), for values given per item."""
    names = tuple(sorted({v for values in per_item for v in values}))
    pos = {v: j for j, v in enumerate(names)}
    width = max((len(values) for values in per_item), default=0)
    codes = np.full((len(per_item), max(width, 1)), -1, dtype=np.int64)
    for row, values in enumerate(per_item):
        for col, v in enumerate(values):
            codes[row, col] = pos[v]
    return codes, names


@dataclass(frozen=True)
class ItemFacts:
    """What re-rankers and beyond-accuracy measures know of each catalogue row.

    Attributes:
        vectors: ``[items, f]`` similarity vectors (item embeddings or category vectors).
        genres: ``[items, g]`` category distribution ``p(g | item)``.
        tail: ``[items]`` long-tail flags.
        codes: attribute -> ``[items, m]`` value codes (``categories`` and extra columns).
        values: attribute -> the value name of each code.
    """

    vectors: np.ndarray
    genres: np.ndarray
    tail: np.ndarray
    codes: dict[str, np.ndarray]
    values: dict[str, tuple[str, ...]]

    @classmethod
    def build(
        cls,
        catalogue: Catalogue,
        vectors: np.ndarray,
        counts: np.ndarray,
        head_share: float = HEAD_SHARE,
    ) -> ItemFacts:
        """Facts of ``catalogue`` with ``vectors`` for similarity and ``counts`` (training
        interactions per item) for the long tail."""
        codes, values = {}, {}
        for name in catalogue.attribute_names:
            codes[name], values[name] = encode_values(catalogue.attribute_values(name))
        vectors = np.asarray(vectors)  # float16 stays float16: gathered rows are widened
        return cls(
            vectors if vectors.dtype == np.float16 else vectors.astype(np.float32),
            category_distribution(catalogue.category_vectors()),
            long_tail(counts, head_share),
            codes,
            values,
        )

    def with_tail(self, counts: np.ndarray, head_share: float = HEAD_SHARE) -> ItemFacts:
        """The same facts with the long tail of other counts (e.g. another split part)."""
        return ItemFacts(
            self.vectors, self.genres, long_tail(counts, head_share), self.codes, self.values
        )


class Reranker:
    """Re-ranks candidate lists of catalogue rows under a :class:`SlateSpec`.

    Args:
        facts: The catalogue's item facts.
        chunk: Users re-ranked together (bounds memory: ``chunk x N x f`` floats).
    """

    def __init__(self, facts: ItemFacts, chunk: int = 128) -> None:
        self.facts = facts
        self.chunk = chunk

    def history_distribution(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``[U, g]`` category distribution of each history (catalogue rows)."""
        return history_distribution(self.facts.genres, histories)

    def problems(self, spec: SlateSpec) -> list[str]:
        """Out-of-range knobs and unknown attributes of ``spec``."""
        out = spec.problems()
        unknown = [a for a in spec.max_per if a not in self.facts.codes]
        if unknown:
            out.append(
                f"unknown attribute(s) in max_per: {', '.join(map(repr, unknown))} "
                f"(known: {', '.join(sorted(self.facts.codes))})"
            )
        return out

    def rerank(
        self,
        rows: np.ndarray,
        relevance: np.ndarray,
        k: int,
        spec: SlateSpec,
        histories: Sequence[Sequence[int]] | None = None,
        history: np.ndarray | None = None,
    ) -> np.ndarray:
        """``[U, min(k, N)]`` positions into each user's candidates, best first.

        Args:
            rows: ``[U, N]`` candidate catalogue rows per user.
            relevance: ``[U, N]`` their scores.
            k: List length.
            spec: The knobs and constraints.
            histories: Per user, catalogue rows of the history (needed for calibration).
            history: ``[U, g]`` the histories' category distributions, when already known
                (:meth:`history_distribution`; saves recomputing them across calls).

        Raises:
            ValueError: ``spec`` is out of range or names an unknown attribute, or
                calibration is asked without histories.
        """
        problems = self.problems(spec)
        if problems:
            raise ValueError("; ".join(problems))
        rows = np.atleast_2d(np.asarray(rows, dtype=np.int64))
        relevance = np.atleast_2d(np.asarray(relevance))
        if spec.calibration and history is None:
            if histories is None:
                raise ValueError("calibration needs the users' histories")
            history = self.history_distribution(histories)
        out = []
        for start in range(0, len(rows), self.chunk):
            part = slice(start, start + self.chunk)
            hist = None if history is None else history[part]
            cands = self.candidates(rows[part], relevance[part], spec, hist)
            out.append(greedy(cands, k, spec))
        if not out:
            return np.zeros((0, min(k, rows.shape[1])), dtype=np.int64)
        return np.concatenate(out)

    def candidates(
        self,
        rows: np.ndarray,
        relevance: np.ndarray,
        spec: SlateSpec,
        history: np.ndarray | None,
    ) -> Candidates:
        """Gather what ``spec`` needs of the candidates ``rows`` (``history``: the users'
        category distributions, for calibration)."""
        f = self.facts
        cands = Candidates(relevance)
        if spec.diversity:
            cands.vectors = f.vectors[rows].astype(np.float32)
        if spec.calibration:
            cands.genres = f.genres[rows]
            cands.history = history
        if spec.tail_share:
            cands.tail = f.tail[rows]
        cands.codes = {a: f.codes[a][rows] for a in spec.max_per}
        return cands
