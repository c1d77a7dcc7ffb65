"""Serving logic as plain classes (Ray Serve wraps them in ``serve_deployments``).

The work of a request is split the way the scoring graph is: :class:`QueryBuilder` turns a
request into text, a history and the items to leave out (cheap, at the edge),
:class:`QueryEncoder` runs the language model (the expensive, batchable part),
:class:`CandidateRanker` finds candidates in the item index, scores them with the hybrid,
filters and re-ranks them (one :class:`~llmrec.ranking.slate.Reranker`, as offline).

A request's free text is read into an :class:`~llmrec.understanding.intent.Intent` by the
builder (items it refers to join the history the user tower reads); the ranker applies it
(:class:`~llmrec.understanding.constraints.Constraints`) and, on request, explains each item
(:class:`~llmrec.understanding.explain.Explainer`) from user vectors without each history
item, computed by the encoder in the same call as the user vector (:func:`user_inputs`).

A version with the hybrid's text-match term (:meth:`HybridScorer.text_part`) gets from its
encoder, after each user vector, the frozen base model's embedding of the typed request
(zeros: none), and after each live item's vector the base embedding of its text; the ranker
takes them apart (:meth:`HybridScorer.split`). Versions without the term get plain vectors.

Each class keeps its steps in modules of their own: the builder's in
:mod:`~llmrec.serving.resolve`, the encoder's in :mod:`~llmrec.serving.encoding`, the
ranker's in :mod:`~llmrec.serving.item_rows`, ``candidates``, ``unproven`` and ``slates``.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np
import torch

from llmrec.api.schemas import ListMeasures, RecommendedItem, RecommendRequest
from llmrec.data.text import render_item
from llmrec.modeling.scorer import LLMScorer
from llmrec.ranking.index import ItemIndex
from llmrec.ranking.rerank import SlateSpec
from llmrec.ranking.slate import Reranker
from llmrec.registry.bundle import ModelBundle, item_text_vectors
from llmrec.serving.backends import merged_copy, query_scorer
from llmrec.serving.candidates import CandidatePool, category_rows, searchable, top_rows
from llmrec.serving.catalogue_state import LiveChanges, LiveItem
from llmrec.serving.encoding import keep_learned, pick_device, request_columns, request_embeddings
from llmrec.serving.history import HistoryStore
from llmrec.serving.item_rows import ItemRows
from llmrec.serving.measures import list_measures
from llmrec.serving.resolve import check_filters, check_query, request_history, resolved
from llmrec.serving.settings import ServeSettings
from llmrec.serving.slates import Slates
from llmrec.serving.unproven import UnprovenRows, scorer, training_counts
from llmrec.understanding.constraints import Constraints
from llmrec.understanding.explain import Explainer
from llmrec.understanding.intent import IntentParser
from llmrec.understanding.lexicon import Lexicon
from llmrec.understanding.query import Query, blocks, user_inputs


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
        limits (:mod:`llmrec.serving.resolve`)."""
        check_query(req, self.max_query_chars)
        history, seen = request_history(
            req, self.store, self.histories, self.knows, self.max_request_history
        )
        check_filters(req, self.knows, self.categories, self.catalogue.attribute_names)
        request = req.query if req.query and req.query.strip() else None
        intent = self.parser.parse(request) if request is not None and req.parse_query else None
        return resolved(req, history, seen, intent, self.window)


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
            base = bundle.load_base_scorer().to(self.device)
            self.base = merged_copy(base, keep_original=False)  # loaded for this alone
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
        vectors = keep_learned(vectors, items, self.towers, self.bundle)
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
        by_text = request_embeddings(self.base or self.towers.scorer, requests)
        shared = by_text if self.base is None else None  # the same model: encoded once
        users = self.towers.encode_users(histories, requests, shared)
        text = request_columns(by_text, requests, self.text_dim)
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
    ``calibration``, ``tail_share`` and ``max_per`` replace them for that request
    (:class:`~llmrec.serving.slates.Slates`). Candidates: :mod:`~llmrec.serving.candidates`
    (a query's ``unproven``, exploration's: :mod:`~llmrec.serving.unproven`).

    Items added live (:meth:`apply_live`) join the index and the hybrid (no CF or popularity
    part: the catalogue's mean); retired items stay in the index and are never answered
    (:class:`~llmrec.serving.item_rows.ItemRows`).

    Raises:
        ValueError: the version's ``rank.max_per`` names an attribute its catalogue lacks.
    """

    live_seq = 0
    needs_vectors = True

    def __init__(self, bundle: ModelBundle, settings: ServeSettings | None = None) -> None:
        s = settings or ServeSettings()
        cat = bundle.catalogue
        self.rows = ItemRows(cat)
        n = len(self.rows)
        emb, self.hybrid, index = searchable(bundle, n, s)  # vectors, hybrid, item index
        by_category = category_rows([cat.items[i].categories for i in self.rows.ids])
        popularity = self.hybrid.popularity_part()
        self.pool = CandidatePool(index, n, by_category, popularity, s.candidates)
        counts = training_counts(self.hybrid, bundle.histories, self.rows)  # read by all below
        self.slates = Slates(bundle.config.rank, cat, emb, counts, str(bundle.path))
        self.unproven = UnprovenRows(self.rows, counts, s)  # exploration's candidates
        self.constraints = Constraints(cat, s.query_boost)
        self.explainer = Explainer(self.hybrid, cat, self.constraints)

    @property
    def ids(self) -> list[str]:
        """Item ids by row (the version's catalogue, then the items added live)."""
        return self.rows.ids

    @property
    def index(self) -> dict[str, int]:
        """Item rows by id."""
        return self.rows.index

    @property
    def items(self) -> ItemIndex:
        """The item index (exact or approximate) over the model's item vectors."""
        return self.pool.index

    @property
    def num_items(self) -> int:
        return len(self.rows)

    def trained(self) -> dict[str, int]:
        """Training interactions per item id: the counts its slates and unproven rows read."""
        return self.unproven.by_id()

    def apply_live(self, changes: LiveChanges) -> None:
        """Add new items (index, hybrid, category filter), re-embed updated ones, and mark
        the retired set."""
        items, vectors = changes.items, changes.vectors
        if items and vectors is not None:
            new, old = self.rows.add(items)
            if new:
                self.hybrid.extend(vectors[new])
            if old:
                rows = self.rows.of(items[k].item_id for k in old)
                self.hybrid.set_vectors(np.array(rows), vectors[old])
            for item in items:
                before = self.rows.record(item)
                self.pool.recategorise(self.index[item.item_id], before, set(item.categories))
            self.pool.add(self.hybrid.split(vectors)[0], self.rows.of(i.item_id for i in items))
            self.slates.stale = True
            # query constraints and explanations over every row, live items included (their
            # categories and titles' years filter and boost like the version's own items)
            grown = self.rows.grown()
            self.constraints = Constraints(grown, self.constraints.boost)
            self.explainer = Explainer(self.hybrid, grown, self.constraints)
        self.rows.retire(changes.retired)

    def _reranker(self) -> Reranker:
        """The re-ranker, its item facts rebuilt first when live items changed since (when
        a request re-ranks or is measured after a change, not on every change)."""
        if self.slates.stale:  # the version's counts (live items: none), as built
            self.slates.refresh(self.rows.grown(), self.hybrid.items, None)
        return self.slates.reranker

    def describe(self) -> str:
        return f"{self.items.kind} ({self.num_items} items)"

    def measure(self, item_ids: Sequence[str], history: Sequence[str]) -> ListMeasures:
        """Diversity, long tail, categories and calibration of an answered list
        (:func:`~llmrec.serving.measures.list_measures`); unknown ids are left out."""
        facts = self._reranker().facts
        return list_measures(
            facts, self.slates.counts, self.rows.of(item_ids), self.rows.of(history)
        )

    def spec(self, q: Query) -> SlateSpec:
        """The re-ranking of one query: the version's defaults, replaced where it asks."""
        return self.slates.spec(q)

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
        histories = [self.rows.of(q.history) for q in qs]
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
            excluded = np.array(self.rows.of(q.exclude), dtype=np.int64)
            ruled_out, boosts = self.constraints.effect(q.intent, q.strict)
            spec = self.slates.spec(q)
            depth = self.slates.depth_of(q, spec)
            if u not in scored:
                vec, history = vecs[u : u + 1], histories[u : u + 1]
                share = len(ruled_out) / max(self.num_items, 1)
                n = int((depth + len(excluded)) / max(1.0 - share, 0.05)) + 1
                retired = int(self.rows.dead.sum())
                subset = self.pool.rows(self.hybrid, vec, history, q, n, retired)
                scored[u] = (subset, self.hybrid.scores(vec, history, subset, [asked[u]])[0])
            subset, scores = scored.pop(u)
            if boosts is not None:
                scores = scores + (boosts if subset is None else boosts[subset])
            if len(ruled_out):
                excluded = np.union1d(excluded, ruled_out)
            rows, top = self._top(subset, scores, excluded, q.k, depth, spec, histories[u])
            if q.unproven:  # exploration's candidates, after the k (llmrec.serving.unproven)
                every = scores if subset is None else None
                score = scorer(self.hybrid, vecs[u : u + 1], histories[u], asked[u], boosts, every)
                rows, top = self.unproven.extend(q.unproven, rows, top, excluded, score)
            items = [
                RecommendedItem(item_id=self.ids[r], score=float(v), title=self.rows.titles[r])
                for r, v in zip(rows, top, strict=True)
            ]
            if q.explain and len(rows):
                boost = None if boosts is None else boosts[rows]
                whys = self.explainer.explain(parts[u], q, rows, boost)
                for item, why in zip(items, whys, strict=True):
                    item.explanation = why
            out.append(items)
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
    ) -> tuple[np.ndarray, np.ndarray]:
        """Filter the scored rows (``None``: every item), keep the best ``depth``, re-rank
        them under ``spec`` when it can change the order; the first ``k`` rows and scores."""
        rows = np.arange(self.num_items) if subset is None else subset
        rows, scores = top_rows(rows, scores, excluded, self.rows.dead, depth)
        if spec.reorders and len(rows):
            order = self._reranker().rerank(rows[None], scores[None], k, spec, [history])[0]
            rows, scores = rows[order], scores[order]
        return rows[:k], scores[:k]
