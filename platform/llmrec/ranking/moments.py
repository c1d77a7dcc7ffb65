"""Scores standardised over the whole catalogue (zero mean, unit spread per query), without
scoring the whole catalogue.

For a query ``q`` the mean of ``q . e_i`` over the items is ``q . mu`` and its variance is
``q^T Sigma q`` (``mu``, ``Sigma``: mean and covariance of the item vectors,
:func:`moments`), so a candidate subset scores exactly as it would in a full ranking
(:func:`standardised`). The hybrid's model and text-match parts are standardised this way;
:func:`standardize` does it for a score matrix at hand.
"""

from __future__ import annotations

import numpy as np


def standardize(scores: np.ndarray) -> np.ndarray:
    """Per row: subtract the mean, divide by the standard deviation (rows with no spread
    become zeros)."""
    scores = np.asarray(scores, dtype=np.float32)
    mean = scores.mean(axis=-1, keepdims=True)
    std = scores.std(axis=-1, keepdims=True)
    return np.divide(scores - mean, std, out=np.zeros_like(scores), where=std > 1e-12)


def moments(items: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of the item embeddings, in chunks (no float32 copy of a float16
    catalogue)."""
    n, dim = items.shape
    total = np.zeros(dim, dtype=np.float64)
    second = np.zeros((dim, dim), dtype=np.float64)
    for start in range(0, n, chunk):
        block = items[start : start + chunk].astype(np.float64)
        total += block.sum(axis=0)
        second += block.T @ block
    mean = total / max(n, 1)
    cov = second / max(n, 1) - np.outer(mean, mean)
    return mean.astype(np.float32), cov.astype(np.float32)


def standardised(
    q: np.ndarray,
    items: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """``(q . item - q . mean) / sqrt(q^T cov q)`` for all items or ``rows``: each query's
    scores standardised over the whole catalogue without scoring it."""
    picked = items if rows is None else items[rows]
    raw = q @ picked.astype(np.float32, copy=False).T
    return standardise_raw(raw, q, mean, cov)


def standardise_raw(
    raw: np.ndarray, q: np.ndarray, mean: np.ndarray, cov: np.ndarray
) -> np.ndarray:
    """Raw scores ``q . item`` (``[B, n]`` or ``[B]``) standardised as in :func:`standardised`."""
    centre = q @ mean
    std = np.sqrt(np.maximum(np.einsum("bd,de,be->b", q, cov, q), 1e-12))
    if raw.ndim == 1:
        return (raw - centre) / std
    return (raw - centre[:, None]) / std[:, None]


def best_rows(
    q: np.ndarray, items: np.ndarray, n: int, chunk: int = 65536
) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the ``n`` items with the highest ``q . item`` per query, best first, and
    those scores (``[B, n]`` each; fewer columns for a smaller catalogue), in chunks (no
    float32 copy of a float16 catalogue)."""
    n = min(n, len(items))
    rows = np.zeros((len(q), 0), dtype=np.int64)
    if n == 0:
        return rows, np.zeros((len(q), 0), dtype=np.float32)
    best = np.zeros((len(q), 0), dtype=np.float32)
    for start in range(0, len(items), chunk):
        raw = q @ items[start : start + chunk].astype(np.float32, copy=False).T
        rows = np.concatenate(
            [rows, np.broadcast_to(np.arange(start, start + raw.shape[1]), raw.shape)], axis=1
        )
        best = np.concatenate([best, raw], axis=1)
        keep = np.argpartition(-best, n - 1, axis=1)[:, :n]
        rows = np.take_along_axis(rows, keep, axis=1)
        best = np.take_along_axis(best, keep, axis=1)
    order = np.argsort(-best, axis=1, kind="stable")
    return np.take_along_axis(rows, order, axis=1), np.take_along_axis(best, order, axis=1)
