"""The scoring graph: ingress (FastAPI) -> query encoder (the LLM) -> candidate ranker.

This module is the only Ray Serve code; the work itself lives in ``llmrec.serving``.

One model version at a time: the ingress holds the *active* version (a concrete
``models:/name/N``) and passes it with every call, and the encoder and the ranker answer for
the version they are asked for (each keeps the last two loaded). A request is therefore
computed end to end with one version's query tower and that same version's item embeddings.
When the alias the app follows (``model_uri``, default ``<model>@champion``) moves — seen by a
watcher every ``watch_interval_s``, by ``POST /admin/reload``, or by a new ``user_config`` —
the ingress loads the new version in the encoder and the ranker first and only then switches;
requests in flight finish on the version they started with.
"""

import asyncio
import hashlib
import hmac
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from llmrec import registry
from llmrec.bundle import ModelBundle
from llmrec.serving import (
    CandidateRanker,
    Coalescer,
    Query,
    QueryBuilder,
    QueryEncoder,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    RequestError,
    ServeSettings,
)
from llmrec.serving import settings as serving_settings
from llmrec.serving.history import Event, FeedbackLog, HistoryStore
from llmrec.serving.schemas import (
    FeedbackRequest,
    FeedbackResponse,
    Health,
    Ready,
    UserHistory,
)
from ray import serve
from ray.serve.handle import DeploymentHandle

logger = logging.getLogger("ray.serve")

api = FastAPI(
    title="llmrec",
    description="Recommendations scored by a fine-tuned language model. `/feedback`, "
    "`/users/{user_id}/history` and `/admin/*` need `Authorization: Bearer <token>` when the "
    "server runs with `LLMREC_API_TOKEN` set.",
    version="0.2.0",
)


@api.middleware("http")
async def _limit_and_count(request: Request, call_next: Callable[[Request], Awaitable[Any]]) -> Any:
    """Refuse bodies over the limit (413) and count every answer by endpoint and status."""
    limit = serving_settings.EDGE["max_body_bytes"]
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        response: Any = JSONResponse(
            status_code=413,
            content={"detail": f"request body is {length} bytes; the limit is {limit}"},
        )
    else:
        response = await call_next(request)
    counter = serving_settings.EDGE["requests"]
    if counter is not None:
        counter.inc(tags={"route": request.url.path, "status": str(response.status_code)})
    return response


