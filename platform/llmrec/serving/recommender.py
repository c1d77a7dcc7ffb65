"""Serving logic as plain classes (Ray Serve wraps them in ``serve_deployments``).

The work of a request is split the way the scoring graph is: :class:`QueryBuilder` turns a
request into text, a history and the items to leave out (cheap, at the edge),
:class:`QueryEncoder` runs the language model (the expensive, batchable part),
:class:`CandidateRanker` finds candidates in the item index, scores them with the version's
hybrid scorer, filters them and re-ranks them (diversity, calibration, long-tail share, caps
per attribute value: one :class:`~llmrec.ranking.slate.Reranker`, as offline).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from llmrec.bundle import ModelBundle
from llmrec.ranking.index import ItemIndex, build_index, choose_index
from llmrec.ranking.rerank import SlateSpec
from llmrec.ranking.slate import ItemFacts, Reranker
from llmrec.serving.backends import query_scorer
from llmrec.serving.history import HistoryStore
from llmrec.serving.schemas import RecommendedItem, RecommendRequest
from llmrec.serving.settings import ServeSettings


class RequestError(ValueError):
    """A request that cannot be served as asked; ``status`` is the HTTP status to answer,
    ``field`` the request field at fault (None: the request as a whole)."""

    def __init__(self, status: int, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Query:
    """A request resolved against the model version: what to encode and how to rank.

    ``history`` (item ids, oldest first) and ``request`` (the free text typed, if any) are
    what the user tower encodes; the rest says how to rank.
    """

    history: tuple[str, ...]
    request: str | None
    exclude: tuple[str, ...]
    k: int
    categories: tuple[str, ...] = ()
    diversity: float | None = None
    calibration: float | None = None
    tail_share: float | None = None
    max_per: tuple[tuple[str, int], ...] | None = None
    """Caps per attribute value; None: the version's default (``rank.max_per``)."""


def _listed(ids: Sequence[str], what: str) -> str:
    shown = ", ".join(repr(i) for i in ids[:10])
    more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
    return f"{what}: {shown}{more}"


class QueryBuilder:
    """Resolves users, histories and filters against one model version's catalogue.

    Known users' histories come from ``store`` (training logs + feedback) when given, else
    from the logs shipped with the version.
    """

    def __init__(
        self,
        bundle: ModelBundle,
        store: HistoryStore | None = None,
        settings: ServeSettings | None = None,
    ) -> None:
        self.catalogue = bundle.catalogue
        self.histories = bundle.histories
        self.store = store
        s = settings or ServeSettings()
        self.max_query_chars = s.max_query_chars
        self.max_request_history = s.max_history
        self.categories = self.catalogue.categories

    def build(self, req: RecommendRequest) -> Query:
        """Raises RequestError 404 for an unknown user, item or category (well-formed, but
        not in this version's catalogue), 422 for text or histories over the configured
        limits."""
        if req.query is not None and len(req.query) > self.max_query_chars:
            raise RequestError(
                422,
                f"query is {len(req.query)} characters; the limit is {self.max_query_chars}",
                "query",
            )
        seen: frozenset[str] | tuple[str, ...]
        if req.user_id is not None:
            history, seen = self._user(req.user_id)
        else:
            history = list(req.history or [])
            if len(history) > self.max_request_history:
                raise RequestError(
                    422,
                    f"history has {len(history)} items; the limit is {self.max_request_history}",
                    "history",
                )
            unknown = [i for i in history if i not in self.catalogue]
            if unknown:
                raise RequestError(404, _listed(unknown, "unknown item ids in history"), "history")
            seen = tuple(history)
        unknown = [i for i in req.exclude if i not in self.catalogue]
        if unknown:
            raise RequestError(404, _listed(unknown, "unknown item ids in exclude"), "exclude")
        wanted = set(self.categories)
        bad = [c for c in req.categories if c not in wanted]
        if bad:
            raise RequestError(
                404,
                _listed(bad, "unknown categories") + f" (known: {', '.join(self.categories)})",
                "categories",
            )
        attributes = self.catalogue.attribute_names
        unknown_attrs = [a for a in (req.max_per or {}) if a not in attributes]
        if unknown_attrs:
            raise RequestError(
                404,
                _listed(unknown_attrs, "unknown attributes in max_per")
                + f" (known: {', '.join(attributes)})",
                "max_per",
            )
        return Query(
            history=tuple(history),
            request=req.query if req.query and req.query.strip() else None,
            exclude=tuple(dict.fromkeys([*seen, *req.exclude])),
            k=req.k,
            categories=tuple(req.categories),
            diversity=req.diversity,
            calibration=req.calibration,
            tail_share=req.tail_share,
            max_per=None if req.max_per is None else tuple(sorted(req.max_per.items())),
        )

    def _user(self, user_id: str) -> tuple[list[str], frozenset[str] | tuple[str, ...]]:
        if self.store is not None:
            state = self.store.user(user_id)
            if state is not None:
                known = [i for i in state.history if i in self.catalogue]
                return known, state.seen
        elif user_id in self.histories:
            history = self.histories[user_id]
            return history, tuple(history)
        raise RequestError(
            404,
            f"unknown user_id {user_id!r}: no history in the logs or feedback; "
            "send a history or a query instead",
            "user_id",
        )


