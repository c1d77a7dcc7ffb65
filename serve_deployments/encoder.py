"""The query encoder deployment: the language model, batched across every ingress replica."""

import asyncio
from typing import Any

import numpy as np
from llmrec.serving import QueryEncoder, ServeSettings
from llmrec.serving.catalogue_state import CatalogueState, LiveItem, sync
from llmrec.serving.versions import VersionCache, open_version, versions_needed
from llmrec.understanding.query import blocks
from ray import serve

# OpenMP threads that spin after each parallel region take the cores the proxy, the ingress
# and the ranker need between the encoder's forward passes; passive waiting cut the encoder's
# CPU per request by about a quarter at concurrency 32 on 2 cores (README, Serving).
ENCODER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def _inputs_in(calls: list[tuple[str, list[Any]]]) -> int:
    """The size of an encoder batch: inputs (queries), not calls."""
    return sum(len(inputs) for _, inputs in calls)


@serve.deployment(
    ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": ENCODER_ENV}},
    max_ongoing_requests=64,
    health_check_period_s=2,
    health_check_timeout_s=10,
    graceful_shutdown_timeout_s=5,
)
class QueryEncoderDeployment:
    """Runs the user tower (the language model, and the sequential model when the version
    has one): resolved queries -> user vectors, batched."""

    def __init__(self, settings: dict[str, Any], model_uri: str) -> None:
        self.settings = ServeSettings(**settings)
        experiment = self.settings.experiment
        live = 1 + (len(experiment.variants) if experiment else 0)  # the app's model + each arm
        self.versions: VersionCache[QueryEncoder] = VersionCache(
            self._load, versions_needed(live, self.settings.review_versions)
        )
        self.versions.put(model_uri, self._load(model_uri))
        self.catalogue = CatalogueState(self.settings.catalogue_path)
        # serve.batch's stub types the method as a plain callable; Ray documents these setters
        self.encode.set_max_batch_size(self.settings.max_batch_size)  # type: ignore[attr-defined]
        self.encode.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)  # type: ignore[attr-defined]

    def _load(self, uri: str) -> QueryEncoder:
        _, bundle = open_version(uri, self.settings.tracking_uri)
        s = self.settings
        return QueryEncoder(bundle, s.encoder_threads, s.device, s.encoder_backend)

    async def load(self, model_uri: str, live: int | None = None) -> str:
        """Load ``model_uri``; ``live``: the versions the ingress serves at once (one per
        experiment variant), each kept with room for its successor (None: as it is)."""
        if live is not None:
            self.versions.resize(versions_needed(live, self.settings.review_versions))
        await self.versions.get(model_uri)
        return model_uri

    async def vocabulary(self, model_uri: str) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The language model's embeddings of the version's category names and titles
        (computed once per version), for reading queries in the ingress."""
        encoder = await self.versions.get(model_uri)
        limit = self.settings.intent_title_vectors
        return await asyncio.to_thread(encoder.vocabulary, limit)

    async def embed(self, model_uri: str, texts: list[str]) -> np.ndarray:
        """The language model's embeddings of phrases of a query."""
        encoder = await self.versions.get(model_uri)
        return await asyncio.to_thread(encoder.text_vectors, texts)

    async def embed_items(self, model_uri: str, items: list[LiveItem]) -> np.ndarray:
        """The version's item tower on items added live: ``[len(items), dim]`` (with each
        item's text-match vector after its vector for a version with that term)."""
        encoder = await self.versions.get(model_uri)
        return await asyncio.to_thread(encoder.embed_items, items)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0, batch_size_fn=_inputs_in)
    async def encode(self, requests: list[tuple[str, list[Any]]]) -> list[np.ndarray]:
        """``(model_uri, inputs)`` calls -> ``[len(inputs), dim]`` embeddings each (``dim +
        text_dim`` wide for a version with the text-match term: ``QueryEncoder.encode``); concurrent
        calls (from every ingress replica) share one forward pass per version, of at most
        ``max_batch_size`` inputs. Each input is what ``QueryEncoder.encode`` takes; a query
        that asks for explanations gets its occlusion rows after its own (``blocks``)."""
        out: list[Any] = [None] * len(requests)
        for uri in dict.fromkeys(u for u, _ in requests):
            encoder = await self.versions.get(uri)
            sync(self.catalogue, uri, encoder)  # histories may hold items added live
            calls = [i for i, (u, _) in enumerate(requests) if u == uri]
            inputs = [x for i in calls for x in requests[i][1]]
            vectors = await asyncio.to_thread(encoder.encode, inputs)
            per_input = iter(blocks(vectors, inputs))
            for i in calls:
                parts = [next(per_input) for _ in requests[i][1]]
                out[i] = np.concatenate(parts) if parts else vectors[:0]
        return out
