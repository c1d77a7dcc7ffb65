"""Serving logic as plain classes (Ray Serve wraps them in ``serve_deployments``).

The work of a request is split the way the scoring graph is: :class:`QueryBuilder` turns a
request into text, a history and the items to leave out (cheap, at the edge),
:class:`QueryEncoder` runs the language model (the expensive, batchable part),
:class:`CandidateRanker` finds candidates in the item index, scores them with the version's
hybrid scorer, filters them and re-ranks them (diversity, calibration, long-tail share, caps
per attribute value: one :class:`~llmrec.ranking.slate.Reranker`, as offline).

A request's free text is read into an :class:`~llmrec.understanding.intent.Intent` by the builder
(items it refers to join the history the user tower reads); the ranker applies the intent
(:class:`~llmrec.understanding.constraints.Constraints`) and, on request, explains each item
(:class:`~llmrec.understanding.explain.Explainer`) from the user vectors without each history
item, which the encoder computes in the same call as the user vector (:func:`user_inputs`).

A version with the hybrid's text-match term (:meth:`HybridScorer.text_part`) gets from its
encoder, after each user vector, the frozen base model's embedding of the typed request
(zeros: none), and after each live item's vector the base embedding of its text; the ranker
takes them apart (:meth:`HybridScorer.split`). Versions without the term get plain vectors.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np
import torch

from llmrec.api.schemas import ListMeasures, RecommendedItem, RecommendRequest
from llmrec.data.text import render_item
from llmrec.modeling.scorer import LLMScorer
from llmrec.ranking.index import ItemIndex, build_index, choose_index
from llmrec.ranking.rerank import SlateSpec
from llmrec.ranking.slate import ItemFacts, Reranker
from llmrec.registry.bundle import ModelBundle, item_text_vectors
from llmrec.serving.backends import query_scorer
from llmrec.serving.catalogue_state import LiveChanges, LiveItem
from llmrec.serving.history import HistoryStore
from llmrec.serving.measures import list_measures
from llmrec.serving.settings import ServeSettings
from llmrec.understanding.constraints import Constraints
from llmrec.understanding.explain import Explainer, occlusion_targets
from llmrec.understanding.intent import IntentParser
from llmrec.understanding.lexicon import Lexicon
from llmrec.understanding.query import Query, RequestError, blocks, user_inputs

if TYPE_CHECKING:
    from llmrec.data.catalogue import Catalogue


def _listed(ids: Sequence[str], what: str) -> str:
    shown = ", ".join(repr(i) for i in ids[:10])
    more = f" and {len(ids) - 10} more" if len(ids) > 10 else ""
    return f"{what}: {shown}{more}"


class QueryBuilder:
    """Resolves users, histories and filters against one model version's catalogue.

    Known users' histories come from ``store`` (training logs + feedback) when given, else
    from the logs shipped with the version. Text is read by ``parser``; without one, by a
    parser over the catalogue's words alone (:meth:`IntentParser.build`).
    Items added live (:meth:`apply_live`) are known items like the catalogue's.
    """

    live_seq = 0
    needs_vectors = False

    def __init__(
        self,
        bundle: ModelBundle,
        store: HistoryStore | None = None,
        settings: ServeSettings | None = None,
        parser: IntentParser | None = None,
    ) -> None:
        self.catalogue = bundle.catalogue
        self.histories = bundle.histories
        self.store = store
        s = settings or ServeSettings()
        self.max_query_chars = s.max_query_chars
        self.max_request_history = s.max_history
        self.categories = self.catalogue.categories
        cfg = bundle.config
        read = cfg.data.max_history if cfg.model.architecture == "text" else cfg.model.seq_len
        self.window = min(read, s.explain_max_occlusions)
        self.live: set[str] = set()
        if parser is not None:
            self.parser = parser

    @cached_property
    def parser(self) -> IntentParser:
        """The request reader (the catalogue's words alone unless one was given)."""
        return IntentParser(Lexicon.build(self.catalogue, self.histories))

    def knows(self, item_id: str) -> bool:
        """Whether ``item_id`` is in the version's catalogue or was added live."""
        return item_id in self.catalogue or item_id in self.live

    def apply_live(self, changes: LiveChanges) -> None:
        """Items added live become known items; their categories known categories."""
        self.live.update(i.item_id for i in changes.items)
        added = {c for i in changes.items for c in i.categories}
        if not added <= set(self.categories):
            self.categories = tuple(sorted(set(self.categories) | added))

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
            unknown = [i for i in history if not self.knows(i)]
            if unknown:
                raise RequestError(404, _listed(unknown, "unknown item ids in history"), "history")
            seen = tuple(history)
        unknown = [i for i in req.exclude if not self.knows(i)]
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
        request = req.query if req.query and req.query.strip() else None
        intent = None
        if request is not None and req.parse_query:
            intent = self.parser.parse(request)
            history = [*history, *(i for i in intent.like if i not in history)]
            request = intent.text
        return Query(
            history=tuple(history),
            request=request,
            exclude=tuple(dict.fromkeys([*seen, *req.exclude, *(intent.like if intent else ())])),
            k=req.k,
            categories=tuple(req.categories),
            diversity=req.diversity,
            calibration=req.calibration,
            tail_share=req.tail_share,
            max_per=None if req.max_per is None else tuple(sorted(req.max_per.items())),
            intent=intent,
            strict=req.strict,
            explain=req.explain,
            occlude=occlusion_targets(history, self.window) if req.explain else (),
        )

    def _user(self, user_id: str) -> tuple[list[str], frozenset[str] | tuple[str, ...]]:
        if self.store is not None:
            state = self.store.user(user_id)
            if state is not None:
                known = [i for i in state.history if self.knows(i)]
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
    version has one): resolved queries in, user vectors out; and its item tower for items
    added live (:meth:`embed_items`).

    For a version with the text-match term each row also carries the frozen base model's
    embedding of the request (:meth:`encode`) or of the item's text (:meth:`embed_items`)
    after the model's vector. Where the version's language model is the base itself (the
    sequential design with a frozen text encoder) the request is encoded once for both;
    otherwise a copy of the base encodes it (float32, whatever the ``backend``).
    """

    live_seq = 0
    needs_vectors = True

    def __init__(
        self, bundle: ModelBundle, threads: int = 1, device: str = "auto", backend: str = "torch"
    ) -> None:
        torch.set_num_threads(threads)
        self.device = pick_device(device)
        towers = bundle.load_towers().to(self.device)
        self.text_dim = bundle.text_match_dim
        self.base: LLMScorer | None = None  # None: the towers' own language model
        if self.text_dim and not towers.text_is_base:
            self.base = bundle.load_base_scorer().to(self.device)
        towers.use_scorer(query_scorer(towers.scorer, backend, self.device))
        self.towers = towers
        self.catalogue = bundle.catalogue
        self.bundle = bundle
        self._vocabulary: tuple[np.ndarray | None, np.ndarray | None] | None = None

    def embed_items(self, items: Sequence[LiveItem]) -> np.ndarray:
        """``[len(items), dim]`` item vectors from the items' text (``[len(items), dim +
        text_dim]`` with their text-match vectors after them for a version with the term).
        An item the version was trained on keeps what training learned beyond its text (its
        trained vector minus the tower's vector of its old text: the sequential design's ID
        embedding)."""
        vectors = self.towers.encode_new_items([i.item_text() for i in items])
        rows = self.bundle.catalogue.index
        trained = [k for k, i in enumerate(items) if i.item_id in rows]
        if trained:
            old = [self.bundle.catalogue.items[items[k].item_id] for k in trained]
            learned = self.bundle.item_embeddings[[rows[items[k].item_id] for k in trained]]
            vectors[trained] += learned - self.towers.encode_new_items(old)
        if self.text_dim:
            texts = [render_item(i.item_text()) for i in items]
            text = item_text_vectors(self.base or self.towers.scorer, texts)
            vectors = np.concatenate([vectors, text], axis=1)
        return vectors.astype(np.float32)

    def apply_live(self, changes: LiveChanges) -> None:
        """Histories that hold live items read them through their vectors."""
        if changes.items and changes.vectors is not None:
            ids = [i.item_id for i in changes.items]
            vectors = changes.vectors
            if self.text_dim:  # the item vectors without their text-match vectors
                vectors = vectors[:, : vectors.shape[1] - self.text_dim]
            self.towers.add_items(ids, [i.item_text() for i in changes.items], vectors)

    def encode(self, queries: Sequence[Query]) -> np.ndarray:
        """Float32 user vectors, one call of the user tower for the batch: one row per
        query, followed by one per item it asks to ``occlude`` (:func:`user_inputs`;
        ``[len(queries), dim]`` when none does). A version with the text-match term gets
        ``[rows, dim + text_dim]``: each row's request embedded by the frozen base model
        after its user vector (zeros for a row without a request)."""
        histories, requests = user_inputs(queries)
        if not self.text_dim:
            return self.towers.encode_users(histories, requests).astype(np.float32)
        texts = list(dict.fromkeys(r for r in requests if isinstance(r, str) and r.strip()))
        base = self.base or self.towers.scorer
        encoded = base.encode(texts, kind="query").numpy() if texts else None
        by_text = {} if encoded is None else dict(zip(texts, encoded, strict=True))
        shared = by_text if self.base is None else None  # the same model: encoded once
        users = self.towers.encode_users(histories, requests, shared)
        text = np.zeros((len(requests), self.text_dim), dtype=np.float32)
        for row, request in enumerate(requests):
            if request in by_text:
                text[row] = by_text[request]
        return np.concatenate([users.astype(np.float32), text], axis=1)

    def text_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """``[len(texts), dim]`` the version's language model's embeddings of short texts
        (category names, titles, phrases of requests)."""
        if not texts:
            return np.zeros((0, 1), dtype=np.float32)
        out = self.towers.scorer.encode(list(texts), kind="query", batch_size=64)
        return out.numpy().astype(np.float32)

    def vocabulary(self, max_titles: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Embeddings of the catalogue's category names and (up to ``max_titles`` items)
        titles, computed once per version (:meth:`IntentParser.build`)."""
        if self._vocabulary is None:
            lexicon = Lexicon.build(self.catalogue)
            parser = IntentParser.build(lexicon, self.text_vectors, max_titles)
            self._vocabulary = (parser.category_vectors, parser.title_vectors)
        return self._vocabulary

    def parser(self, max_titles: int = 20_000) -> IntentParser:
        """A query reader that uses this version's language model (in this process: offline
        jobs, tests; the serving ingress asks the encoder deployment instead)."""
        lexicon = Lexicon.build(self.catalogue, self.bundle.histories)
        return IntentParser(lexicon, *self.vocabulary(max_titles), embed=self.text_vectors)


