"""Diversity re-ranking of a user's top-N candidates: MMR and DPP.

Both take the candidates' relevance scores and item vectors (unit-normalised inside, so the
similarity of two items is their cosine) and pick ``k`` items one at a time. ``strength`` is
the one trade-off knob, in ``[0, 1]``: 0 keeps the relevance order, 1 cares only about
diversity.

- MMR (Carbonell & Goldstein, 1998): next item maximises
  ``(1 - strength) * relevance - strength * max similarity to the items already picked``,
  relevance min-max scaled to ``[0, 1]`` over the candidates.
- DPP (Chen, Zhang & Zhou, 2018, fast greedy MAP inference): kernel
  ``L = diag(r) S diag(r)`` with quality ``r_i = exp(alpha * relevance_i)``,
  ``alpha = (1 - strength) / (2 * strength)``; each step adds the item that most increases
  ``log det L_Y``, with incremental Cholesky updates (``O(N k^2)`` per list).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

Method = Literal["none", "mmr", "dpp"]


def _unit(vectors: np.ndarray) -> np.ndarray:
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def _scaled(relevance: np.ndarray) -> np.ndarray:
    r = np.asarray(relevance, dtype=np.float64)
    span = r.max() - r.min() if len(r) else 0.0
    return (r - r.min()) / span if span > 0 else np.ones_like(r)


def mmr(relevance: np.ndarray, vectors: np.ndarray, k: int, strength: float) -> np.ndarray:
    """Indices into the candidates, in the order MMR picks them (at most ``k``)."""
    _check(strength)
    rel = _scaled(relevance)
    k = min(k, len(rel))
    if strength == 0.0 or k == 0:
        return np.argsort(-rel, kind="stable")[:k]
    v = _unit(vectors)
    picked: list[int] = []
    max_sim = np.zeros(len(rel))
    free = np.ones(len(rel), dtype=bool)
    for _ in range(k):
        gain = np.where(free, (1.0 - strength) * rel - strength * max_sim, -np.inf)
        j = int(np.argmax(gain))
        picked.append(j)
        free[j] = False
        max_sim = np.maximum(max_sim, v @ v[j])
    return np.array(picked, dtype=np.int64)


def dpp(relevance: np.ndarray, vectors: np.ndarray, k: int, strength: float) -> np.ndarray:
    """Indices into the candidates, in the order greedy DPP MAP inference picks them.

    When the kernel runs out of rank (more picks than independent item vectors) the rest
    of the list is filled in relevance order.
    """
    _check(strength)
    rel = _scaled(relevance)
    n = len(rel)
    k = min(k, n)
    order = np.argsort(-rel, kind="stable")
    if strength == 0.0 or k == 0:
        return order[:k]
    alpha = (1.0 - strength) / (2.0 * strength)
    quality = np.exp(alpha * (rel - 1.0))  # <= 1, avoids overflow for small strengths
    v = _unit(vectors) * quality[:, None]  # L = V V^T
    c = np.zeros((k, n))
    d2 = (v * v).sum(axis=1) + 1e-10
    picked: list[int] = []
    j = int(np.argmax(d2))
    for step in range(k):
        picked.append(j)
        if step == k - 1:
            break
        e = (v @ v[j] - c[:step].T @ c[:step, j]) / np.sqrt(d2[j])
        c[step] = e
        d2 = d2 - e * e
        d2[picked] = -np.inf
        j = int(np.argmax(d2))
        if d2[j] < 1e-9:  # no independent item left
            rest = [i for i in order if i not in set(picked)]
            picked.extend(rest[: k - len(picked)])
            break
    return np.array(picked, dtype=np.int64)


def rerank(
    method: Method, relevance: np.ndarray, vectors: np.ndarray, k: int, strength: float
) -> np.ndarray:
    """Dispatch to :func:`mmr` / :func:`dpp`; ``none`` sorts by relevance."""
    if method == "mmr":
        return mmr(relevance, vectors, k, strength)
    if method == "dpp":
        return dpp(relevance, vectors, k, strength)
    return np.argsort(-np.asarray(relevance), kind="stable")[:k]


def _check(strength: float) -> None:
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"diversity strength must be in [0, 1], got {strength}")
