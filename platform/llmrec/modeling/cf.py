"""The collaborative term of the hybrid, in forms that scale to millions of items.

``rank.cf`` picks one (:func:`choose_cf`, ``auto`` by catalogue size):

- ``ease``: EASE's closed form (Steck, 2019), a dense ``items x items`` matrix. Exact, best
  on small catalogues; ``O(n^2)`` memory and ``O(n^3)`` fitting.
- ``sparse``: EASE restricted to neighbourhoods. Each item's column of ``B`` is the ridge
  regression of that item on its ``k`` most co-occurring items only (the "local" EASE); with
  ``k >= items - 1`` it is EASE itself. A sparse ``items x items`` matrix with at most ``k``
  weights per column (``O(n k)`` memory).
- ``itemknn``: the ``k`` most cosine-similar items of each item (classic ItemKNN), sparse.
- ``als``: implicit-feedback matrix factorisation (Hu, Koren & Volinsky, 2008; the
  ``implicit`` library). Only the item factors are kept; a user's factor is solved from their
  history when they are scored, so new feedback counts at once and unknown users need no
  refit.

Every model scores a batch of histories in two ways: :meth:`CFModel.part`, the scores
standardised per user over the *whole* catalogue (what the hybrid adds), optionally only for
some item rows but with the full catalogue's statistics; and :meth:`CFModel.top`, each user's
best items (candidates for an approximate index). Neither forms a dense ``items x items``
product: item-item models touch only the rows of the user's items, factor models one
``items x factors`` product. The sparse item-item fits (``sparse``, ``itemknn``) are computed
in :mod:`llmrec.modeling.neighbours`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from llmrec.modeling import neighbours
from llmrec.modeling.baselines import EASE, interaction_matrix

CFKind = Literal["ease", "sparse", "itemknn", "als"]
CF_KINDS: tuple[str, ...] = ("ease", "sparse", "itemknn", "als")
META_FILE = "cf.json"
DENSE_FILE = "cf.npy"
SPARSE_FILE = "cf.npz"
FACTORS_FILE = "cf_item_factors.npy"


class CFModel(Protocol):
    """A fitted collaborative model over a catalogue of ``num_items`` items."""

    kind: str

    @property
    def num_items(self) -> int: ...

    def score(self, x: sp.csr_matrix) -> np.ndarray:
        """Raw ``[users, items]`` scores of the users given as interaction rows."""
        ...

    def part(
        self, histories: Sequence[Sequence[int]], rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Standardised ``[B, items]`` scores (or ``[B, len(rows)]``, same values)."""
        ...

    def top(self, histories: Sequence[Sequence[int]], n: int) -> list[np.ndarray]:
        """Per user, the rows of (at most) ``n`` best-scored items."""
        ...

    def save(self, directory: Path) -> None: ...

    @property
    def nbytes(self) -> int: ...