class CandidateRanker:
    """Candidates from the item index, hybrid scores, filters, re-ranking.

    The version's ``rank.*`` settings are the re-ranking defaults; a query's ``diversity``,
    ``calibration``, ``tail_share`` and ``max_per`` replace them for that request.

    Items added live (:meth:`apply_live`) join the index and the hybrid (no CF or popularity
    part: the catalogue's mean); retired items stay in the index and are never answered.

    Raises:
        ValueError: the version's ``rank.max_per`` names an attribute its catalogue lacks.
    """

    live_seq = 0
    needs_vectors = True

    def __init__(self, bundle: ModelBundle, settings: ServeSettings | None = None) -> None:
        s = settings or ServeSettings()
        cat = bundle.catalogue
        self.catalogue = cat
        self.ids = list(cat.ids)
        self.index = dict(cat.index)
        self.titles = [cat.title(i) for i in self.ids]
        self.live: dict[str, LiveItem] = {}
        self.dead = np.zeros(len(self.ids), dtype=bool)  # retired items
        self.ann_rows = np.arange(len(self.ids))  # index position -> item row
        self._stale_facts = False
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
        self.similarity = rank.similarity
        vectors = cat.category_vectors() if rank.similarity == "categories" else emb
        counts: np.ndarray
        if self.hybrid.popularity_counts is not None:
            counts = self.hybrid.popularity_counts
        else:  # no hybrid popularity: count the version's training logs
            rows = [self.index[i] for h in bundle.histories.values() for i in h if i in self.index]
            counts = np.bincount(np.asarray(rows, dtype=np.int64), minlength=len(self.ids))
        self.counts = counts
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
        self.constraints = Constraints(cat, s.query_boost)
        self.explainer = Explainer(self.hybrid, cat, self.constraints)

    @property
    def num_items(self) -> int:
        return len(self.ids)

    def apply_live(self, changes: LiveChanges) -> None:
        """Add new items (index, hybrid, category filter), re-embed updated ones, and mark
        the retired set."""
        vectors = changes.vectors
        if changes.items and vectors is not None:
            new = [k for k, i in enumerate(changes.items) if i.item_id not in self.index]
            old = [k for k, i in enumerate(changes.items) if i.item_id in self.index]
            for k in new:
                item = changes.items[k]
                self.index[item.item_id] = len(self.ids)
                self.ids.append(item.item_id)
                self.titles.append(item.title)
            if new:
                self.hybrid.extend(vectors[new])
            if old:
                rows = [self.index[changes.items[k].item_id] for k in old]
                self.hybrid.set_vectors(np.array(rows), vectors[old])
                for k, row in zip(old, rows, strict=True):
                    self.titles[row] = changes.items[k].title
            for item in changes.items:
                self._recategorise(item)
                self.live[item.item_id] = item
            # an updated item's old vector stays in an ANN index, pointing at the same row
            # (its candidates are re-scored with the new vector)
            self.items.add(self.hybrid.split(vectors)[0])
            rows_added = [self.index[i.item_id] for i in changes.items]
            self.ann_rows = np.concatenate([self.ann_rows, np.array(rows_added)])
            self._stale_facts = True
            self._rebuild_constraints()
        self.dead = np.zeros(self.num_items, dtype=bool)
        retired = [self.index[i] for i in changes.retired if i in self.index]
        self.dead[np.array(retired, dtype=np.int64)] = True

    def _rebuild_constraints(self) -> None:
        """Query constraints and explanations over every row, live items included (their
        categories and titles' years filter and boost like the version's own items)."""
        grown = self._grown_catalogue()
        self.constraints = Constraints(grown, self.constraints.boost)
        self.explainer = Explainer(self.hybrid, grown, self.constraints)

    def _recategorise(self, item: LiveItem) -> None:
        row = self.index[item.item_id]
        before = self.live.get(item.item_id) or self.catalogue.items.get(item.item_id)
        old = set(before.categories) if before is not None else set()
        for c in old - set(item.categories):
            self.category_rows[c] = self.category_rows[c][self.category_rows[c] != row]
        for c in set(item.categories) - old:
            rows = self.category_rows.get(c, np.zeros(0, dtype=np.int64))
            self.category_rows[c] = np.append(rows, row)

    def _grown_catalogue(self) -> Catalogue:
        """The version's catalogue with the live items, in the ranker's row order."""
        from llmrec.data.catalogue import Catalogue

        cat = self.catalogue
        texts = {**cat.items, **{i: item.item_text() for i, item in self.live.items()}}
        attributes = {
            name: {**values, **{i: () for i in self.live if i not in values}}
            for name, values in cat.attributes.items()
        }
        return Catalogue(tuple(self.ids), texts, attributes)

    def _refresh_facts(self) -> None:
        """The re-rankers' item facts over the catalogue with its live items (built when a
        request re-ranks after a change, not on every change)."""
        grown = self._grown_catalogue()
        vectors = grown.category_vectors() if self.similarity == "categories" else self.hybrid.items
        counts = self.hybrid.popularity_counts
        if counts is None:
            counts = np.concatenate([self.counts, np.zeros(self.num_items - len(self.counts))])
        self.reranker = Reranker(ItemFacts.build(grown, vectors, counts))
        self._stale_facts = False

    def describe(self) -> str:
        return f"{self.items.kind} ({self.num_items} items)"

    def measure(self, item_ids: Sequence[str], history: Sequence[str]) -> ListMeasures:
        """Diversity, long tail, categories and calibration of an answered list
        (:func:`~llmrec.serving.measures.list_measures`); unknown ids are left out."""
        if self._stale_facts:
            self._refresh_facts()
        rows = [self.index[i] for i in item_ids if i in self.index]
        read = [self.index[i] for i in history if i in self.index]
        return list_measures(self.reranker.facts, self.counts, rows, read)

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
        """The top ``q.k`` items for one query's user vector (``[dim]``, or its
        :func:`blocks` block when it asks for explanations)."""
        return self.rank_many(np.atleast_2d(np.asarray(query)), [q])[0]

    def rank_many(self, queries: np.ndarray, qs: Sequence[Query]) -> list[list[RecommendedItem]]:
        """The top items of each query (``queries``: the encoder's rows for ``qs``, in
        :func:`user_inputs` order; ``[len(qs), dim]`` when none asks for explanations).

        Over an exact index, the queries without a category filter are scored against the
        whole catalogue in one matrix product; the others one at a time on their candidates.
        """
        parts = blocks(queries, qs)
        vecs = np.stack([b[0] for b in parts]) if parts else np.zeros((0, 1), np.float32)
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
            ruled_out, boosts = self.constraints.effect(q.intent, q.strict)
            spec = self.spec(q)
            depth = max(q.k, self.depth) if spec.reorders else q.k
            if u not in scored:
                vec, history = vecs[u : u + 1], histories[u : u + 1]
                share = len(ruled_out) / max(self.num_items, 1)
                n = int((depth + len(excluded)) / max(1.0 - share, 0.05)) + 1
                subset = self._candidate_rows(vec, history, self._filter_categories(q), n)
                scored[u] = (subset, self.hybrid.scores(vec, history, subset, [asked[u]])[0])
            subset, scores = scored.pop(u)
            if boosts is not None:
                scores = scores + (boosts if subset is None else boosts[subset])
            if len(ruled_out):
                excluded = np.union1d(excluded, ruled_out)
            rows, top = self._top(subset, scores, excluded, q.k, depth, spec, histories[u])
            items = [
                RecommendedItem(item_id=self.ids[r], score=float(v), title=self.titles[r])
                for r, v in zip(rows, top, strict=True)
            ]
            if q.explain and len(rows):
                boost = None if boosts is None else boosts[rows]
                whys = self.explainer.explain(parts[u], q, rows, boost)
                for item, why in zip(items, whys, strict=True):
                    item.explanation = why
            out.append(items)
        return out

    def _filter_categories(self, q: Query) -> tuple[str, ...]:
        """The categories that restrict a query's candidates: the request's filter, else a
        strict intent's wanted categories."""
        if q.categories:
            return q.categories
        if q.strict and q.intent is not None:
            return tuple(c for c in q.intent.categories if c in self.category_rows)
        return ()

    def _top(
        self,
        subset: np.ndarray | None,
        scores: np.ndarray,
        excluded: np.ndarray,
        k: int,
        depth: int,
        spec: SlateSpec,
        history: list[int],
    ) -> tuple[np.ndarray, np.ndarray]:
        """Filter the scored rows (``None``: every item), keep the best ``depth``, re-rank
        them under ``spec`` when it can change the order; the first ``k`` rows and scores."""
        rows = np.arange(self.num_items) if subset is None else subset
        keep = ~np.isin(rows, excluded) if len(excluded) else np.ones(len(rows), dtype=bool)
        keep &= ~self.dead[rows]
        rows, scores = rows[keep], scores[keep]
        if len(rows) == 0:
            return rows, scores
        depth = min(depth, len(rows))
        top = np.argpartition(-scores, depth - 1)[:depth]
        top = top[np.argsort(-scores[top], kind="stable")]
        if spec.reorders:
            if self._stale_facts:
                self._refresh_facts()
            order = self.reranker.rerank(rows[top][None], scores[top][None], k, spec, [history])
            top = top[order[0]]
        top = top[:k]
        return rows[top], scores[top]

    def _candidate_rows(
        self, vec: np.ndarray, history: list[list[int]], categories: tuple[str, ...], n: int
    ) -> np.ndarray | None:
        """Item rows to score: a category subset, ANN candidates, or None for all items."""
        if categories:  # a category subset is scored exactly
            none = np.zeros(0, dtype=np.int64)  # a category only unembedded live items have
            return np.unique(np.concatenate([self.category_rows.get(c, none) for c in categories]))
        if self.items.kind == "exact":
            return None  # every item
        wanted = max(n, self.candidates) + int(self.dead.sum())
        found, _ = self.items.search(self.hybrid.split(vec)[0], wanted)
        parts = [self.ann_rows[found[0][found[0] >= 0]]]
        if self.hybrid.weights.popularity:
            parts.append(self.popular_rows)
        if self.hybrid.uses_history:
            parts.append(self.hybrid.history_candidates(history, self.candidates)[0])
        if self.hybrid.request_weights.text:  # the items a typed request describes
            parts.append(self.hybrid.text_candidates(vec, self.candidates)[0])
        return np.unique(np.concatenate(parts))
