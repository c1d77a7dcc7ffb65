"""Hybrid scoring: the language model's score + a collaborative score + a popularity prior.

Each part is standardised per user over the whole catalogue (zero mean, unit spread), then
the parts are added with weights tuned on the validation split and stored with the model
version. Offline evaluation and the serving ranker call the same :class:`HybridScorer`.

The language-model part needs no full pass over the catalogue to be standardised: for a
query embedding ``q`` the mean of ``q . e_i`` over items is ``q . mu`` and its variance is
``q^T Sigma q`` (``mu``, ``Sigma``: mean and covariance of the item embeddings), so a
candidate subset from an approximate index scores exactly as it would in a full ranking.
The collaborative part (:mod:`llmrec.modeling.cf`: dense EASE, sparse neighbourhood EASE,
ItemKNN or ALS factors) is standardised the same way without a dense ``items x items``
product, so the hybrid is served at any catalogue size.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from llmrec.modeling.cf import CFModel, ItemItemCF, load_cf
from llmrec.modeling.transitions import Transitions

WEIGHTS_FILE = "weights.json"
POPULARITY_FILE = "popularity.npy"

CF_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
POPULARITY_GRID = (0.0, 0.1, 0.25, 0.5)
TRANSITION_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
"""Weights of the standardised transition term: its nonzero entries are far out in the
tail of a user's distribution (a handful of successors among thousands of items), so small
weights already move them to the top."""
PARTS = ("llm", "cf", "popularity", "transition")


@dataclass(frozen=True)
class HybridWeights:
    """Weights of the standardised parts; ``llm=1`` and the rest 0 is the LLM alone."""

    llm: float = 1.0
    cf: float = 0.0
    popularity: float = 0.0
    transition: float = 0.0

    def describe(self) -> str:
        return (
            f"llm {self.llm:g} + cf {self.cf:g} + popularity {self.popularity:g}"
            f" + transition {self.transition:g}"
        )


def weight_grid() -> list[HybridWeights]:
    """The (llm, cf, popularity) weights tried on validation: the LLM with every CF /
    popularity weight, plus the collaborative model alone (so that a useless LLM cannot make
    the hybrid worse). The transition weight is tuned after them (:func:`tune_weights`)."""
    grid = [HybridWeights(1.0, c, p) for c, p in itertools.product(CF_GRID, POPULARITY_GRID)]
    grid += [HybridWeights(0.0, 1.0, p) for p in POPULARITY_GRID]
    return grid


def with_model(weights: HybridWeights) -> HybridWeights:
    """``weights`` with the model's term at 1 or more: a typed request reaches the ranking
    only through the model, so it must count even where the CF model alone won on
    validation."""
    return dataclasses.replace(weights, llm=max(weights.llm, 1.0))


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
        item_embeddings: ``[items, dim]`` item-tower embeddings (catalogue order); float16
            halves a large catalogue's memory (candidate rows are scored in float32).
        weights: How the standardised parts are added.
        cf: The collaborative model (:mod:`llmrec.modeling.cf`); a dense ``[items, items]``
            array is taken as an item-item matrix (a user's CF scores are their binary history
            vector times it).
        popularity: ``[items]`` interaction counts.
        request_weights: The weights for users who typed a request (their text reaches the
            ranking only through the model's term); None: ``weights`` with the model's weight
            raised to at least 1.
        transitions: What followed what in the logs (:class:`Transitions`): the transition
            term scores what followed the user's last item.
    """

    def __init__(
        self,
        item_embeddings: np.ndarray,
        weights: HybridWeights = HybridWeights(),
        cf: CFModel | np.ndarray | None = None,
        popularity: np.ndarray | None = None,
        request_weights: HybridWeights | None = None,
        transitions: Transitions | None = None,
    ) -> None:
        items = np.asarray(item_embeddings)
        self.items = items if items.dtype == np.float16 else items.astype(np.float32)
        self.weights = weights
        self.request_weights = request_weights or with_model(weights)
        self.cf: CFModel | None = (
            ItemItemCF("ease", cf.astype(np.float32), {}) if isinstance(cf, np.ndarray) else cf
        )
        n = len(self.items)
        if self.cf is not None and self.cf.num_items != n:
            raise ValueError(f"the CF model has {self.cf.num_items} items, expected {n}")
        if transitions is not None and transitions.num_items != n:
            raise ValueError(f"the transitions have {transitions.num_items} items, expected {n}")
        self.transitions = transitions
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
        self.mean, self.cov = _moments(self.items)

    @property
    def num_items(self) -> int:
        return len(self.items)

    def extend(self, vectors: np.ndarray) -> None:
        """Append items added after training (live catalogue changes). The collaborative
        model and the popularity counts know nothing of them: their CF and popularity parts
        are 0, the catalogue's mean (neither pushed down for lacking interactions nor up);
        the LLM part is standardised with the trained catalogue's statistics."""
        vecs = np.asarray(vectors, dtype=self.items.dtype).reshape(-1, self.items.shape[1])
        self.items = np.concatenate([self.items, vecs])
        if self.popularity_counts is not None and self.popularity is not None:
            zeros = np.zeros(len(vecs), dtype=np.float32)
            self.popularity_counts = np.concatenate([self.popularity_counts, zeros])
            self.popularity = np.concatenate([self.popularity, zeros])

    def set_vectors(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the vectors of existing item rows (an item re-embedded after an update)."""
        self.items[np.asarray(rows, dtype=np.int64)] = np.asarray(vectors, dtype=self.items.dtype)

    @property
    def uses_history(self) -> bool:
        """Whether a user's history reaches the score other than through the model (the CF
        or the transition term is weighted)."""
        cf = self.cf is not None and (self.weights.cf != 0.0 or self.request_weights.cf != 0.0)
        weighted = self.weights.transition != 0.0 or self.request_weights.transition != 0.0
        return cf or (self.transitions is not None and weighted)

    def llm_part(self, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Standardised LLM scores of ``queries`` ``[B, dim]`` for all items, or for the item
        indices ``rows`` only (same values as the full computation)."""
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        items = self.items if rows is None else self.items[rows]
        raw = q @ items.astype(np.float32, copy=False).T
        mean = q @ self.mean
        std = np.sqrt(np.maximum(np.einsum("bd,de,be->b", q, self.cov, q), 1e-12))
        return (raw - mean[:, None]) / std[:, None]

    def cf_part(
        self, histories: Sequence[Sequence[int]], rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Standardised collaborative scores ``[B, items]`` (or ``[B, len(rows)]``, the same
        values); zeros without a CF model."""
        if self.cf is None:
            width = self.num_items if rows is None else len(rows)
            return np.zeros((len(histories), width), dtype=np.float32)
        n = self.cf.num_items
        if self.num_items == n:
            return self.cf.part(histories, rows)
        # items appended after training (:meth:`extend`) have no CF part: 0, the mean
        rows = np.arange(self.num_items) if rows is None else np.asarray(rows, dtype=np.int64)
        known = [[i for i in h if i < n] for h in histories]
        out = np.zeros((len(histories), len(rows)), dtype=np.float32)
        trained = rows < n
        if trained.any():
            out[:, trained] = self.cf.part(known, rows[trained])
        return out

    def transition_part(
        self, histories: Sequence[Sequence[int]], rows: np.ndarray | None = None
    ) -> np.ndarray:
        """Standardised transition scores ``[B, items]`` (or ``[B, len(rows)]``); zeros
        without transitions and for items appended after training."""
        width = self.num_items if rows is None else len(rows)
        if self.transitions is None:
            return np.zeros((len(histories), width), dtype=np.float32)
        n = self.transitions.num_items
        if self.num_items == n:
            return self.transitions.part(histories, rows)
        rows = np.arange(self.num_items) if rows is None else np.asarray(rows, dtype=np.int64)
        out = np.zeros((len(histories), len(rows)), dtype=np.float32)
        trained = rows < n
        if trained.any():
            out[:, trained] = self.transitions.part(histories, rows[trained])
        return out

    def history_candidates(self, histories: Sequence[Sequence[int]], n: int) -> list[np.ndarray]:
        """Per user, the rows of the ``n`` items the CF model scores highest and of the ``n``
        items that most often followed their last item (the terms that are weighted)."""
        out = [np.zeros(0, dtype=np.int64) for _ in histories]
        if self.cf is not None and (self.weights.cf or self.request_weights.cf):
            known = [[i for i in h if i < self.cf.num_items] for h in histories]
            out = [np.union1d(a, b) for a, b in zip(out, self.cf.top(known, n), strict=True)]
        weighted = self.weights.transition or self.request_weights.transition
        if self.transitions is not None and weighted:
            top = self.transitions.top(histories, n)
            out = [np.union1d(a, b) for a, b in zip(out, top, strict=True)]
        return out

    def popularity_part(self) -> np.ndarray:
        if self.popularity is None:
            return np.zeros(self.num_items, dtype=np.float32)
        return self.popularity

    def scores(
        self,
        queries: np.ndarray,
        histories: Sequence[Sequence[int]],
        rows: np.ndarray | None = None,
        requests: Sequence[bool] | None = None,
    ) -> np.ndarray:
        """``[B, items]`` hybrid scores (or ``[B, len(rows)]`` for candidate rows); the users
        flagged in ``requests`` (they typed a request) are scored with ``request_weights``."""
        picked = [
            self.request_weights if asked else self.weights
            for asked in (requests if requests is not None else [False] * len(histories))
        ]
        w = {
            part: np.array([getattr(p, part) for p in picked], dtype=np.float32)[:, None]
            for part in PARTS
        }
        out = w["llm"] * self.llm_part(queries, rows)
        if w["cf"].any() and self.cf is not None:
            out = out + w["cf"] * self.cf_part(histories, rows)
        if w["popularity"].any() and self.popularity is not None:
            pop = self.popularity if rows is None else self.popularity[rows]
            out = out + w["popularity"] * pop[None, :]
        if w["transition"].any() and self.transitions is not None:
            out = out + w["transition"] * self.transition_part(histories, rows)
        return out.astype(np.float32)

    def with_weights(
        self, weights: HybridWeights, request_weights: HybridWeights | None = None
    ) -> HybridScorer:
        """The same parts under other weights (no recomputation of the statistics)."""
        other = copy.copy(self)
        other.weights = weights
        other.request_weights = request_weights or with_model(weights)
        return other

    def save(self, directory: str | Path, meta: dict[str, object] | None = None) -> None:
        """``weights.json`` (+ metadata such as how the weights were tuned), the CF model in
        its compact form (``cf.json`` + ``cf.npy`` dense, ``cf.npz`` sparse or
        ``cf_item_factors.npy``), ``popularity.npy`` and ``transitions.npz``; the item
        embeddings are stored with the bundle."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        weights = {"weights": asdict(self.weights)}
        weights["request_weights"] = asdict(self.request_weights)
        (d / WEIGHTS_FILE).write_text(json.dumps({**weights, **(meta or {})}, indent=2))
        if self.cf is not None:
            self.cf.save(d)
        if self.popularity_counts is not None:
            np.save(d / POPULARITY_FILE, self.popularity_counts)
        if self.transitions is not None:
            self.transitions.save(d)

    @classmethod
    def load(cls, directory: str | Path, item_embeddings: np.ndarray) -> HybridScorer:
        """The scorer saved by :meth:`save`, over the bundle's item embeddings."""
        d = Path(directory)
        meta = json.loads((d / WEIGHTS_FILE).read_text())
        pop = np.load(d / POPULARITY_FILE) if (d / POPULARITY_FILE).exists() else None
        asked = meta.get("request_weights")
        request = HybridWeights(**asked) if asked else None
        return cls(
            item_embeddings,
            HybridWeights(**meta["weights"]),
            load_cf(d),
            pop,
            request,
            Transitions.load(d),
        )


def _moments(items: np.ndarray, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
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
    transition: np.ndarray | None = None,
) -> Tuned:
    """Pick the weights with the best ``metric(scores)`` on validation.

    The (llm, cf, popularity) settings of ``grid`` are tried first; with a ``transition``
    part, every :data:`TRANSITION_GRID` weight is then tried on top of the best of them,
    beside the chain alone (the transition term with each popularity weight: so that the
    hybrid is never below the Markov chain it could have used), and the (llm, cf,
    popularity) grid is tried once more around the best transition weight.

    Args:
        llm: ``[users, items]`` standardised LLM scores (:meth:`HybridScorer.llm_part`).
        cf: ``[users, items]`` standardised CF scores.
        popularity: ``[items]`` standardised popularity.
        metric: maps a score matrix to the value to maximise (e.g. validation NDCG@10).
        grid: (llm, cf, popularity) settings to try (default :func:`weight_grid`).
        transition: ``[users, items]`` standardised transition scores, or None.
    """
    base = list(grid or weight_grid())
    tried: dict[HybridWeights, float] = {}

    def attempt(w: HybridWeights) -> float:
        if w not in tried:
            scores = w.llm * llm + w.cf * cf + w.popularity * popularity[None, :]
            if w.transition and transition is not None:
                scores = scores + w.transition * transition
            tried[w] = metric(scores)
        return tried[w]

    for w in base:
        attempt(w)
    if transition is not None:
        best = max(tried, key=tried.__getitem__)
        for t in TRANSITION_GRID:
            attempt(dataclasses.replace(best, transition=t))
        for p in (0.01, *POPULARITY_GRID):  # 0.01: popularity only breaks the chain's ties
            attempt(HybridWeights(0.0, 0.0, p, 1.0))
        t = max(tried, key=tried.__getitem__).transition
        for w in base:
            attempt(dataclasses.replace(w, transition=t))
    best = max(tried, key=tried.__getitem__)
    return Tuned(best, list(tried.items()))