def pick_device(device: str) -> str:
    """``auto``: CUDA when there is a GPU, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class QueryEncoder:
    """The user tower of a version (the language model, and the sequential model when the
    version has one): resolved queries in, user vectors out."""

    def __init__(
        self, bundle: ModelBundle, threads: int = 1, device: str = "auto", backend: str = "torch"
    ) -> None:
        torch.set_num_threads(threads)
        self.device = pick_device(device)
        towers = bundle.load_towers().to(self.device)
        towers.use_scorer(query_scorer(towers.scorer, backend, self.device))
        self.towers = towers

    def encode(self, queries: Sequence[Query]) -> np.ndarray:
        """``[len(queries), dim]`` float32 user vectors, one forward pass for the batch."""
        return self.towers.encode_users(
            [q.history for q in queries], [q.request for q in queries]
        ).astype(np.float32)


class CandidateRanker:
    """Candidates from the item index, hybrid scores, filters, re-ranking.

    The version's ``rank.*`` settings are the re-ranking defaults; a query's ``diversity``,
    ``calibration``, ``tail_share`` and ``max_per`` replace them for that request.

    Raises:
        ValueError: the version's ``rank.max_per`` names an attribute its catalogue lacks.
    """

    def __init__(self, bundle: ModelBundle, settings: ServeSettings | None = None) -> None:
        s = settings or ServeSettings()
        cat = bundle.catalogue
        self.ids = cat.ids
        self.index = cat.index
        self.titles = [cat.title(i) for i in self.ids]
        kind = choose_index(s.index, len(self.ids), s.ann_min_items, s.compact_min_items)
        # a large catalogue keeps float16 vectors: candidates are re-scored in float32
        compact = kind != "exact" and len(self.ids) >= s.compact_min_items
        emb = bundle.read_embeddings(np.float16) if compact else bundle.item_embeddings
        self.hybrid = bundle.load_hybrid(emb)
        self.items: ItemIndex = bundle.prebuilt_index(kind, s.hnsw_ef_search) or build_index(
            emb, kind, s.ann_min_items, s.hnsw_m, s.hnsw_ef_search, s.compact_min_items
        )
        self.candidates = s.candidates
        rank = bundle.config.rank
        self.depth = rank.rerank_depth
        vectors = cat.category_vectors() if rank.similarity == "categories" else emb
        counts: np.ndarray
        if self.hybrid.popularity_counts is not None:
            counts = self.hybrid.popularity_counts
        else:  # no hybrid popularity: count the version's training logs
            rows = [self.index[i] for h in bundle.histories.values() for i in h if i in self.index]
            counts = np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(self.ids))
        self.reranker = Reranker(ItemFacts.build(cat, vectors, counts))
        self.defaults = SlateSpec(
            rank.diversity if rank.diversity != "none" else "mmr",
            diversity=rank.diversity_strength if rank.diversity != "none" else 0.0,
            calibration=rank.calibration,
            tail_share=rank.tail_share,
            max_per=dict(rank.max_per),
        )
        problems = self.reranker.problems(self.defaults)
        if problems:
            raise ValueError(f"{bundle.path}: rank settings: {'; '.join(problems)}")
        by_cat: dict[str, list[int]] = {}
        for row, item_id in enumerate(self.ids):
            for c in cat.items[item_id].categories:
                by_cat.setdefault(c, []).append(row)
        self.category_rows = {c: np.array(r, dtype=np.int64) for c, r in by_cat.items()}
        pop = self.hybrid.popularity_part()
        self.popular_rows = np.argsort(-pop, kind="stable")[: self.candidates]

    @property
    def num_items(self) -> int:
        return len(self.ids)

    def describe(self) -> str:
        return f"{self.items.kind} ({self.num_items} items)"

    def spec(self, q: Query) -> SlateSpec:
        """The re-ranking of one query: the version's defaults, replaced where it asks."""
        d = self.defaults
        return SlateSpec(
            d.method,
            diversity=d.diversity if q.diversity is None else q.diversity,
            calibration=d.calibration if q.calibration is None else q.calibration,
            tail_share=d.tail_share if q.tail_share is None else q.tail_share,
            max_per=d.max_per if q.max_per is None else dict(q.max_per),
        )

    def rank(self, query: np.ndarray, q: Query) -> list[RecommendedItem]:
        """The top ``q.k`` items for one query embedding."""
        return self.rank_many(np.asarray(query).reshape(1, -1), [q])[0]

    def rank_many(self, queries: np.ndarray, qs: Sequence[Query]) -> list[list[RecommendedItem]]:
        """The top items of each query (``queries`` is ``[len(qs), dim]``).

        Over an exact index, the queries without a category filter are scored against the
        whole catalogue in one matrix product; the others one at a time on their candidates.
        """
        vecs = np.asarray(queries, dtype=np.float32).reshape(len(qs), -1)
        histories = [[self.index[i] for i in q.history if i in self.index] for q in qs]
        together = [u for u, q in enumerate(qs) if self.items.kind == "exact" and not q.categories]
        scored: dict[int, tuple[np.ndarray | None, np.ndarray]] = {}
        asked = [q.request is not None for q in qs]  # a typed request is scored with the model
        if together:
            full = self.hybrid.scores(
                vecs[together],
                [histories[u] for u in together],
                requests=[asked[u] for u in together],
            )
            scored = {u: (None, full[j]) for j, u in enumerate(together)}
        out = []
        for u, q in enumerate(qs):
            excluded = np.array(
                [self.index[i] for i in q.exclude if i in self.index], dtype=np.int64
            )
            spec = self.spec(q)
            depth = max(q.k, self.depth) if spec.reorders else q.k
            if u not in scored:
                vec, history = vecs[u : u + 1], histories[u : u + 1]
                subset = self._candidate_rows(vec, history, q.categories, depth + len(excluded))
                scored[u] = (subset, self.hybrid.scores(vec, history, subset, [asked[u]])[0])
            subset, scores = scored.pop(u)
            out.append(self._top(subset, scores, excluded, q.k, depth, spec, histories[u]))
        return out

    def _top(
        self,
        subset: np.ndarray | None,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        depth: int,
        spec: SlateSpec,
        history: list[int],
    ) -> list[RecommendedItem]:
        """Filter the scored rows (``None``: every item), keep the best ``depth``, re-rank
        them under ``spec`` when it can change the order, answer the first ``k``."""
        rows = np.arange(self.num_items) if subset is None else subset
        keep = ~np.isin(rows, excluded) if len(excluded) else np.ones(len(rows), dtype=bool)
        rows, scores = rows[keep], scores[keep]
        if len(rows) == 0:
            return []
        depth = min(depth, len(rows))
        top = np.argpartition(-scores, depth - 1)[:depth]
        top = top[np.argsort(-scores[top], kind="stable")]
        if spec.reorders:
            order = self.reranker.rerank(rows[top][None], scores[top][None], k, spec, [history])
            top = top[order[0]]
        top = top[:k]
        return [
            RecommendedItem(item_id=self.ids[r], score=float(scores[t]), title=self.titles[r])
            for t, r in zip(top, rows[top], strict=True)
        ]

    def _candidate_rows(
        self, vec: np.ndarray, history: list[list[int]], categories: tuple[str, ...], n: int
    ) -> np.ndarray | None:
        """Item rows to score: a category subset, ANN candidates, or None for all items."""
        if categories:  # a category subset is scored exactly
            return np.unique(np.concatenate([self.category_rows[c] for c in categories]))
        if self.items.kind == "exact":
            return None  # every item
        found, _ = self.items.search(vec, max(n, self.candidates))
        parts = [found[0][found[0] >= 0]]
        if self.hybrid.weights.popularity:
            parts.append(self.popular_rows)
        if self.hybrid.uses_history:
            parts.append(self.hybrid.cf_candidates(history, self.candidates)[0])
        return np.unique(np.concatenate(parts))
