"""How the ranker re-ranks its lists (:class:`Slates`): each query's slate spec (the
version's ``rank.*`` defaults, replaced where the request asks), the re-rankers' item facts
(rebuilt over the catalogue with its live items when a list next needs them) and the
interaction counts behind the long tail and the list measures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from llmrec.config import RankConfig
from llmrec.data.catalogue import Catalogue
from llmrec.ranking.rerank import SlateSpec
from llmrec.ranking.slate import ItemFacts, Reranker
from llmrec.understanding.query import Query


class Slates:
    """The re-ranking of one version's lists.

    Args:
        rank: The version's rank settings (defaults, similarity, re-ranking depth).
        catalogue: Its catalogue.
        vectors: Its item vectors (the similarity, unless ``rank.similarity`` is
            ``categories``).
        counts: Interactions per item (:func:`history_counts` where the hybrid has no
            popularity part).
        where: Names the version in errors.

    Raises:
        ValueError: ``rank.max_per`` names an attribute the catalogue lacks.
    """

    def __init__(
        self,
        rank: RankConfig,
        catalogue: Catalogue,
        vectors: np.ndarray,
        counts: np.ndarray,
        where: str,
    ) -> None:
        self.depth = rank.rerank_depth
        self.similarity = rank.similarity
        self.counts = counts
        self.reranker = Reranker(self._facts(catalogue, vectors, counts))
        self.defaults = default_spec(rank)
        problems = self.reranker.problems(self.defaults)
        if problems:
            raise ValueError(f"{where}: rank settings: {'; '.join(problems)}")
        self.stale = False
        """Whether live items changed since the facts were built (:meth:`refresh`)."""

    def _facts(self, catalogue: Catalogue, vectors: np.ndarray, counts: np.ndarray) -> ItemFacts:
        similar = catalogue.category_vectors() if self.similarity == "categories" else vectors
        return ItemFacts.build(catalogue, similar, counts)

    def spec(self, q: Query) -> SlateSpec:
        """The re-ranking of one query: the version's defaults, replaced where it asks."""
        d = self.defaults
        return SlateSpec(
            d.method,
            diversity=d.diversity if q.diversity is None else q.diversity,
            calibration=d.calibration if q.calibration is None else q.calibration,
            tail_share=d.tail_share if q.tail_share is None else q.tail_share,
            max_per=d.max_per if q.max_per is None else dict(q.max_per),
        )

    def depth_of(self, q: Query, spec: SlateSpec) -> int:
        """How many of the best items ``spec`` re-ranks for ``q`` (``q.k`` when it keeps
        the order)."""
        return max(q.k, self.depth) if spec.reorders else q.k

    def refresh(self, catalogue: Catalogue, vectors: np.ndarray, counts: np.ndarray | None) -> None:
        """The re-rankers' item facts over ``catalogue`` (the version's with its live items,
        in row order), ``vectors`` and ``counts`` (None: the version's counts, 0 for the
        items added since)."""
        if counts is None:
            counts = np.concatenate([self.counts, np.zeros(len(catalogue) - len(self.counts))])
        self.reranker = Reranker(self._facts(catalogue, vectors, counts))
        self.stale = False


def default_spec(rank: RankConfig) -> SlateSpec:
    """The re-ranking of a version's ``rank.*`` settings (MMR at strength 0 when it sets no
    diversity)."""
    return SlateSpec(
        rank.diversity if rank.diversity != "none" else "mmr",
        diversity=rank.diversity_strength if rank.diversity != "none" else 0.0,
        calibration=rank.calibration,
        tail_share=rank.tail_share,
        max_per=dict(rank.max_per),
    )


def history_counts(
    histories: Mapping[str, Sequence[str]], index: Mapping[str, int], n: int
) -> np.ndarray:
    """``[n]`` interactions per item row in ``histories`` (a version's training logs: the
    counts where its hybrid has no popularity part); ids outside ``index`` are left out."""
    rows = [index[i] for h in histories.values() for i in h if i in index]
    return np.bincount(np.asarray(rows, dtype=np.int64), minlength=n)
