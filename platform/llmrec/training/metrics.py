"""Ranking metrics under full ranking with the user's history masked (EVALUATION.md).

Ties count against the target: its rank is the number of items scoring strictly higher plus
the number of other items scoring exactly the same. Masked items score -inf and never count;
the target itself is never masked, even when it also appears in the history.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmrec.ranking.rerank import SMOOTHING, history_distribution


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


def beyond_accuracy(
    top: np.ndarray,
    num_items: int,
    item_features: np.ndarray | None,
    item_counts: np.ndarray,
    num_users: int,
    *,
    genres: np.ndarray | None = None,
    histories: Sequence[Sequence[int]] | np.ndarray | None = None,
    tail: np.ndarray | None = None,
) -> dict[str, float]:
    """Coverage, intra-list diversity, novelty and Gini of exposure of top-k lists; with
    ``genres`` and ``histories`` also miscalibration, with ``tail`` the long-tail share.

    Args:
        top: ``[users, k]`` recommended item indices.
        num_items: Catalogue size.
        item_features: ``[items, f]`` vectors for diversity (e.g. multi-hot categories);
            intra-list diversity is the mean pairwise ``1 - cosine`` within a list, over the
            pairs of distinct positions whose items both have a non-zero vector (the cosine
            of a zero vector is undefined). NaN when no list has such a pair, or when
            ``item_features`` is None: an undefined measure is not a number.
        item_counts: Training interactions per item (popularity).
        num_users: Users in the training data (popularity share = count / users).
        genres: ``[items, g]`` category distribution of each item (:func:`miscalibration`).
        histories: Per user, the history's item indices, or ``[users, g]`` their category
            distributions (:func:`miscalibration`).
        tail: ``[items]`` long-tail flags (:func:`tail_share`).
    """
    exposure = np.bincount(top.ravel(), minlength=num_items).astype(np.float64)
    coverage = float((exposure > 0).mean())
    share = np.clip(item_counts.astype(np.float64) / max(num_users, 1), 1e-12, None)
    novelty = float((-np.log2(share[top])).mean())
    out = {
        "coverage": coverage,
        "diversity": intra_list_diversity(top, item_features),
        "novelty": novelty,
        "gini": gini(exposure),
    }
    if genres is not None and histories is not None:
        out["miscalibration"] = miscalibration(top, histories, genres)
    if tail is not None:
        out["tail_share"] = tail_share(top, tail)
    return out


def intra_list_diversity(top: np.ndarray, item_features: np.ndarray | None) -> float:
    """Mean pairwise ``1 - cosine`` within each list, averaged over lists (see
    :func:`beyond_accuracy`); NaN when undefined."""
    if item_features is None:
        return float("nan")
    feats = item_features.astype(np.float64)
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    has = norms[:, 0] > 0
    feats = np.divide(feats, norms, out=np.zeros_like(feats), where=norms > 0)
    lists = feats[top]  # [users, k, f]
    sims = np.einsum("ukf,ujf->ukj", lists, lists)
    k = top.shape[1]
    ok = has[top][:, :, None] & has[top][:, None, :] & ~np.eye(k, dtype=bool)[None]
    pairs = ok.sum(axis=(1, 2))
    if not pairs.any():
        return float("nan")
    distance = np.where(ok, 1.0 - sims, 0.0).sum(axis=(1, 2))
    return float((distance[pairs > 0] / pairs[pairs > 0]).mean())


def miscalibration(
    top: np.ndarray, histories: Sequence[Sequence[int]] | np.ndarray, genres: np.ndarray
) -> float:
    """Steck's (2018) miscalibration: the mean over users of ``KL(p || q~)``, with ``p``
    the category distribution of the user's history, ``q`` that of the list (items
    weighted equally, each item's categories equally) and ``q~ = 0.99 q + 0.01 p``. 0 =
    every list mirrors its user's history; users without categorised history are skipped.
    ``histories``: item indices per user, or ``[users, g]`` their category distributions.
    """
    if isinstance(histories, np.ndarray) and histories.ndim == 2:
        p = histories.astype(np.float64)
    else:
        p = history_distribution(genres, list(histories))
    q = np.asarray(genres, dtype=np.float64)[top].mean(1)
    q = (1.0 - SMOOTHING) * q + SMOOTHING * p
    ratio = np.divide(p, q, out=np.ones_like(p), where=p > 0)
    kl = (p * np.log(ratio)).sum(1)
    has = p.sum(1) > 0
    return float(kl[has].mean()) if has.any() else 0.0


def tail_share(top: np.ndarray, tail: np.ndarray) -> float:
    """Share of the list slots given to long-tail items (all lists together)."""
    return float(np.asarray(tail, dtype=bool)[top].mean()) if top.size else 0.0


def exposure_by_value(
    top: np.ndarray, codes: np.ndarray, values: Sequence[str]
) -> dict[str, float]:
    """Per value of an attribute, the share of list slots held by an item with that value
    (``codes`` ``[items, m]``, -1 pads; multi-valued attributes can sum above 1)."""
    slots = max(top.size, 1)
    held = codes[top.ravel()]  # [slots, m]
    counts = np.bincount(held[held >= 0], minlength=len(values))
    return {v: float(c / slots) for v, c in zip(values, counts, strict=True)}


def gini(values: np.ndarray) -> float:
    """Gini coefficient of non-negative values (0 = equal exposure, 1 = one item gets all)."""
    v = np.sort(np.asarray(values, dtype=np.float64))
    n = len(v)
    if n == 0 or v.sum() == 0:
        return 0.0
    cum = np.cumsum(v)
    return float((n + 1 - 2 * (cum / cum[-1]).sum()) / n)
