"""Hybrid scoring: the language model's score + a collaborative score + a popularity prior.

Each part is standardised per user over the whole catalogue (zero mean, unit spread), then
the parts are added with weights tuned on the validation split and stored with the model
version. Offline evaluation and the serving ranker call the same :class:`HybridScorer`.

The language-model part needs no full pass over the catalogue to be standardised: for a
query embedding ``q`` the mean of ``q . e_i`` over items is ``q . mu`` and its variance is
``q^T Sigma q`` (``mu``, ``Sigma``: mean and covariance of the item embeddings), so a
candidate subset from an approximate index scores exactly as it would in a full ranking.
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llmrec.modeling.baselines import interaction_matrix

WEIGHTS_FILE = "weights.json"
CF_FILE = "cf.npy"
POPULARITY_FILE = "popularity.npy"

CF_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
POPULARITY_GRID = (0.0, 0.1, 0.25, 0.5)


@dataclass(frozen=True)
class HybridWeights:
    """Weights of the standardised parts; ``llm=1, cf=0, popularity=0`` is the LLM alone."""

    llm: float = 1.0
    cf: float = 0.0
    popularity: float = 0.0

    def describe(self) -> str:
        return f"llm {self.llm:g} + cf {self.cf:g} + popularity {self.popularity:g}"


def weight_grid() -> list[HybridWeights]:
    """The weights tried on validation: the LLM with every CF / popularity weight, plus the
    collaborative model alone (so that a useless LLM cannot make the hybrid worse)."""
    grid = [HybridWeights(1.0, c, p) for c, p in itertools.product(CF_GRID, POPULARITY_GRID)]
    grid += [HybridWeights(0.0, 1.0, p) for p in POPULARITY_GRID]
    return grid


def standardize(scores: np.ndarray) -> np.ndarray:
    """Per row: subtract the mean, divide by the standard deviation (rows with no spread
    become zeros)."""
    scores = np.asarray(scores, dtype=np.float32)
    mean = scores.mean(axis=-1, keepdims=True)
    std = scores.std(axis=-1, keepdims=True)
    return np.divide(scores - mean, std, out=np.zeros_like(scores), where=std > 1e-12)


class HybridScorer:
    """Scores items for users from a query embedding and the user's history.

    Args:
        item_embeddings: ``[items, dim]`` item-tower embeddings (catalogue order).
        weights: How the standardised parts are added.
        cf_matrix: ``[items, items]`` item-item weights (EASE ``B`` or ItemKNN similarities);
            a user's CF scores are their binary history vector times this matrix.
        popularity: ``[items]`` interaction counts.
    """

    def __init__(
        self,
        item_embeddings: np.ndarray,
        weights: HybridWeights = HybridWeights(),
        cf_matrix: np.ndarray | None = None,
        popularity: np.ndarray | None = None,
    ) -> None:
        self.items = np.asarray(item_embeddings, dtype=np.float32)
        self.weights = weights
        self.cf_matrix = cf_matrix
        n = len(self.items)
        if cf_matrix is not None and cf_matrix.shape != (n, n):
            raise ValueError(f"cf matrix is {cf_matrix.shape}, expected ({n}, {n})")
        if popularity is not None and len(popularity) != n:
            raise ValueError(f"popularity has {len(popularity)} items, expected {n}")
        self.popularity_counts = (
            None if popularity is None else np.asarray(popularity, dtype=np.float32)
        )
        self.popularity = (
            None
            if self.popularity_counts is None
            else standardize(np.log1p(self.popularity_counts)[None, :])[0]
        )
        self.mean = self.items.mean(axis=0)
        centred = self.items - self.mean
        self.cov = (centred.T @ centred / max(n, 1)).astype(np.float32)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def uses_history(self) -> bool:
        return self.weights.cf != 0.0 and self.cf_matrix is not None

    def llm_part(self, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Standardised LLM scores of ``queries`` ``[B, dim]`` for all items, or for the item
        indices ``rows`` only (same values as the full computation)."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        items = self.items if rows is None else self.items[rows]
        raw = q @ items.T
        mean = q @ self.mean
        std = np.sqrt(np.maximum(np.einsum("bd,de,be->b", q, self.cov, q), 1e-12))
        return (raw - mean[:, None]) / std[:, None]

    def cf_part(self, histories: Sequence[Sequence[int]]) -> np.ndarray:
        """Standardised collaborative scores ``[B, items]`` (zeros without a CF matrix)."""
        if self.cf_matrix is None:
            return np.zeros((len(histories), self.num_items), dtype=np.float32)
        x = interaction_matrix(histories, self.num_items)
        return standardize(np.asarray(x @ self.cf_matrix))

    def popularity_part(self) -> np.ndarray:
        if self.popularity is None:
            return np.zeros(self.num_items, dtype=np.float32)
        return self.popularity

    def scores(
        self,
        queries: np.ndarray,
        histories: Sequence[Sequence[int]],
        rows: np.ndarray | None = None,
    ) -> np.ndarray:
        """``[B, items]`` hybrid scores (or ``[B, len(rows)]`` for candidate rows)."""
        w = self.weights
        out = w.llm * self.llm_part(queries, rows)
        if w.cf and self.cf_matrix is not None:
            cf = self.cf_part(histories)
            out = out + w.cf * (cf if rows is None else cf[:, rows])
        if w.popularity and self.popularity is not None:
            pop = self.popularity if rows is None else self.popularity[rows]
            out = out + w.popularity * pop[None, :]
        return out.astype(np.float32)

    def with_weights(self, weights: HybridWeights) -> HybridScorer:
        """The same parts under other weights (no recomputation of the statistics)."""
        other = copy.copy(self)
        other.weights = weights
        return other

    def save(self, directory: str | Path, meta: dict[str, object] | None = None) -> None:
        """``weights.json`` (+ metadata such as how the weights were tuned), ``cf.npy`` and
        ``popularity.npy``; the item embeddings are stored with the bundle."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        (d / WEIGHTS_FILE).write_text(
            json.dumps({"weights": asdict(self.weights), **(meta or {})}, indent=2)
        )
        if self.cf_matrix is not None:
            np.save(d / CF_FILE, self.cf_matrix.astype(np.float32))
        if self.popularity_counts is not None:
            np.save(d / POPULARITY_FILE, self.popularity_counts)

    @classmethod
    def load(cls, directory: str | Path, item_embeddings: np.ndarray) -> HybridScorer:
        """The scorer saved by :meth:`save`, over the bundle's item embeddings."""
        d = Path(directory)
        meta = json.loads((d / WEIGHTS_FILE).read_text())
        cf = np.load(d / CF_FILE) if (d / CF_FILE).exists() else None
        pop = np.load(d / POPULARITY_FILE) if (d / POPULARITY_FILE).exists() else None
        return cls(item_embeddings, HybridWeights(**meta["weights"]), cf, pop)


