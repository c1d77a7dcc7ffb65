"""Ranking metrics under full ranking with the user's history masked (EVALUATION.md).

Ties count against the target: its rank is the number of items scoring strictly higher plus
the number of other items scoring exactly the same. Masked items score -inf and never count;
the target itself is never masked, even when it also appears in the history.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def target_ranks(
    scores: np.ndarray, targets: np.ndarray, exclude: Sequence[Sequence[int]]
) -> np.ndarray:
    """0-based rank of each user's target among all items.

    Args:
        scores: ``[users, items]`` scores.
        targets: ``[users]`` item index of each user's target.
        exclude: per user, item indices to mask (the history).
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets]
    for u, items in enumerate(exclude):
        if len(items):
            scores[u, np.asarray(items, dtype=np.int64)] = -np.inf
    scores[rows, targets] = target_scores
    higher = (scores > target_scores[:, None]).sum(1)
    ties = (scores == target_scores[:, None]).sum(1) - 1
    return (higher + ties).astype(np.int64)


def ranking_metrics(ranks: np.ndarray, ks: Sequence[int] = (10, 20)) -> dict[str, float]:
    """HR@K, NDCG@K (one relevant item: 1/log2(rank+2) when rank < K) and MRR, averaged."""
    ranks = np.asarray(ranks)
    if ranks.size == 0:
        return {**{f"hr_at_{k}": 0.0 for k in ks}, **{f"ndcg_at_{k}": 0.0 for k in ks}, "mrr": 0.0}
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"hr_at_{k}"] = float(hit.mean())
        out[f"ndcg_at_{k}"] = float(np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0).mean())
    out["mrr"] = float((1.0 / (ranks + 1.0)).mean())
    return out
