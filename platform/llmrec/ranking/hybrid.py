"""Hybrid scoring: the language model's score + a collaborative score + a popularity prior.

Each part is standardised per user over the whole catalogue (zero mean, unit spread), then
the parts are added with weights tuned on the validation split and stored with the model
version (:mod:`llmrec.ranking.weights`). Offline evaluation and the serving ranker call the
same :class:`HybridScorer`.

The language-model part needs no full pass over the catalogue to be standardised: for a
query embedding ``q`` the mean of ``q . e_i`` over items is ``q . mu`` and its variance is
``q^T Sigma q`` (``mu``, ``Sigma``: mean and covariance of the item embeddings;
:mod:`llmrec.ranking.moments`), so a candidate subset from an approximate index scores
exactly as it would in a full ranking. The collaborative part (:mod:`llmrec.modeling.cf`:
dense EASE, sparse neighbourhood EASE, ItemKNN or ALS factors) is standardised the same way
without a dense ``items x items`` product, so the hybrid is served at any catalogue size.

The text-match part (versions that hold ``text_vectors.npy``; :mod:`llmrec.ranking.text_match`)
scores a request with typed text by the frozen base model's cosine with each item's text.
The encoder sends the request's base embedding after the user vector's columns (a
``[B, dim + text_dim]`` row; zeros: no request), and a live item's base text embedding after
its item vector; :meth:`HybridScorer.split` takes them apart.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llmrec.modeling.cf import CFModel, ItemItemCF, load_cf
from llmrec.modeling.transitions import Transitions
from llmrec.ranking.moments import moments, standardised, standardize
from llmrec.ranking.text_index import TextIndex
from llmrec.ranking.text_match import TEXT_WEIGHT, described_rows, text_scores
from llmrec.ranking.weights import (
    PARTS,
    HybridWeights,
    weights_from_json,
    weights_json,
    with_model,
)

WEIGHTS_FILE = "weights.json"
POPULARITY_FILE = "popularity.npy"
TEXT_FILE = "text_vectors.npy"
LLM_ALONE = HybridWeights()
"""The default weights: the language model's part alone."""


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
        item_text: ``[items, text_dim]`` the frozen base model's normalised embeddings of
            the items' texts (the text-match term); None: no such term.
    """

    def __init__(
        self,
        item_embeddings: np.ndarray,
        weights: HybridWeights = LLM_ALONE,
        cf: CFModel | np.ndarray | None = None,
        popularity: np.ndarray | None = None,
        request_weights: HybridWeights | None = None,
        transitions: Transitions | None = None,
        item_text: np.ndarray | None = None,
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
        self.mean, self.cov = moments(self.items)
        self.item_text: np.ndarray | None = None
        self.text_index: TextIndex | None = None  # None: best text matches found exactly
        self.text_mean = self.text_cov = np.zeros(0, dtype=np.float32)
        if item_text is not None:
            text = np.asarray(item_text)
            if len(text) != n:
                raise ValueError(f"the text vectors have {len(text)} items, expected {n}")
            self.item_text = text.astype(self.items.dtype)  # its own: live updates write it
            self.text_mean, self.text_cov = moments(self.item_text)

    @property
    def num_items(self) -> int:
        return len(self.items)

    @property
    def dim(self) -> int:
        """Width of the model's user and item vectors."""
        return int(self.items.shape[1])

    @property
    def text_dim(self) -> int:
        """Width of the text-match vectors (0: the version has no text-match term)."""
        return 0 if self.item_text is None else int(self.item_text.shape[1])

    def split(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """``[B, dim]`` model vectors and ``[B, text_dim]`` text-match vectors (None: the
        rows carry none, or the version has no text-match term) of user or item rows laid
        out as the encoder sends them (``[B, dim]`` or ``[B, dim + text_dim]``)."""
        rows = np.atleast_2d(np.asarray(rows))
        width = rows.shape[1]
        if self.item_text is not None and width == self.dim + self.text_dim:
            return rows[:, : self.dim], rows[:, self.dim :]
        if width != self.dim:
            raise ValueError(
                f"rows of width {width}; expected {self.dim}"
                + (f" or {self.dim + self.text_dim}" if self.item_text is not None else "")
            )
        return rows, None

    def with_text(self, item_text: np.ndarray, weight: float | None = None) -> HybridScorer:
        """This scorer with the text-match term over ``item_text`` (``[items, text_dim]``):
        requests with typed text weigh it ``weight``, or, when None, what the request
        weights say or :data:`TEXT_WEIGHT` where they say 0."""
        text = weight if weight is not None else self.request_weights.text or TEXT_WEIGHT
        other = copy.copy(self)
        other.request_weights = dataclasses.replace(self.request_weights, text=text)
        vectors = np.asarray(item_text)
        if len(vectors) != self.num_items:
            n = self.num_items
            raise ValueError(f"the text vectors have {len(vectors)} items, expected {n}")
        other.item_text = vectors.astype(self.items.dtype)
        other.text_index = None  # the old vectors' index
        other.text_mean, other.text_cov = moments(other.item_text)
        return other

    def index_text(self) -> None:
        """From now on find each request's best text matches (:meth:`text_candidates`,
        the stand-out floor of :meth:`text_part`) in an approximate index over the text
        vectors (:class:`~llmrec.ranking.text_index.TextIndex`), not by a product with all
        of them: for large catalogues. The scores stay exact."""
        if self.item_text is not None:
            self.text_index = TextIndex(self.item_text)

    def extend(self, vectors: np.ndarray) -> None:
        """Append items added after training (live catalogue changes). The collaborative
        model and the popularity counts know nothing of them: their CF and popularity parts
        are 0, the catalogue's mean (neither pushed down for lacking interactions nor up);
        the LLM part is standardised with the trained catalogue's statistics, and so is the
        text-match part (``vectors`` rows as the encoder's ``embed_items`` lays them out:
        the item vector, then the text-match vector; an item without one matches no text).
        """
        vecs, text = self.split(np.asarray(vectors).reshape(len(vectors), -1))
        self.items = np.concatenate([self.items, vecs.astype(self.items.dtype)])
        if self.item_text is not None:
            if text is None:
                text = np.zeros((len(vecs), self.text_dim))
            if self.text_index is not None:
                self.text_index.add(text, np.arange(len(self.item_text), len(self.items)))
            self.item_text = np.concatenate([self.item_text, text.astype(self.item_text.dtype)])
        if self.popularity_counts is not None and self.popularity is not None:
            zeros = np.zeros(len(vecs), dtype=np.float32)
            self.popularity_counts = np.concatenate([self.popularity_counts, zeros])
            self.popularity = np.concatenate([self.popularity, zeros])

    def set_vectors(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the vectors of existing item rows (an item re-embedded after an update;
        rows laid out as in :meth:`extend`)."""
        vecs, text = self.split(vectors)
        rows = np.asarray(rows, dtype=np.int64)
        self.items[rows] = vecs.astype(self.items.dtype)
        if self.item_text is not None and text is not None:
            self.item_text[rows] = text.astype(self.item_text.dtype)
            if self.text_index is not None:
                self.text_index.replace(rows, text)

    @property
    def uses_history(self) -> bool:
        """Whether a user's history reaches the score other than through the model (the CF
        or the transition term is weighted)."""
        cf = self.cf is not None and (self.weights.cf != 0.0 or self.request_weights.cf != 0.0)
        weighted = self.weights.transition != 0.0 or self.request_weights.transition != 0.0
        return cf or (self.transitions is not None and weighted)

    def llm_part(self, queries: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        """Standardised LLM scores of ``queries`` ``[B, dim]`` for all items, or for the item
        indices ``rows`` only (same values as the full computation). Rows that carry a
        text-match vector after the user vector (:meth:`split`) are read up to ``dim``."""
        q = self.split(np.asarray(queries, dtype=np.float32))[0]
        return standardised(q, self.items, self.mean, self.cov, rows)

    def text_part(
        self,
        queries: np.ndarray,
        rows: np.ndarray | None = None,
        histories: Sequence[Sequence[int]] | None = None,
    ) -> np.ndarray:
        """Text-match scores ``[B, items]`` (or ``[B, len(rows)]``, the same values): the
        base model's cosine between each request (the columns of ``queries`` after the user
        vector, :meth:`split`) and each item's text, standardised over the catalogue; for a
        user with a history (``histories``; None: none has one) only what an item has above
        the request's :data:`~llmrec.ranking.text_match.STAND_OUT_RANK`-th best item plus
        :data:`~llmrec.ranking.text_match.STAND_OUT_MARGIN` (:func:`text_scores`). Zeros
        for rows without a request, queries without those columns, and versions without the
        text-match term."""
        q, text = self.split(np.asarray(queries, dtype=np.float32))
        width = self.num_items if rows is None else len(rows)
        if text is None or self.item_text is None:
            return np.zeros((len(q), width), dtype=np.float32)
        mean, cov, index = self.text_mean, self.text_cov, self.text_index
        return text_scores(text, self.item_text, mean, cov, rows, histories, index)

    def text_candidates(self, queries: np.ndarray, n: int) -> list[np.ndarray]:
        """Per row, the rows of the ``n`` items whose text matches its request best (none
        for a row without a request): an approximate index over the model's vectors may not
        hold the item a request describes. Found in :attr:`text_index` when there is one
        (:meth:`index_text`)."""
        q, text = self.split(np.asarray(queries, dtype=np.float32))
        if text is None or self.item_text is None:
            return [np.zeros(0, dtype=np.int64) for _ in range(len(q))]
        return described_rows(text, self.item_text, n, self.text_index)

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
        flagged in ``requests`` (they typed a request) are scored with ``request_weights``.
        ``queries``: ``[B, dim]`` user vectors, or ``[B, dim + text_dim]`` with each
        request's text-match vector after them (:meth:`split`)."""
        picked = [
            self.request_weights if asked else self.weights
            for asked in (requests if requests is not None else [False] * len(histories))
        ]
        w = {
            part: np.array([getattr(p, part) for p in picked], dtype=np.float32)[:, None]
            for part in PARTS
        }
        out = w["llm"] * self.llm_part(queries, rows)
        if w["text"].any() and self.item_text is not None:
            out = out + w["text"] * self.text_part(queries, rows, histories)
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
        ``cf_item_factors.npy``), ``popularity.npy``, ``transitions.npz`` and the items'
        text-match vectors ``text_vectors.npy``; the item embeddings are stored with the
        bundle."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        weights = weights_json(self.weights, self.request_weights)
        (d / WEIGHTS_FILE).write_text(json.dumps({**(meta or {}), **weights}, indent=2))
        if self.cf is not None:
            self.cf.save(d)
        if self.popularity_counts is not None:
            np.save(d / POPULARITY_FILE, self.popularity_counts)
        if self.transitions is not None:
            self.transitions.save(d)
        if self.item_text is not None:
            np.save(d / TEXT_FILE, np.asarray(self.item_text, dtype=np.float32))

    @classmethod
    def load(cls, directory: str | Path, item_embeddings: np.ndarray) -> HybridScorer:
        """The scorer saved by :meth:`save`, over the bundle's item embeddings (versions
        saved before the text-match term load without it)."""
        d = Path(directory)
        weights, request = weights_from_json(json.loads((d / WEIGHTS_FILE).read_text()))
        pop = np.load(d / POPULARITY_FILE) if (d / POPULARITY_FILE).exists() else None
        text = np.load(d / TEXT_FILE) if (d / TEXT_FILE).exists() else None
        return cls(
            item_embeddings,
            weights,
            load_cf(d),
            pop,
            request,
            Transitions.load(d),
            text,
        )
