"""The scoring graph: ingress (FastAPI) -> query encoder (the LLM) -> candidate ranker.

This module is the only Ray Serve code; the work itself lives in ``llmrec.serving``. The model
alias is resolved once, when the app is built, and the concrete version is bound to all three
deployments, so that a response is never computed with two versions.
"""

import os
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from llmrec import registry
from llmrec.bundle import ModelBundle
from llmrec.config import DEFAULT_TRACKING_URI
from llmrec.serving import (
    CandidateRanker,
    QueryBuilder,
    QueryEncoder,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    RequestError,
)
from llmrec.serving.schemas import Health
from ray import serve
from ray.serve.handle import DeploymentHandle

api = FastAPI(
    title="llmrec",
    description="Recommendations scored by a fine-tuned language model.",
    version="0.1.0",
)


def _open(model_uri: str, tracking_uri: str) -> tuple[str, ModelBundle]:
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    version, path = registry.download_bundle(model_uri)
    return version.version, ModelBundle(path)


@serve.deployment(ray_actor_options={"num_cpus": 0})
class QueryEncoderDeployment:
    """Runs the language model: query text -> normalised embedding."""

    def __init__(self, model_uri: str, tracking_uri: str, threads: int = 1) -> None:
        self.version, bundle = _open(model_uri, tracking_uri)
        self.encoder = QueryEncoder(bundle, threads=threads)

    def encode(self, text: str) -> np.ndarray:
        return self.encoder.encode([text])[0]


@serve.deployment(ray_actor_options={"num_cpus": 0})
class CandidateRankerDeployment:
    """Exact top-k over the version's item embeddings, seen items masked."""

    def __init__(self, model_uri: str, tracking_uri: str) -> None:
        self.version, bundle = _open(model_uri, tracking_uri)
        self.ranker = CandidateRanker(bundle)

    def top_k(self, query: np.ndarray, exclude: tuple[str, ...], k: int) -> list[RecommendedItem]:
        return self.ranker.top_k(query, exclude, k)


@serve.deployment(ray_actor_options={"num_cpus": 0})
@serve.ingress(api)
class Ingress:
    """HTTP edge: validates requests, builds the query, calls encoder then ranker."""

    def __init__(
        self, encoder: DeploymentHandle, ranker: DeploymentHandle, model_uri: str, tracking_uri: str
    ) -> None:
        self.version, bundle = _open(model_uri, tracking_uri)
        self.builder = QueryBuilder(bundle)
        self.encoder = encoder
        self.ranker = ranker

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, req: RecommendRequest) -> RecommendResponse:
        """Top-k items for a known user, or for a history and/or a free-text query."""
        try:
            query = self.builder.build(req)
        except RequestError as exc:
            raise HTTPException(status_code=exc.status, detail=exc.message) from None
        vector = await self.encoder.encode.remote(query.text)
        items = await self.ranker.top_k.remote(vector, query.exclude, req.k)
        return RecommendResponse(items=items, model_version=self.version)

    @api.get("/healthz", response_model=Health)
    async def healthz(self) -> Health:
        return Health(status="ok", model_version=self.version)


def absolute_tracking_uri(uri: str) -> str:
    """``sqlite:///mlflow.db`` relative to where the app is built, since replicas run
    elsewhere; other URIs unchanged."""
    prefix = "sqlite:///"
    if uri.startswith(prefix) and not uri.startswith(prefix + "/"):
        return prefix + str(Path(uri.removeprefix(prefix)).resolve())
    return uri


def build_app(args: dict[str, Any]) -> Any:
    """Application builder: ``model_uri``, ``tracking_uri`` and ``encoder_threads`` args, or
    ``$LLMREC_MODEL_URI`` / ``$MLFLOW_TRACKING_URI``, or the defaults."""
    import mlflow

    tracking_uri = absolute_tracking_uri(
        args.get("tracking_uri") or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    )
    mlflow.set_tracking_uri(tracking_uri)
    uri = (
        args.get("model_uri") or os.environ.get("LLMREC_MODEL_URI") or registry.default_model_uri()
    )
    pinned = registry.resolve(uri).uri  # one concrete version for the whole graph
    encoder = QueryEncoderDeployment.bind(pinned, tracking_uri, int(args.get("encoder_threads", 1)))
    ranker = CandidateRankerDeployment.bind(pinned, tracking_uri)
    return Ingress.bind(encoder, ranker, pinned, tracking_uri)
