"""The candidate ranker deployment: item index, hybrid scores, filters, re-ranking."""

from typing import Any

import numpy as np
from llmrec.api.schemas import ListMeasures
from llmrec.serving import CandidateRanker, Query, RecommendedItem, ServeSettings
from llmrec.serving.catalogue_state import CatalogueState, sync
from llmrec.serving.versions import VersionCache, open_version, versions_needed
from ray import serve


@serve.deployment(
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=64,
    health_check_period_s=2,
    health_check_timeout_s=10,
    graceful_shutdown_timeout_s=5,
)
class CandidateRankerDeployment:
    """Item index, hybrid scores, filters and diversity re-ranking of one version."""

    def __init__(self, settings: dict[str, Any], model_uri: str) -> None:
        self.settings = ServeSettings(**settings)
        experiment = self.settings.experiment
        live = 1 + (len(experiment.variants) if experiment else 0)  # the app's model + each arm
        self.versions: VersionCache[CandidateRanker] = VersionCache(
            self._load, versions_needed(live, self.settings.review_versions)
        )
        self.versions.put(model_uri, self._load(model_uri))
        self.catalogue = CatalogueState(self.settings.catalogue_path)

    def _load(self, uri: str) -> CandidateRanker:
        _, bundle = open_version(uri, self.settings.tracking_uri)
        return CandidateRanker(bundle, self.settings)

    async def load(self, model_uri: str, live: int | None = None) -> dict[str, Any]:
        """Load ``model_uri``; ``live``: the versions the ingress serves at once (one per
        experiment variant), each kept with room for its successor (None: as it is)."""
        if live is not None:
            self.versions.resize(versions_needed(live, self.settings.review_versions))
        ranker = await self.versions.get(model_uri)
        sync(self.catalogue, model_uri, ranker)
        return {
            "index": ranker.describe(),
            "items": ranker.num_items,
            "hybrid": ranker.hybrid.weights.describe(),
        }

    async def rank(
        self, model_uri: str, vectors: np.ndarray, queries: list[Query]
    ) -> list[list[RecommendedItem]]:
        """The answers of a group of queries (``vectors`` from the same version's encoder)."""
        ranker = await self.versions.get(model_uri)
        sync(self.catalogue, model_uri, ranker)  # items added or retired live
        return ranker.rank_many(vectors, queries)

    async def trained(self, model_uri: str) -> dict[str, int]:
        """The version's training interactions per item id: the counts its unproven items and
        re-ranking read, for the ingress's exploration evidence (items added live: none)."""
        ranker = await self.versions.get(model_uri)
        return ranker.trained()

    async def measure(
        self, model_uri: str, lists: list[tuple[list[str], tuple[str, ...]]]
    ) -> list[ListMeasures]:
        """The measures of answered lists: (item ids, the history they answer), each."""
        ranker = await self.versions.get(model_uri)
        sync(self.catalogue, model_uri, ranker)
        return [ranker.measure(ids, history) for ids, history in lists]