TOKEN_ENV = "LLMREC_API_TOKEN"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _open(model_uri: str, tracking_uri: str) -> tuple[str, ModelBundle]:
    """Download a concrete version's bundle: (version number, bundle)."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    version, path = registry.cached_bundle(model_uri)  # one download per node and version
    return version.version, ModelBundle(path)


class _Versions:
    """The last ``size`` loaded objects by model URI, each loaded once (in a thread)."""

    def __init__(self, load: Callable[[str], Any], size: int = 2) -> None:
        self.load = load
        self.size = size
        self.loaded: OrderedDict[str, Any] = OrderedDict()
        self.lock = asyncio.Lock()

    async def get(self, uri: str) -> Any:
        if uri in self.loaded:
            self.loaded.move_to_end(uri)
            return self.loaded[uri]
        async with self.lock:
            if uri not in self.loaded:
                self.loaded[uri] = await asyncio.to_thread(self.load, uri)
                while len(self.loaded) > self.size:
                    self.loaded.popitem(last=False)
            return self.loaded[uri]


def _queries_in(calls: list[tuple[str, list[Query]]]) -> int:
    """The size of an encoder batch: queries, not calls."""
    return sum(len(queries) for _, queries in calls)


# OpenMP threads that spin after each parallel region take the cores the proxy, the ingress
# and the ranker need between the encoder's forward passes; passive waiting cut the encoder's
# CPU per request by about a quarter at concurrency 32 on 2 cores (README, Serving).
ENCODER_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


@serve.deployment(
    ray_actor_options={"num_cpus": 0, "runtime_env": {"env_vars": ENCODER_ENV}},
    max_ongoing_requests=64,
)
class QueryEncoderDeployment:
    """Runs the user tower (the language model, and the sequential model when the version
    has one): resolved queries -> user vectors, batched."""

    def __init__(self, settings: dict[str, Any], model_uri: str) -> None:
        self.settings = ServeSettings(**settings)
        self.versions = _Versions(self._load)
        self.versions.loaded[model_uri] = self._load(model_uri)
        self.encode.set_max_batch_size(self.settings.max_batch_size)
        self.encode.set_batch_wait_timeout_s(self.settings.batch_wait_timeout_s)

    def _load(self, uri: str) -> QueryEncoder:
        _, bundle = _open(uri, self.settings.tracking_uri)
        return QueryEncoder(bundle, self.settings.encoder_threads, self.settings.device)

    async def load(self, model_uri: str) -> str:
        await self.versions.get(model_uri)
        return model_uri

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.0, batch_size_fn=_queries_in)
    async def encode(self, requests: list[tuple[str, list[Query]]]) -> list[np.ndarray]:
        """``(model_uri, queries)`` calls -> ``[len(queries), dim]`` user vectors each;
        concurrent calls (from every ingress replica) share one forward pass per version, of
        at most ``max_batch_size`` queries."""
        out: list[Any] = [None] * len(requests)
        for uri in dict.fromkeys(u for u, _ in requests):
            encoder = await self.versions.get(uri)
            calls = [i for i, (u, _) in enumerate(requests) if u == uri]
            queries = [q for i in calls for q in requests[i][1]]
            vectors = await asyncio.to_thread(encoder.encode, queries)
            start = 0
            for i in calls:
                n = len(requests[i][1])
                out[i] = vectors[start : start + n]
                start += n
        return out


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=64)
class CandidateRankerDeployment:
    """Item index, hybrid scores, filters and diversity re-ranking of one version."""

    def __init__(self, settings: dict[str, Any], model_uri: str) -> None:
        self.settings = ServeSettings(**settings)
        self.versions = _Versions(self._load)
        self.versions.loaded[model_uri] = self._load(model_uri)

    def _load(self, uri: str) -> CandidateRanker:
        _, bundle = _open(uri, self.settings.tracking_uri)
        return CandidateRanker(bundle, self.settings)

    async def load(self, model_uri: str) -> dict[str, Any]:
        ranker = await self.versions.get(model_uri)
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
        return ranker.rank_many(vectors, queries)


@dataclass(frozen=True)
class Active:
    """The version the ingress serves: concrete URI, number, query builder, ranker facts."""

    uri: str
    version: str
    builder: QueryBuilder
    info: dict[str, Any]


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=128)
@serve.ingress(api)
class Ingress:
    """HTTP edge: validates requests, builds the query, calls encoder then ranker; takes
    feedback into the history store; follows the model alias."""

    async def __init__(
        self,
        encoder: DeploymentHandle,
        ranker: DeploymentHandle,
        settings: dict[str, Any],
        model_uri: str,
        token_sha256: str | None = None,
    ) -> None:
        import mlflow
        from ray.serve import metrics

        self.settings = ServeSettings(**settings)
        mlflow.set_tracking_uri(self.settings.tracking_uri)
        self.encoder = encoder
        self.ranker = ranker
        self.target = self.settings.model_uri or model_uri
        own = os.environ.get(TOKEN_ENV)
        self.token_sha256 = token_sha256 or (_sha256(own) if own else None)
        self.store = HistoryStore(self.settings.history_db, self.settings.max_history)
        self.feedback_log = FeedbackLog(self.settings.feedback_dir)
        self.swap_lock = asyncio.Lock()
        serving_settings.EDGE["max_body_bytes"] = self.settings.max_body_bytes
        serving_settings.EDGE["requests"] = metrics.Counter(
            "llmrec_http_requests",
            description="HTTP answers of the llmrec ingress by route and status.",
            tag_keys=("route", "status"),
        )
        self.feedback_events = metrics.Counter(
            "llmrec_feedback_events",
            description="Feedback events committed, by event kind.",
            tag_keys=("event",),
        )
        self.version_gauge = metrics.Gauge(
            "llmrec_model_version", description="The registered version being served."
        )
        self.swaps = metrics.Counter("llmrec_model_swaps", description="Model version switches.")
        self.groups: Coalescer[tuple[str, Query], list[RecommendedItem]] = Coalescer(
            self._answer, self.settings.max_batch_size, self.settings.max_groups_in_flight
        )
        self.active = await self._prepare(model_uri)
        self.version_gauge.set(float(self.active.version))
        self.watcher = (
            asyncio.create_task(self._watch()) if self.settings.watch_interval_s > 0 else None
        )

    async def _prepare(self, uri: str) -> Active:
        """Load ``uri`` everywhere (history seeded, encoder and ranker loaded) before use."""
        version, bundle = await asyncio.to_thread(_open, uri, self.settings.tracking_uri)
        await asyncio.to_thread(self.store.seed, uri, bundle.histories)
        builder = QueryBuilder(bundle, self.store, self.settings)
        await self.encoder.load.remote(uri)
        info = await self.ranker.load.remote(uri)
        return Active(uri, version, builder, info)

    async def check_model(self) -> bool:
        """Resolve the followed alias; switch when it names another version."""
        resolved = (await asyncio.to_thread(registry.resolve, self.target)).uri
        if resolved == self.active.uri:
            return False
        async with self.swap_lock:
            if resolved == self.active.uri:
                return False
            new = await self._prepare(resolved)
            logger.info("llmrec: switching from %s to %s", self.active.uri, new.uri)
            self.active = new
            self.version_gauge.set(float(new.version))
            self.swaps.inc()
            return True

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.watch_interval_s)
            try:
                await self.check_model()
            except Exception as exc:  # the registry may be briefly unreachable
                logger.warning("llmrec: model check failed: %s", exc)

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config: {model_uri: ...}`` in the serve config: follow another alias or pin
        a version without a redeploy."""
        if config.get("model_uri"):
            self.target = str(config["model_uri"])
            await self.check_model()

    def _authorize(self, authorization: str | None) -> None:
        """401 unless the bearer token matches (compared as SHA-256 digests, in constant
        time); open when no token is configured."""
        if self.token_sha256 is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            _sha256(given.strip()), self.token_sha256
        ):
            raise HTTPException(
                status_code=401,
                detail="missing or wrong bearer token (Authorization: Bearer <LLMREC_API_TOKEN>)",
                headers={"WWW-Authenticate": "Bearer"},
            )

    @api.post("/recommend", response_model=RecommendResponse)
    async def recommend(self, req: RecommendRequest) -> RecommendResponse:
        """Top-k items for a known user, or for a history and/or a free-text query;
        optionally excluding items, within categories, re-ranked for diversity."""
        active = self.active  # one version for the whole request
        try:
            query = active.builder.build(req)
        except RequestError as exc:
            raise HTTPException(status_code=exc.status, detail=exc.message) from None
        items = await self.groups((active.uri, query))
        return RecommendResponse(items=items, model_version=active.version)

    async def _answer(self, jobs: list[tuple[str, Query]]) -> list[list[RecommendedItem]]:
        """Concurrent requests travel together (``self.groups``): one encoder call and one
        ranker call per group and version instead of two calls per request (on a small
        machine the calls, not the model, are what limits throughput). The encoder's answer
        goes to the ranker directly; the vectors never come back through this replica."""
        out: list[Any] = [None] * len(jobs)
        for uri in dict.fromkeys(u for u, _ in jobs):
            rows = [i for i, (u, _) in enumerate(jobs) if u == uri]
            queries = [jobs[i][1] for i in rows]
            vectors = self.encoder.encode.remote((uri, queries))
            answers = await self.ranker.rank.remote(uri, vectors, queries)
            for i, items in zip(rows, answers, strict=True):
                out[i] = items
        return out

    @api.post("/feedback", response_model=FeedbackResponse)
    async def feedback(
        self, body: FeedbackRequest, authorization: str | None = Header(None)
    ) -> FeedbackResponse:
        """Record what users did; committed durably before the answer, and appended to the
        feedback Parquet folder (interaction contract) for later training."""
        self._authorize(authorization)
        catalogue = self.active.builder.catalogue
        unknown = [e.item_id for e in body.events if e.item_id not in catalogue]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:10])
            raise HTTPException(status_code=422, detail=f"unknown item ids: {shown}")
        now = int(time.time())
        events = [
            Event(e.user_id, e.item_id, e.event, e.value, e.query, e.timestamp or now)
            for e in body.events
        ]
        await asyncio.to_thread(self.store.append, events)
        path = await asyncio.to_thread(self.feedback_log.append, events)
        for e in events:
            self.feedback_events.inc(tags={"event": e.event})
        return FeedbackResponse(accepted=len(events), logged_to=path.name)

    @api.get("/users/{user_id}/history", response_model=UserHistory)
    async def user_history(
        self, user_id: str, authorization: str | None = Header(None)
    ) -> UserHistory:
        """What the server knows of a user: the items that write their text, and their
        latest feedback events."""
        self._authorize(authorization)
        state = await asyncio.to_thread(self.store.user, user_id)
        if state is None:
            raise HTTPException(status_code=404, detail=f"unknown user_id {user_id!r}")
        events = await asyncio.to_thread(self.store.events, user_id)
        return UserHistory(
            user_id=user_id,
            history=list(state.history),
            recent_feedback=[e.__dict__ for e in events],
        )

    @api.post("/admin/reload")
    async def reload(self, authorization: str | None = Header(None)) -> dict[str, Any]:
        """Check the followed alias now (instead of waiting for the watcher)."""
        self._authorize(authorization)
        changed = await self.check_model()
        return {"changed": changed, "model_version": self.active.version, "follows": self.target}

    @api.get("/healthz", response_model=Health)
    async def healthz(self) -> Health:
        """The process is up."""
        return Health(status="ok", model_version=self.active.version)

    @api.get("/readyz", response_model=Ready)
    async def readyz(self) -> Any:
        """Model loaded and index built in the ranker, for the active version."""
        active = self.active
        try:
            info = await asyncio.wait_for(self.ranker.load.remote(active.uri), timeout=10)
        except Exception as exc:
            return JSONResponse(status_code=503, content={"ready": False, "detail": str(exc)})
        return Ready(
            ready=True,
            model_version=active.version,
            model_uri=active.uri,
            index=info["index"],
            items=info["items"],
            hybrid=info["hybrid"],
            users=len(active.builder.histories),
        )


def build_app(args: dict[str, Any]) -> Any:
    """Application builder; ``args`` are :class:`~llmrec.serving.ServeSettings` fields
    (``serve_config.yaml`` or ``serve run serve_deployments:build_app key=value``).

    ``$LLMREC_API_TOKEN``, where the app is built or in the ingress replica's environment,
    turns on bearer-token checks for ``/feedback``, ``/users/...`` and ``/admin/...``.
    """
    import mlflow

    settings = ServeSettings.from_args(args)
    mlflow.set_tracking_uri(settings.tracking_uri)
    follows = settings.model_uri or registry.default_model_uri()
    pinned = registry.resolve(follows).uri  # the first version, the same in all three
    plain = settings.model_copy(update={"model_uri": follows}).model_dump()
    encoder = QueryEncoderDeployment.bind(plain, pinned)
    ranker = CandidateRankerDeployment.bind(plain, pinned)
    token = os.environ.get(TOKEN_ENV)  # only its digest travels to the replica
    return Ingress.bind(encoder, ranker, plain, pinned, _sha256(token) if token else None)
