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

    Ties count against the target (every other item with an equal score is put first).
    Works through the users in blocks, in the scores' own precision (float64 scores stay
    float64), so that a large validation set is ranked without a float64 copy of it all.

    Args:
        scores: ``[users, items]`` scores.
        targets: ``[users]`` item index of each user's target.
        exclude: per user, item indices to mask (the history).
    """
    scores = np.asarray(scores)
    if not np.issubdtype(scores.dtype, np.floating):
        scores = scores.astype(np.float64)
    out = np.zeros(len(targets), dtype=np.int64)
    for start in range(0, len(targets), RANK_BLOCK):
        block = np.array(scores[start : start + RANK_BLOCK], copy=True)
        rows = np.arange(len(block))
        wanted = np.asarray(targets[start : start + RANK_BLOCK], dtype=np.int64)
        target_scores = block[rows, wanted]
        masked = exclude[start : start + RANK_BLOCK]
        lengths = [len(items) for items in masked]
        if sum(lengths):
            users = np.repeat(rows, lengths)
            items = np.concatenate([np.asarray(i, dtype=np.int64) for i in masked if len(i)])
            block[users, items] = -np.inf
        block[rows, wanted] = target_scores
        higher = (block > target_scores[:, None]).sum(1)
        ties = (block == target_scores[:, None]).sum(1) - 1
        out[start : start + len(block)] = higher + ties
    return out


RANK_BLOCK = 2048
"""Users ranked at a time by :func:`target_ranks`."""


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


def top_k_lists(scores: np.ndarray, exclude: Sequence[Sequence[int]], k: int = 10) -> np.ndarray:
    """``[users, k]`` item indices of each user's top-k, history masked, best first."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    for u, items in enumerate(exclude):
        if len(items):
            scores[u, np.asarray(items, dtype=np.int64)] = -np.inf
    top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)