@dataclass(frozen=True)
class Tuned:
    """The weights picked on validation and the metric of every weight setting tried."""

    weights: HybridWeights
    tried: list[tuple[HybridWeights, float]]

    @property
    def value(self) -> float:
        """The metric of the picked weights."""
        return max(v for _, v in self.tried)


def tune_weights(
    llm: np.ndarray,
    cf: np.ndarray,
    popularity: np.ndarray,
    metric: Callable[[np.ndarray], float],
    grid: Sequence[HybridWeights] | None = None,
) -> Tuned:
    """Pick the weights with the best ``metric(scores)`` on validation.

    Args:
        llm: ``[users, items]`` standardised LLM scores (:meth:`HybridScorer.llm_part`).
        cf: ``[users, items]`` standardised CF scores.
        popularity: ``[items]`` standardised popularity.
        metric: maps a score matrix to the value to maximise (e.g. validation NDCG@10).
        grid: weight settings to try (default :func:`weight_grid`).
    """
    tried = []
    for w in grid or weight_grid():
        tried.append((w, metric(w.llm * llm + w.cf * cf + w.popularity * popularity[None, :])))
    best = max(tried, key=lambda t: t[1])[0]
    return Tuned(best, tried)


def cf_matrix_from(model: object) -> np.ndarray:
    """The item-item matrix of a fitted EASE (``weights``) or ItemKNN (``similarity``)."""
    for attr in ("weights", "similarity"):
        value = getattr(model, attr, None)
        if isinstance(value, np.ndarray):
            return value.astype(np.float32)
    raise TypeError(f"{type(model).__name__} has no item-item matrix")
