"""Exploration in the ingress: a wider list from the ranker, the slots chosen over the
impression log's evidence and the version's training counts
(:func:`llmrec.experiments.exploration.explore`).

The ranker is asked for ``k + explore_pool`` items, so that the model still filters what may
be explored, and for the ``explore_unproven`` best-scored of the items the version has few
training interactions with (items added live: none), so that a new item the model ranks in
the middle is still a candidate (:mod:`llmrec.serving.unproven`). The log's per-item
evidence of those items is read (one SQLite query, off the event loop), the version's
training interactions with them added, and the sampler picks the exploration slots. The
training interactions are the ranker's own counts (the ones it picks the unproven items by:
:meth:`~llmrec.serving.CandidateRanker.trained`), asked of the ranker deployment once per
version, so that the ingress and the ranker never disagree on what is unproven. The same
function picks the slots in the in-process simulation (:mod:`llmrec.experiments.inprocess`).
"""

import asyncio
import dataclasses
from collections.abc import Mapping

import numpy as np
from llmrec.experiments.exploration import ExploreSettings, explore, explore_key, with_trained
from llmrec.experiments.impressions import ImpressionLog
from llmrec.serving import Query, RecommendedItem, RecommendRequest, ServeSettings
from llmrec.serving.cache import fingerprint
from llmrec.serving.http.resilience import RetryPolicy, retry
from ray.serve.handle import DeploymentHandle

from serve_deployments.answering import is_replica_death


class Explorer:
    """The ingress's exploration step.

    Args:
        settings: ``explore_pool``, ``explore_unproven``, ``explore_max_impressions``,
            ``explore_trained_worth``, ``explore_prior_strength`` and ``retry_deadline_s``
            are read.
        log: the impression log whose evidence the sampler reads.
        ranker: the candidate ranker deployment (each version's training counts).
    """

    def __init__(
        self, settings: ServeSettings, log: ImpressionLog, ranker: DeploymentHandle
    ) -> None:
        self.settings = ExploreSettings(
            pool=settings.explore_pool,
            unproven=settings.explore_unproven,
            max_impressions=settings.explore_max_impressions,
            prior_strength=settings.explore_prior_strength,
            trained_worth=settings.explore_trained_worth,
        )
        self.log = log
        self.ranker = ranker
        self.retry = RetryPolicy(deadline_s=settings.retry_deadline_s)
        self.counts: dict[str, dict[str, int]] = {}

    @staticmethod
    def share(req: RecommendRequest, default: float) -> float:
        """The request's share, else its version's (``rank.explore``)."""
        return default if req.explore is None else req.explore

    def widen(self, query: Query) -> Query:
        """The query asking the ranker for the exploration pool beyond its ``k`` and for the
        best unproven items."""
        return dataclasses.replace(
            query, k=query.k + self.settings.pool, unproven=self.settings.unproven
        )

    async def trained(self, uri: str) -> dict[str, int]:
        """Version ``uri``'s training interactions per item: the ranker's counts, asked once
        (the versions asked before are kept, a handful at most; a ranker that stays
        unreachable raises :class:`~llmrec.serving.http.resilience.Unavailable`)."""
        if uri not in self.counts:
            counts: dict[str, int] = await retry(
                lambda: self.ranker.trained.remote(uri),
                is_replica_death,
                self.retry,
                "training counts",
            )
            if len(self.counts) >= 4:
                self.counts.pop(next(iter(self.counts)))
            self.counts[uri] = counts
        return self.counts[uri]

    async def choose(
        self,
        wide: list[RecommendedItem],
        query: Query,
        share: float,
        unit: str,
        trained: Mapping[str, int] | None = None,
    ) -> tuple[list[RecommendedItem], tuple[int, ...]]:
        """The ``query.k`` items to show out of the ranker's wide list, exploration slots
        marked (``explore: true``), and their 1-based positions. ``unit``: the user, else
        the session, else the request id (with the request's content, it seeds the draws:
        a reload shows the same list while the evidence holds); ``trained``: the version's
        training interactions per item (:meth:`trained`; None: not counted)."""
        ids = [i.item_id for i in wide]
        evidence = await asyncio.to_thread(self.log.evidence, ids)
        if trained is not None:
            evidence = with_trained(evidence, ids, trained)
        content = fingerprint(query.history, query.request, query.exclude, query.categories)
        chosen = explore(
            np.array([i.score for i in wide], dtype=float),
            query.k,
            share,
            evidence,
            explore_key(unit, content),
            self.settings,
        )
        out = [wide[r] for r in chosen.order]
        for p in chosen.explored:
            out[p - 1] = out[p - 1].model_copy(update={"explore": True})
        return out, chosen.explored
