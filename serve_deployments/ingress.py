"""The HTTP ingress deployment: routes, the active model version, calls to encoder and ranker.

The edge pieces (error shape, body limit, media type, request counting, bearer token, the
OpenAPI document) are plain classes in ``llmrec.serving.errors`` and ``llmrec.serving.edge``;
this module wires them into one FastAPI app and one Serve deployment.
"""

import asyncio
import logging
import os
import time
from typing import Annotated, Any

from fastapi import FastAPI, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from llmrec import registry
from llmrec.serving import (
    QueryBuilder,
    RecommendRequest,
    RecommendResponse,
    RequestError,
    ServeSettings,
)
from llmrec.serving import settings as serving_settings
from llmrec.serving.catalogue_state import CatalogueState, LiveCatalogue, LiveItem, sync
from llmrec.serving.edge import BearerAuth, EdgeMiddleware, openapi_document, sha256
from llmrec.serving.errors import ApiError, error_responses, install_error_handlers
from llmrec.serving.history import Event, FeedbackLog, HistoryStore
from llmrec.serving.intent import IntentParser
from llmrec.serving.lexicon import Lexicon
from llmrec.serving.query import understood
from llmrec.serving.resilience import RetryPolicy, Unavailable, retry
from llmrec.serving.schemas import (
    CatalogueChange,
    FeedbackEvent,
    FeedbackRequest,
    FeedbackResponse,
    Health,
    NewItems,
    Ready,
    ReloadResponse,
    RetireItems,
    UserHistory,
)
from llmrec.serving.versions import open_version
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_deployments.answering import Active, Answerer, is_replica_death

logger = logging.getLogger("ray.serve")
TOKEN_ENV = "LLMREC_API_TOKEN"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

api = FastAPI(
    title="llmrec",
    description="Recommendations scored by a fine-tuned language model. `/feedback`, "
    "`/users/{user_id}/history` and `/admin/*` need `Authorization: Bearer <token>` when the "
    "server runs with `LLMREC_API_TOKEN` set. Every error answers "
    '`{"detail": [{"loc": [...], "msg": "...", "type": "..."}]}`.',
    version="0.3.0",
)
install_error_handlers(api)
api.add_middleware(EdgeMiddleware)
api.openapi = openapi_document(api)  # type: ignore[method-assign]
Credentials = Annotated[
    HTTPAuthorizationCredentials | None,
    Security(HTTPBearer(auto_error=False, description="The server's LLMREC_API_TOKEN.")),
]


