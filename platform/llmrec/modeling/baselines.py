"""Collaborative baselines: popularity, ItemKNN (cosine) and EASE (closed form).

They are features, not only yardsticks: fallbacks when the language model is unavailable and
the collaborative part of a hybrid score. Each is fitted on a user x item interaction matrix
and scores every item for a batch of users' histories.

EASE (Steck, 2019) learns an item-item weight matrix ``B = I - P / diag(P)`` with
``P = (X^T X + lambda I)^-1`` and a zero diagonal; it needs the dense ``items x items``
Gram matrix, so it suits catalogues up to a few tens of thousands of items.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp
from scipy.linalg import lapack


def interaction_matrix(histories: Sequence[Sequence[int]], num_items: int) -> sp.csr_matrix:
    """Binary ``users x items`` matrix from per-user item indices (repeats count once)."""
    rows = np.repeat(np.arange(len(histories)), [len(h) for h in histories])
    cols = np.fromiter((i for h in histories for i in h), dtype=np.int64, count=len(rows))
    m = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, cols)), shape=(len(histories), num_items)
    )
    m.data[:] = 1.0  # duplicates were summed
    return m


def spd_inverse(a: np.ndarray) -> np.ndarray:
    """The inverse of a symmetric positive definite matrix through its Cholesky factor (half
    the work of a general inverse)."""
    factor, info = lapack.dpotrf(a, lower=False, overwrite_a=False)
    if info == 0:
        inv, info = lapack.dpotri(factor, lower=False, overwrite_c=True)
    if info != 0:  # not positive definite in floating point: the general inverse
        return np.linalg.inv(a)
    upper = np.triu(inv)
    return upper + np.triu(upper, 1).T


class ItemScorer(Protocol):
    """A model that scores every item for users given as rows of an interaction matrix."""

    name: str

    def fit(self, x: sp.csr_matrix) -> ItemScorer: ...

    def score(self, x: sp.csr_matrix) -> np.ndarray: ...


@dataclass
class Popularity:
    """Scores each item by how many users interacted with it (the same list for everyone)."""

    name: str = "popularity"
    counts: np.ndarray | None = None

    def fit(self, x: sp.csr_matrix) -> Popularity:
        self.counts = np.asarray(x.sum(axis=0)).ravel().astype(np.float32)
        return self

    def score(self, x: sp.csr_matrix) -> np.ndarray:
        assert self.counts is not None, "fit first"
        return np.broadcast_to(self.counts, (x.shape[0], len(self.counts))).copy()


@dataclass
class ItemKNN:
    """Item-based nearest neighbours: sum of cosine similarities to the user's items."""

    name: str = "itemknn"
    similarity: np.ndarray | None = None

    def fit(self, x: sp.csr_matrix) -> ItemKNN:
        norms = np.sqrt(np.asarray(x.multiply(x).sum(axis=0)).ravel())
        norms[norms == 0] = 1.0
        gram = (x.T @ x).toarray().astype(np.float32)
        sim = gram / norms[:, None] / norms[None, :]
        np.fill_diagonal(sim, 0.0)
        self.similarity = sim
        return self

    def score(self, x: sp.csr_matrix) -> np.ndarray:
        assert self.similarity is not None, "fit first"
        return np.asarray(x @ self.similarity)


@dataclass
class EASE:
    """Embarrassingly shallow autoencoder with L2 weight ``lam``."""

    lam: float = 100.0
    name: str = "ease"
    weights: np.ndarray | None = None

    def fit(self, x: sp.csr_matrix) -> EASE:
        gram = (x.T @ x).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += self.lam
        p = spd_inverse(gram)
        b = -p / np.diag(p)[None, :]
        np.fill_diagonal(b, 0.0)
        self.weights = b.astype(np.float32)
        return self

    def score(self, x: sp.csr_matrix) -> np.ndarray:
        assert self.weights is not None, "fit first"
        return np.asarray(x @ self.weights)