def _standardise(raw: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    ok = std > 1e-12
    safe = np.where(ok, std, 1.0)
    out = (raw - mean[:, None]) / safe[:, None]
    out[~ok] = 0.0
    return out.astype(np.float32)


@dataclass
class ItemItemCF:
    """Scores = binary history row times an item-item matrix ``weights`` (dense or CSR).

    Args:
        kind: ``ease``, ``sparse`` or ``itemknn``.
        weights: ``[items, items]``; row ``a`` holds what having item ``a`` adds to others.
        params: How it was fitted (stored with it).
    """

    kind: str
    weights: np.ndarray | sp.csr_matrix
    params: dict[str, float]

    @property
    def num_items(self) -> int:
        return int(self.weights.shape[0])

    @property
    def nbytes(self) -> int:
        w = self.weights
        if isinstance(w, np.ndarray):
            return int(w.nbytes)
        return int(w.data.nbytes + w.indices.nbytes + w.indptr.nbytes)

    def score(self, x: sp.csr_matrix) -> np.ndarray:
        out = x @ self.weights
        return out.toarray() if sp.issparse(out) else np.asarray(out)

    def _raw(self, histories: Sequence[Sequence[int]]) -> np.ndarray | sp.csr_matrix:
        out = interaction_matrix(histories, self.num_items) @ self.weights
        return sp.csr_matrix(out) if sp.issparse(out) else np.asarray(out, dtype=np.float32)

    def part(
        self, histories: Sequence[Sequence[int]], rows: np.ndarray | None = None
    ) -> np.ndarray:
        raw = self._raw(histories)
        n = self.num_items
        if isinstance(raw, np.ndarray):
            mean, std = raw.mean(axis=1), raw.std(axis=1)
            vals = raw if rows is None else raw[:, rows]
        else:  # items outside a user's sparse row score 0: the statistics need only the row
            sums = np.asarray(raw.sum(axis=1)).ravel()
            sq = np.asarray(raw.multiply(raw).sum(axis=1)).ravel()
            mean = sums / n
            std = np.sqrt(np.maximum(sq / n - mean**2, 0.0))
            vals = (raw if rows is None else raw[:, rows]).toarray()
        return _standardise(np.asarray(vals, dtype=np.float64), mean, std)

    def top(self, histories: Sequence[Sequence[int]], n: int) -> list[np.ndarray]:
        raw = self._raw(histories)
        out = []
        for u in range(len(histories)):
            if isinstance(raw, np.ndarray):
                row, cols = raw[u], np.arange(self.num_items)
            else:
                lo, hi = raw.indptr[u], raw.indptr[u + 1]
                row, cols = raw.data[lo:hi], raw.indices[lo:hi]
            if len(row) > n:
                keep = np.argpartition(-row, n - 1)[:n]
                row, cols = row[keep], cols[keep]
            out.append(cols[np.argsort(-row, kind="stable")].astype(np.int64))
        return out

    def save(self, directory: Path) -> None:
        _write_meta(directory, self.kind, self.params)
        if isinstance(self.weights, np.ndarray):
            np.save(directory / DENSE_FILE, self.weights.astype(np.float32))
        else:
            sp.save_npz(directory / SPARSE_FILE, self.weights, compressed=False)


@dataclass
class FactorCF:
    """Matrix factorisation: item factors ``[items, f]`` and the ALS user solve.

    A user's factor minimises ``sum_i c_i (p_i - u . y_i)^2 + reg |u|^2`` over all items, with
    ``p_i = 1`` and confidence ``c_i = alpha`` on their items, ``p_i = 0, c_i = 1`` elsewhere
    (the same solve as ``implicit``'s ``recalculate_user``).
    """

    item_factors: np.ndarray
    regularization: float
    alpha: float
    params: dict[str, float]
    kind: str = "als"

    def __post_init__(self) -> None:
        y = np.asarray(self.item_factors, dtype=np.float32)
        self.item_factors = y
        self.gram = (y.T.astype(np.float64) @ y).astype(np.float64)
        self.mean = y.mean(axis=0).astype(np.float64)
        centred_gram = self.gram / max(len(y), 1) - np.outer(self.mean, self.mean)
        self.cov = centred_gram

    @property
    def num_items(self) -> int:
        return int(self.item_factors.shape[0])

    @property
    def nbytes(self) -> int:
        return int(self.item_factors.nbytes)

    def user_factors(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """``[B, f]`` user factors solved from the histories (zeros for empty ones)."""
        f = self.item_factors.shape[1]
        out = np.zeros((len(histories), f), dtype=np.float64)
        base = self.gram + self.regularization * np.eye(f)
        for u, h in enumerate(histories):
            items = np.unique(np.asarray(h, dtype=np.int64))
            if len(items) == 0:
                continue
            yh = self.item_factors[items].astype(np.float64)
            a = base + (self.alpha - 1.0) * (yh.T @ yh)
            out[u] = np.linalg.solve(a, self.alpha * yh.sum(axis=0))
        return out

    def score(self, x: sp.csr_matrix) -> np.ndarray:
        x = sp.csr_matrix(x)
        hist = [x.indices[x.indptr[u] : x.indptr[u + 1]] for u in range(x.shape[0])]
        return (self.user_factors(hist) @ self.item_factors.T.astype(np.float64)).astype(np.float32)

    def part(
        self, histories: Sequence[Sequence[int]], rows: np.ndarray | None = None
    ) -> np.ndarray:
        u = self.user_factors(histories)
        y = self.item_factors if rows is None else self.item_factors[rows]
        raw = u @ y.T.astype(np.float64)
        mean = u @ self.mean
        std = np.sqrt(np.maximum(np.einsum("bf,fg,bg->b", u, self.cov, u), 0.0))
        return _standardise(raw, mean, std)

    def top(self, histories: Sequence[Sequence[int]], n: int) -> list[np.ndarray]:
        u = self.user_factors(histories).astype(np.float32)
        out = []
        for row in u @ self.item_factors.T:
            m = min(n, len(row))
            keep = np.argpartition(-row, m - 1)[:m]
            out.append(keep[np.argsort(-row[keep], kind="stable")].astype(np.int64))
        return out

    def save(self, directory: Path) -> None:
        _write_meta(
            directory,
            self.kind,
            {**self.params, "regularization": self.regularization, "alpha": self.alpha},
        )
        np.save(directory / FACTORS_FILE, self.item_factors)


def _write_meta(directory: Path, kind: str, params: dict[str, float]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / META_FILE).write_text(json.dumps({"kind": kind, **params}, indent=2))


def load_cf(directory: str | Path) -> CFModel | None:
    """The CF model saved in ``directory`` (bundles written before ``cf.json`` existed hold
    a dense ``cf.npy``: EASE or ItemKNN), or None when there is none."""
    d = Path(directory)
    meta = json.loads((d / META_FILE).read_text()) if (d / META_FILE).exists() else {}
    kind = str(meta.pop("kind", "ease"))
    params = {k: float(v) for k, v in meta.items()}
    if kind == "als":
        reg, alpha = params.pop("regularization"), params.pop("alpha")
        return FactorCF(np.load(d / FACTORS_FILE), reg, alpha, params)
    if (d / SPARSE_FILE).exists():
        return ItemItemCF(kind, sp.csr_matrix(sp.load_npz(d / SPARSE_FILE)), params)
    if (d / DENSE_FILE).exists():
        return ItemItemCF(kind, np.load(d / DENSE_FILE), params)
    return None


# --- fitting -----------------------------------------------------------------------------


def choose_cf(kind: str, num_items: int, ease_max_items: int, sparse_max_items: int) -> CFKind:
    """``auto``: dense EASE up to ``ease_max_items`` items, the sparse neighbourhood EASE up
    to ``sparse_max_items``, ALS factors above; other kinds are returned as they are.

    Raises:
        ValueError: ``ease`` asked for a catalogue over ``ease_max_items`` (its matrix would
            not fit), or an unknown kind.
    """
    if kind == "auto":
        if num_items <= ease_max_items:
            return "ease"
        return "sparse" if num_items <= sparse_max_items else "als"
    if kind == "ease" and num_items > ease_max_items:
        gb = 4 * num_items**2 / 1e9
        raise ValueError(
            f"rank.cf=ease needs a dense {num_items:,} x {num_items:,} matrix ({gb:,.0f} GB) "
            f"over rank.ease_max_items={ease_max_items:,}: use rank.cf=sparse, als or auto"
        )
    if kind not in CF_KINDS:
        raise ValueError(f"unknown rank.cf {kind!r} (expected auto or one of {CF_KINDS})")
    return kind  # type: ignore[return-value]


@dataclass(frozen=True)
class CFParams:
    """Hyper-parameters of every kind (each kind reads its own)."""

    ease_lambda: float = 200.0
    neighbours: int = 100
    factors: int = 32
    regularization: float = 1.0
    alpha: float = 5.0
    iterations: int = 15
    seed: int = 0
    threads: int = 0


def fit_cf(kind: str, x: sp.csr_matrix, p: CFParams = CFParams()) -> CFModel:
    """Fit the ``kind`` model on the binary ``users x items`` matrix ``x``."""
    x = sp.csr_matrix(x, dtype=np.float32)
    if kind == "ease":
        return ItemItemCF("ease", EASE(p.ease_lambda).fit(x).weights, {"lambda": p.ease_lambda})
    if kind == "sparse":
        w = neighbours.neighbourhood_ease(x, p.ease_lambda, p.neighbours)
        return ItemItemCF("sparse", w, {"lambda": p.ease_lambda, "neighbours": p.neighbours})
    if kind == "itemknn":
        knn = neighbours.cosine_knn(x, p.neighbours)
        return ItemItemCF("itemknn", knn, {"neighbours": p.neighbours})
    if kind == "als":
        return fit_als(x, p)
    raise ValueError(f"unknown CF kind {kind!r} (expected one of {CF_KINDS})")


def fit_als(x: sp.csr_matrix, p: CFParams) -> FactorCF:
    """ALS with ``implicit`` (conjugate-gradient solver, ``p.threads`` threads, 0 = all)."""
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(1, "blas"):  # implicit's own threads; BLAS threads only contend
        model = AlternatingLeastSquares(
            factors=p.factors,
            regularization=p.regularization,
            alpha=p.alpha,
            iterations=p.iterations,
            random_state=p.seed,
            num_threads=p.threads,
        )
        model.fit(x, show_progress=False)
    params = {"factors": float(p.factors), "iterations": float(p.iterations)}
    return FactorCF(np.asarray(model.item_factors), p.regularization, p.alpha, params)


__all__ = [
    "CF_KINDS",
    "CFKind",
    "CFModel",
    "CFParams",
    "FactorCF",
    "ItemItemCF",
    "choose_cf",
    "fit_cf",
    "load_cf",
]
