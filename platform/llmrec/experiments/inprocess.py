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

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from llmrec.api.experiment import ExperimentSpec, Variant
from llmrec.experiments.analysis import Analysis
from llmrec.experiments.assignment import Assigner, allocate
from llmrec.experiments.attribution import Attributed, Impression, attribute
from llmrec.experiments.impressions import ImpressionLog, read_log
from llmrec.experiments.report import analyse
from llmrec.experiments.simulation import ClickModel, SimUser, request_body, run_session
from llmrec.serving.history import Event


@dataclass(frozen=True)
class Ranked:
    """One version's answers to every simulated request."""

    uri: str
    version: str
    lists: dict[tuple[str, int], tuple[str, ...]]
    """(user, step) -> the item ids shown."""
    ms_per_request: float


def rank_requests(
    uri: str, users: Sequence[SimUser], k: int = 10, max_history: int = 200, batch: int = 64
) -> Ranked:
    """Every session step of ``users`` answered by the registered version ``uri`` (the
    serving classes, in batches as the ingress groups them)."""
    from llmrec.registry import store as registry
    from llmrec.registry.bundle import ModelBundle
    from llmrec.serving import (
        CandidateRanker,
        QueryBuilder,
        QueryEncoder,
        RecommendRequest,
        ServeSettings,
    )

    version, path = registry.cached_bundle(uri)
    bundle, settings = ModelBundle(path), ServeSettings()
    builder, encoder = QueryBuilder(bundle, settings=settings), QueryEncoder(bundle)
    ranker = CandidateRanker(bundle, settings)
    keys = [(u, s) for u in users for s in range(len(u.future))]
    lists: dict[tuple[str, int], tuple[str, ...]] = {}
    start = time.perf_counter()
    for i in range(0, len(keys), batch):
        chunk = keys[i : i + batch]
        queries = [
            builder.build(RecommendRequest(**request_body(u, s, k, max_history))) for u, s in chunk
        ]
        for (u, s), items in zip(
            chunk, ranker.rank_many(encoder.encode(queries), queries), strict=True
        ):
            lists[(u.user_id, s)] = tuple(item.item_id for item in items)
    took = 1000 * (time.perf_counter() - start) / max(1, len(keys))
    return Ranked(version.uri, version.version, lists, took)


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


__all__ = ["LocalExperiment", "Ranked", "rank_requests"]
