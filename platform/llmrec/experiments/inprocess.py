"""The server's experiment path in this process, for simulations repeated over many seeds.

:class:`LocalExperiment` does what the ingress does for each request, with the same code:
the :class:`~llmrec.experiments.assignment.Assigner` picks the variant, the version's
:class:`~llmrec.serving.QueryBuilder`, :class:`~llmrec.serving.QueryEncoder` and
:class:`~llmrec.serving.CandidateRanker` answer, every answer is an
:class:`~llmrec.experiments.attribution.Impression` in an
:class:`~llmrec.experiments.impressions.ImpressionLog`, clicks are attributed by request id, and
the log's Parquet segments are analysed by :func:`llmrec.experiments.analyse`. Only the HTTP
hops are missing. A simulated request does not depend on the seed (the history is the
user's), so each version ranks each request once and every seed reuses the answers: a seed
costs the assignment, the clicks, the log and the analysis.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from llmrec.api.experiment import ExperimentSpec, Variant
from llmrec.api.schemas import RecommendedItem
from llmrec.experiments.analysis import Analysis
from llmrec.experiments.assignment import Assigner, allocate
from llmrec.experiments.attribution import Attributed, Impression, attribute
from llmrec.experiments.impressions import ImpressionLog, read_log
from llmrec.experiments.report import analyse
from llmrec.experiments.simulation import ClickModel, SimUser, request_body, run_session
from llmrec.serving.catalogue_state import LiveItem
from llmrec.serving.history import Event
from llmrec.understanding.query import Query

if TYPE_CHECKING:
    from llmrec.serving.settings import ServeSettings


@dataclass(frozen=True)
class Ranked:
    """One version's answers to every simulated request."""

    uri: str
    version: str
    lists: dict[tuple[str, int], tuple[str, ...]]
    """(user, step) -> the item ids shown (``k + pool`` of them: the wide list)."""
    ms_per_request: float
    scores: dict[tuple[str, int], np.ndarray] = field(default_factory=dict)
    """(user, step) -> the model's scores of ``lists`` (what exploration's prior reads)."""


class LocalVersion:
    """A registered version's serving classes in this process: the query builder, encoder
    and ranker (items may be added live, :meth:`add_live`, as serving adds them);
    ``settings``: the serving settings they read (default: the defaults)."""

    def __init__(
        self, uri: str, max_history: int = 200, settings: ServeSettings | None = None
    ) -> None:
        from llmrec.registry import store as registry
        from llmrec.registry.bundle import ModelBundle
        from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, ServeSettings

        version, path = registry.cached_bundle(uri)
        self.uri, self.version = version.uri, version.version
        bundle, settings = ModelBundle(path), settings or ServeSettings()
        self.builder = QueryBuilder(bundle, settings=settings)
        self.encoder = QueryEncoder(bundle)
        self.ranker = CandidateRanker(bundle, settings)
        self.max_history = max_history

    def add_live(self, items: Sequence[LiveItem], catalogue_db: str | Path) -> None:
        """Add ``items`` as ``POST /admin/items`` does: embedded by the version's item
        tower, recorded in ``catalogue_db`` (which the update job reads), synced."""
        from llmrec.serving.catalogue_state import CatalogueState, sync

        state = CatalogueState(catalogue_db)
        state.upsert(list(items), self.uri, self.encoder.embed_items(list(items)))
        for target in (self.builder, self.encoder, self.ranker):
            sync(state, self.uri, target)

    def query(self, user: SimUser, step: int, k: int, wider: int = 0, unproven: int = 0) -> Query:
        """The query serving builds for a session's ``step``; ``wider``: items asked beyond
        ``k``, ``unproven``: best unproven items asked after them (as the ingress widens a
        query for exploration, past the request's cap)."""
        from llmrec.serving import RecommendRequest

        body = request_body(user, step, k, self.max_history)
        query = self.builder.build(RecommendRequest(**body))
        return dataclasses.replace(query, k=k + wider, unproven=unproven)

    def trained(self) -> dict[str, int]:
        """The version's training interactions per item: its ranker's counts (the ones it
        picks the unproven items by), which the ingress's explorer adds to the impression
        log's evidence as well."""
        return self.ranker.trained()

    def rank(self, queries: Sequence[Query]) -> list[list[RecommendedItem]]:
        """Encoded and ranked as the encoder and ranker deployments do, in one group."""
        return self.ranker.rank_many(self.encoder.encode(queries), queries)


