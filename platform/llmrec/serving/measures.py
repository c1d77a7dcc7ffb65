"""What the offline reports measure of a list, for one served list.

The review page (``/ui``) sets two versions' lists side by side with these: intra-list
diversity, the long-tail share and mean popularity, the categories covered and the
miscalibration against the user's history, computed by the same functions as the offline
beyond-accuracy report (:mod:`llmrec.evaluation.metrics`) over the version's item facts.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from llmrec.api.schemas import ListMeasures
from llmrec.ranking.measures import intra_list_diversity, miscalibration, tail_share
from llmrec.ranking.rerank import history_distribution
from llmrec.ranking.slate import ItemFacts


def list_measures(
    facts: ItemFacts, counts: np.ndarray, rows: Sequence[int], history: Sequence[int]
) -> ListMeasures:
    """The measures of one list of catalogue ``rows`` answering ``history`` (rows too).

    Args:
        facts: the version's item facts (similarity vectors, categories, long tail).
        counts: training interactions per row (rows past its end count 0: live items).
    """
    top = np.asarray(rows, dtype=np.int64)[None]
    if top.size == 0:
        return ListMeasures(
            diversity=None, tail_share=0.0, mean_popularity=0.0, categories=0, miscalibration=None
        )
    diversity = intra_list_diversity(top, facts.vectors)
    genres = facts.genres
    wanted = history_distribution(genres, [list(history)])
    calibrated = bool(genres.shape[1]) and bool(wanted.sum() > 0)
    popularity = np.where(top[0] < len(counts), counts[np.minimum(top[0], len(counts) - 1)], 0)
    return ListMeasures(
        diversity=None if math.isnan(diversity) else diversity,
        tail_share=tail_share(top, facts.tail),
        mean_popularity=float(np.mean(popularity)),
        categories=int((genres[top[0]] > 0).any(axis=0).sum()) if genres.shape[1] else 0,
        miscalibration=miscalibration(top, wanted, genres) if calibrated else None,
    )


__all__ = ["list_measures"]
