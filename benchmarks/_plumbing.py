"""Ray Serve's own cost on this machine: the scoring graph's shape with no model in it.

``graph_overhead.py --plumbing`` serves this app before the real graph, in the same Ray and
environment: an ingress that validates the same request body and groups concurrent requests
as the real one does (one encoder call and one ranker call per group of up to 16, the
encoder's answer passed to the ranker by reference), an encoder that returns zero vectors and
a ranker that returns ten fixed items. What it costs per request (latency at concurrency 1,
requests per second at 32, CPU per process) is what the graph's hops cost with nothing to
compute: a floor under the real graph that no change inside llmrec can lower.
"""

# no `from __future__ import annotations`: FastAPI reads the route's annotations as types
from typing import Any

import numpy as np
from fastapi import FastAPI
from llmrec.serving import RecommendRequest
from llmrec.serving.grouping import Coalescer
from ray import serve

DIM = 384
OPTIONS: dict[str, Any] = {  # the real graph's deployment options (serve_deployments)
    "ray_actor_options": {"num_cpus": 0},
    "health_check_period_s": 2,
    "health_check_timeout_s": 10,
    "graceful_shutdown_timeout_s": 5,
}
ROLES = {
    "ServeReplica:plumbing:NoopIngress": "ingress",
    "ServeReplica:plumbing:NoopEncoder": "encoder",
    "ServeReplica:plumbing:NoopRanker": "ranker",
}
api = FastAPI()


@serve.deployment(max_ongoing_requests=64, **OPTIONS)
class NoopEncoder:
    """Zero vectors, batched across calls as the real encoder batches."""

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.0)
    async def encode(self, calls: list[list[str]]) -> list[np.ndarray]:
        return [np.zeros((len(texts), DIM), dtype=np.float32) for texts in calls]


@serve.deployment(max_ongoing_requests=64, **OPTIONS)
class NoopRanker:
    """Ten fixed items per query vector."""

    async def rank(self, vectors: np.ndarray) -> list[list[dict[str, Any]]]:
        top = [{"item_id": f"item-{j}", "score": 1.0 - j / 10} for j in range(10)]
        return [top for _ in range(len(vectors))]


@serve.deployment(max_ongoing_requests=128, **OPTIONS)
@serve.ingress(api)
class NoopIngress:
    """Validates, groups, calls the encoder then the ranker, answers: no model, no index."""

    def __init__(self, encoder: Any, ranker: Any) -> None:
        self.encoder, self.ranker = encoder, ranker
        self.groups: Coalescer[str, list[dict[str, Any]]] = Coalescer(self._group, 16, 2)

    async def _group(self, texts: list[str]) -> list[list[dict[str, Any]]]:
        result: list[list[dict[str, Any]]] = await self.ranker.rank.remote(
            self.encoder.encode.remote(texts)
        )
        return result

    @api.post("/recommend")
    async def recommend(self, req: RecommendRequest) -> dict[str, Any]:
        return {"items": await self.groups(req.query or ""), "model_version": "0"}

    @api.get("/healthz")
    async def healthz(self) -> dict[str, str]:
        return {"status": "ok"}


def app() -> Any:
    """The no-model graph, bound."""
    return NoopIngress.bind(NoopEncoder.bind(), NoopRanker.bind())  # type: ignore[attr-defined]