@serve.deployment(
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=128,
    health_check_period_s=2,
    health_check_timeout_s=10,
    graceful_shutdown_timeout_s=5,
)
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
        self.auth = BearerAuth(token_sha256 or (sha256(own) if own else None))
        self.retry = RetryPolicy(deadline_s=self.settings.retry_deadline_s)
        self.answers = Answerer(encoder, ranker, self.settings)
        self.store = HistoryStore(self.settings.history_db, self.settings.max_history)
        self.feedback_log = FeedbackLog(self.settings.feedback_dir)
        self.catalogue = CatalogueState(self.settings.catalogue_path)
        self.live = LiveCatalogue(self.catalogue, self._embed_items)
        self.swap_lock = asyncio.Lock()
        serving_settings.EDGE["max_body_bytes"] = self.settings.max_body_bytes
        serving_settings.EDGE["max_admin_body_bytes"] = self.settings.max_admin_body_bytes
        serving_settings.EDGE["secured"] = self.auth.enabled
        serving_settings.EDGE["requests"] = metrics.Counter(
            "llmrec_http_requests",
            description="HTTP answers of the llmrec ingress by route template and status.",
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
        self.active = await self._prepare(model_uri)
        self.version_gauge.set(float(self.active.version))
        self.watcher = (
            asyncio.create_task(self._watch()) if self.settings.watch_interval_s > 0 else None
        )
        self.answers.switched(self.active)

    # -- the model version ------------------------------------------------------------------

    async def _prepare(self, uri: str) -> Active:
        """Load ``uri`` everywhere (history seeded, encoder and ranker loaded) before use."""
        version, bundle = await asyncio.to_thread(open_version, uri, self.settings.tracking_uri)
        await asyncio.to_thread(self.store.seed, uri, bundle.histories)
        await retry(lambda: self.encoder.load.remote(uri), is_replica_death, self.retry, "load")
        lexicon = await asyncio.to_thread(Lexicon.build, bundle.catalogue, bundle.histories)
        vectors = await retry(
            lambda: self.encoder.vocabulary.remote(uri), is_replica_death, self.retry, "vocabulary"
        )
        parser = IntentParser(lexicon, *vectors)
        builder = QueryBuilder(bundle, self.store, self.settings, parser)
        info = await retry(lambda: self.ranker.load.remote(uri), is_replica_death, self.retry)
        embedded = await self.live.prepare(uri)  # live items, with this version's item tower
        if embedded:
            logger.info("llmrec: %d live items embedded for %s", embedded, uri)
        return Active(uri, version, builder, info)

    async def _embed_items(self, uri: str, items: list[LiveItem]) -> Any:
        return await retry(
            lambda: self.encoder.embed_items.remote(uri, items), is_replica_death, self.retry
        )

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
            self.answers.switched(new)
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

    def _sync_live(self, active: Active) -> None:
        """Items added, updated or retired live (by any replica) are known from now on;
        cached query vectors may have read the old item vectors: they go."""
        if sync(self.catalogue, active.uri, active.builder):
            self.answers.cache.clear()

    def _authorize(self, credentials: HTTPAuthorizationCredentials | None) -> None:
        """401 unless the bearer token matches; open when no token is configured."""
        given = f"{credentials.scheme} {credentials.credentials}" if credentials else None
        self.auth.check(given)

    # -- recommendations --------------------------------------------------------------------

    @api.post(
        "/recommend",
        response_model=RecommendResponse,
        response_model_exclude_none=True,
        responses=error_responses(404, 413, 415, 422, 503),
    )
    async def recommend(self, req: RecommendRequest) -> RecommendResponse:
        """Top-k items for a known user, or for a history and/or a free-text query (read
        into constraints: `understood`); optionally excluding items, within categories,
        re-ranked for diversity, each item explained."""
        active = self.active  # one version for the whole request
        self._sync_live(active)
        try:
            if req.query and req.parse_query and len(req.query) <= self.settings.max_query_chars:
                await self.answers.read_phrases(active.uri, active.builder.parser, req.query)
            query = active.builder.build(req)
        except RequestError as exc:
            loc = ("body", exc.field) if exc.field else ("body",)
            raise ApiError(exc.status, exc.message, loc) from None
        except Unavailable as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from None
        # a known user's vector can be cached (not with a query, nor with occlusion rows)
        user = req.user_id if req.query is None and not req.explain else None
        try:
            items = await self.answers(active.uri, query, user)
        except Unavailable as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from None
        read = understood(query.intent, query.strict, active.builder.catalogue)
        return RecommendResponse(items=items, model_version=active.version, understood=read)

    # -- feedback and users -----------------------------------------------------------------

    @api.post(
        "/feedback",
        response_model=FeedbackResponse,
        responses=error_responses(401, 404, 413, 415, 422),
    )
    async def feedback(
        self,
        body: FeedbackRequest | FeedbackEvent,
        credentials: Credentials,
    ) -> FeedbackResponse:
        """Record what users did (one event, or ``{"events": [...]}``); committed durably
        before the answer, and appended to the feedback Parquet folder (interaction
        contract) for later training."""
        self._authorize(credentials)
        given = body.events if isinstance(body, FeedbackRequest) else [body]
        builder = self.active.builder
        self._sync_live(self.active)  # feedback on live items is valid
        unknown = [e.item_id for e in given if not builder.knows(e.item_id)]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:10])
            raise ApiError(404, f"unknown item ids: {shown}", ("body", "item_id"))
        now = int(time.time())
        events = [
            Event(e.user_id, e.item_id, e.event, e.value, e.query, e.timestamp or now)
            for e in given
        ]
        await asyncio.to_thread(self.store.append, events)
        for user in {e.user_id for e in events}:
            self.answers.forget(user)  # their history changed
        path = await asyncio.to_thread(self.feedback_log.append, events)
        for e in events:
            self.feedback_events.inc(tags={"event": e.event})
        return FeedbackResponse(accepted=len(events), logged_to=path.name)

    @api.get(
        "/users/{user_id}/history",
        response_model=UserHistory,
        responses=error_responses(401, 404),
    )
    async def user_history(
        self,
        user_id: str,
        credentials: Credentials,
    ) -> UserHistory:
        """What the server knows of a user: the items that write their text, and their
        latest feedback events."""
        self._authorize(credentials)
        state = await asyncio.to_thread(self.store.user, user_id)
        if state is None:
            raise ApiError(404, f"unknown user_id {user_id!r}", ("path", "user_id"))
        events = await asyncio.to_thread(self.store.events, user_id)
        return UserHistory(
            user_id=user_id,
            history=list(state.history),
            recent_feedback=[e.__dict__ for e in events],
        )

    # -- operations -------------------------------------------------------------------------

    @api.post("/admin/reload", response_model=ReloadResponse, responses=error_responses(401, 503))
    async def reload(self, credentials: Credentials) -> ReloadResponse:
        """Check the followed alias now (instead of waiting for the watcher)."""
        self._authorize(credentials)
        try:
            changed = await self.check_model()
        except Unavailable as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from None
        return ReloadResponse(
            changed=changed, model_version=self.active.version, follows=self.target
        )

    @api.post(
        "/admin/items",
        response_model=CatalogueChange,
        responses=error_responses(401, 413, 415, 422, 503),
    )
    async def add_items(self, body: NewItems, credentials: Credentials) -> CatalogueChange:
        """Add items to the served catalogue, or update existing ones: the served version's
        item tower embeds them and they are recommendable in the next request. Durable:
        kept across restarts and model swaps (the new version embeds them with its own
        tower), and read by the update job as new catalogue rows."""
        self._authorize(credentials)
        items = [LiveItem(i.item_id, i.title, i.text, tuple(i.categories)) for i in body.unique()]
        async with self.swap_lock:  # embedded and recorded for the version being served
            active = self.active
            try:
                done = await self.live.add(active.uri, items, active.builder.knows)
            except Unavailable as exc:
                raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from None
        return CatalogueChange(**done.__dict__, model_version=active.version)

    @api.post(
        "/admin/items/retire",
        response_model=CatalogueChange,
        responses=error_responses(401, 404, 413, 415, 422),
    )
    async def retire_items(self, body: RetireItems, credentials: Credentials) -> CatalogueChange:
        """Take items out of recommendations (out of stock, taken down); their history and
        feedback stay. Posting an item again brings it back."""
        self._authorize(credentials)
        active = self.active
        self._sync_live(active)
        unknown = [i for i in body.item_ids if not active.builder.knows(i)]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:10])
            raise ApiError(404, f"unknown item ids: {shown}", ("body", "item_ids"))
        done = await self.live.retire(body.item_ids)
        return CatalogueChange(**done.__dict__, model_version=active.version)

    @api.get("/healthz", response_model=Health)
    async def healthz(self) -> Health:
        """The process is up."""
        return Health(status="ok", model_version=self.active.version)

    @api.get("/readyz", response_model=Ready, responses=error_responses(503))
    async def readyz(self) -> Ready:
        """Model loaded and index built in the ranker, for the active version."""
        active = self.active
        try:
            info = await asyncio.wait_for(self.ranker.load.remote(active.uri), timeout=10)
        except Exception as exc:
            raise ApiError(503, f"not ready: {type(exc).__name__}: {exc}") from None
        return Ready(
            ready=True,
            model_version=active.version,
            model_uri=active.uri,
            index=info["index"],
            items=info["items"],
            hybrid=info["hybrid"],
            users=len(active.builder.histories),
            cached_users=len(self.answers.cache),
        )
