"""What a list is beyond accuracy: coverage, intra-list diversity, novelty, Gini of
exposure, miscalibration against a user's history, long-tail share (offline reports and the
served ``"measures": true`` both use these).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmrec.ranking.rerank import SMOOTHING, history_distribution


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
    lists = item_features[top].astype(np.float64)  # [users, k, f]: only the listed rows
    norms = np.linalg.norm(lists, axis=2, keepdims=True)
    has = norms[:, :, 0] > 0
    lists = np.divide(lists, norms, out=np.zeros_like(lists), where=norms > 0)
    sims = np.einsum("ukf,ujf->ukj", lists, lists)
    k = top.shape[1]
    ok = has[:, :, None] & has[:, None, :] & ~np.eye(k, dtype=bool)[None]
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