def rank_requests(
    uri: str | LocalVersion,
    users: Sequence[SimUser],
    k: int = 10,
    max_history: int = 200,
    batch: int = 64,
    pool: int = 0,
    unproven: int = 0,
) -> Ranked:
    """Every session step of ``users`` answered by the registered version ``uri`` (the
    serving classes, in batches as the ingress groups them); ``pool``: items beyond ``k``,
    ``unproven``: the best unproven items after them (exploration's wider list)."""
    local = uri if isinstance(uri, LocalVersion) else LocalVersion(uri, max_history=max_history)
    keys = [(u, s) for u in users for s in range(len(u.future))]
    lists: dict[tuple[str, int], tuple[str, ...]] = {}
    scores: dict[tuple[str, int], np.ndarray] = {}
    start = time.perf_counter()
    for i in range(0, len(keys), batch):
        chunk = keys[i : i + batch]
        queries = [local.query(u, s, k, pool, unproven) for u, s in chunk]
        for (u, s), items in zip(chunk, local.rank(queries), strict=True):
            lists[(u.user_id, s)] = tuple(item.item_id for item in items)
            scores[(u.user_id, s)] = np.array([item.score for item in items])
    took = 1000 * (time.perf_counter() - start) / max(1, len(keys))
    return Ranked(local.uri, local.version, lists, took, scores)


class LocalExperiment:
    """An experiment between registered versions, served in this process.

    Args:
        variants: (name, model URI) pairs, the control first.
        weights: one per variant (default: equal).
        users: the simulated users.
    """

    def __init__(
        self,
        variants: Sequence[tuple[str, str]],
        users: Sequence[SimUser],
        weights: Sequence[float] | None = None,
        k: int = 10,
        max_history: int = 200,
    ) -> None:
        self.variants = list(variants)
        self.weights = list(weights or [1.0] * len(variants))
        self.users = list(users)
        self.k, self.max_history = k, max_history
        self.ranked: dict[str, Ranked] = {}
        for _, uri in self.variants:
            if uri not in self.ranked:
                self.ranked[uri] = rank_requests(uri, self.users, k, max_history)

    def run(
        self,
        name: str,
        seed: int,
        model: ClickModel,
        workdir: str | Path | None = None,
        bootstrap: int = 0,
    ) -> Analysis:
        """One simulated experiment (``name``: the experiment's hash salt; ``seed``: users'
        arrival order and clicks): its log analysed as ``jobs/experiment_report.py`` would."""
        spec = ExperimentSpec(
            name=name,
            variants=[
                Variant(name=n, model_uri=u, weight=w)
                for (n, u), w in zip(self.variants, self.weights, strict=True)
            ],
        )
        assigner = Assigner(spec, allocate(spec.weights()))
        uris = dict(self.variants)
        rng = np.random.default_rng(seed)
        shown: dict[str, Impression] = {}
        clicks: list[Attributed] = []
        clock = [1.0e9]

        def recommend(user: SimUser, step: int, body: dict) -> tuple[str, Sequence[str]]:
            rid = f"{name}-{user.user_id}-{step}"
            assigned = assigner.assign(None, user.user_id, rid)
            ranked = self.ranked[uris[assigned.variant]]
            items = ranked.lists[(user.user_id, step)]
            clock[0] += 1.0
            shown[rid] = Impression(
                rid,
                clock[0],
                name,
                assigned.variant,
                ranked.uri,
                ranked.version,
                assigned.unit,
                assigned.unit_kind,
                None,
                user.user_id,
                items,
                ranked.ms_per_request,
            )
            return rid, items

        def feedback(events: list[dict]) -> None:
            pairs = [
                (e["request_id"], Event(e["user_id"], e["item_id"], e["event"])) for e in events
            ]
            clicks.extend(attribute(pairs, shown))

        for i in rng.permutation(len(self.users)):
            run_session(self.users[i], recommend, feedback, model, rng, self.k, self.max_history)
        with tempfile.TemporaryDirectory(dir=workdir) as tmp:
            log = ImpressionLog(Path(tmp) / "impressions.sqlite", Path(tmp) / "segments")
            log.record(shown.values())
            log.record_events(clicks)
            log.export()
            impressions, events = read_log(Path(tmp) / "segments", name)
        order = [n for n, _ in self.variants]
        return analyse(impressions, events, name, order, bootstrap=bootstrap, seed=seed)


__all__ = ["LocalExperiment", "LocalVersion", "Ranked", "rank_requests"]
