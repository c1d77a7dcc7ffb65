"""The HTTP ingress deployment: the served versions, ``/recommend``, calls to encoder and
ranker.

The edge pieces (error shape, body limit, media type, request counting, bearer token, the
OpenAPI document) are plain classes in ``llmrec.api.errors`` and ``llmrec.serving.http.edge``;
experiments (assignment, routing, the impression log, attribution, exploration) are plain
classes in ``llmrec.experiments``; this module wires them into one Serve deployment. The
FastAPI app itself is ``api.py``; the answering path is ``answering.py``, exploration's step
``exploring.py``; the other routes are parts of :class:`Ingress`: ``operations.py``'s
:class:`~serve_deployments.operations.Operations` (feedback, users, reload, the live
catalogue, the experiment) and ``review.py``'s :class:`~serve_deployments.review.Review`
(what the review page needs).
"""

import asyncio
import dataclasses
import logging
import os
import time
import uuid
from typing import Any

from fastapi import Request
from fastapi.security import HTTPAuthorizationCredentials
from llmrec.api.errors import ApiError, error_responses
from llmrec.api.experiment import parse_spec
from llmrec.api.schemas import Health, Ready
from llmrec.experiments.assignment import unit_of
from llmrec.experiments.attribution import Impression
from llmrec.experiments.impressions import ImpressionLog
from llmrec.experiments.routing import APP, Router, Routing, impression
from llmrec.registry import store as registry
from llmrec.serving import (
    Query,
    QueryBuilder,
    RecommendedItem,
    RecommendRequest,
    RecommendResponse,
    RequestError,
    ServeSettings,
)
from llmrec.serving import settings as serving_settings
from llmrec.serving.catalogue_state import CatalogueState, LiveItem, sync
from llmrec.serving.history import FeedbackLog, HistoryStore
from llmrec.serving.http.edge import BearerAuth, sha256
from llmrec.serving.http.resilience import RetryPolicy, Unavailable, retry
from llmrec.serving.live_catalogue import LiveCatalogue
from llmrec.serving.versions import open_version
from llmrec.understanding.intent import IntentParser
from llmrec.understanding.lexicon import Lexicon
from llmrec.understanding.query import understood
from ray import serve
from ray.serve.handle import DeploymentHandle

from serve_deployments.answering import Active, Answerer, is_replica_death
from serve_deployments.api import api
from serve_deployments.exploring import Explorer
from serve_deployments.operations import Operations
from serve_deployments.review import Review

logger = logging.getLogger("ray.serve")
TOKEN_ENV = "LLMREC_API_TOKEN"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


@serve.deployment(
    ray_actor_options={"num_cpus": 0},
    max_ongoing_requests=128,
    health_check_period_s=2,
    health_check_timeout_s=10,
    graceful_shutdown_timeout_s=5,
)
@serve.ingress(api)
class Ingress(Operations, Review):
    """HTTP edge: validates requests, routes each to its version (the app's, or its
    experiment variant's), builds the query, calls encoder then ranker, logs the answer;
    takes feedback into the history store and attributes it; follows the model aliases."""

    # Ray Serve awaits an async constructor; mypy wants __init__ to return None
    async def __init__(  # type: ignore[misc]
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
        own = os.environ.get(TOKEN_ENV)
        self.auth = BearerAuth(token_sha256 or (sha256(own) if own else None))
        self.retry = RetryPolicy(deadline_s=self.settings.retry_deadline_s)
        self.answers = Answerer(encoder, ranker, self.settings)
        self.store = HistoryStore(self.settings.history_db, self.settings.max_history)
        self.feedback_log = FeedbackLog(self.settings.feedback_dir)
        self.catalogue = CatalogueState(self.settings.catalogue_path)
        self.live = LiveCatalogue(self.catalogue, self._embed_items)
        self.impressions = ImpressionLog(self.settings.impression_db, self.settings.impressions_dir)
        self.explorer = Explorer(self.settings, self.impressions, ranker)
        self._start_review()  # versions a request names (model_uri: the review page)
        self.router: Router[Active] = Router(
            self.settings.model_uri or model_uri,
            self._resolve,
            self._prepare,
            self.impressions,
            self._switched,
        )
        self.lost_impressions = metrics.Counter(
            "llmrec_impressions_lost", description="Answers sent but not logged (log errors)."
        )
        serving_settings.EDGE["max_body_bytes"] = self.settings.max_body_bytes
        serving_settings.EDGE["max_admin_body_bytes"] = self.settings.max_admin_body_bytes
        serving_settings.EDGE["secured"] = self.auth.enabled
        serving_settings.EDGE["requests"] = metrics.Counter(
            "llmrec_http_requests",
            description="HTTP answers of the llmrec ingress by route template and status.",
            # ray.serve.metrics types tag_keys Tuple[str] (one key); it takes any number
            tag_keys=("route", "status"),  # type: ignore[arg-type]
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
        problem = await self.router.start(self.settings.experiment)
        if problem:  # set through the API, it no longer loads; the watcher tries again
            logger.error("llmrec: %s", problem)
        self.watcher = (
            asyncio.create_task(self._watch()) if self.settings.watch_interval_s > 0 else None
        )
        every = self.settings.impression_export_s
        self.exporter = asyncio.create_task(self._export(every)) if every > 0 else None

    # -- the model versions -----------------------------------------------------------------

    async def _prepare(self, uri: str, live: int | None = 1, seed: bool = True) -> Active:
        """Load ``uri`` everywhere (history seeded, encoder and ranker loaded) before use;
        ``live``: the versions served at once (each deployment keeps room for them; None:
        as it is); ``seed``: load the version's training histories into the history store
        (not for a version only looked at)."""
        version, bundle = await asyncio.to_thread(open_version, uri, self.settings.tracking_uri)
        if seed:
            await asyncio.to_thread(self.store.seed, uri, bundle.histories)
        await retry(
            lambda: self.encoder.load.remote(uri, live), is_replica_death, self.retry, "load"
        )
        lexicon = await asyncio.to_thread(Lexicon.build, bundle.catalogue, bundle.histories)
        vectors = await retry(
            lambda: self.encoder.vocabulary.remote(uri), is_replica_death, self.retry, "vocabulary"
        )
        parser = IntentParser(lexicon, *vectors)
        builder = QueryBuilder(bundle, self.store, self.settings, parser)
        info = await retry(lambda: self.ranker.load.remote(uri, live), is_replica_death, self.retry)
        embedded = await self.live.prepare(uri)  # live items, with this version's item tower
        if embedded:
            logger.info("llmrec: %d live items embedded for %s", embedded, uri)
        return Active(uri, version, builder, info, bundle.config.rank.explore)

    async def _embed_items(self, uri: str, items: list[LiveItem]) -> Any:
        return await retry(
            lambda: self.encoder.embed_items.remote(uri, items), is_replica_death, self.retry
        )

    async def _resolve(self, target: str) -> str:
        return (await asyncio.to_thread(registry.resolve, target)).uri

    def _switched(self, new: Routing[Active], old: Routing[Active] | None) -> None:
        """After a change of routing: logs, metrics, the vector cache and its precomputing."""
        for arm in new.changed:
            who = f"variant {arm}" if arm else "the app"
            logger.info("llmrec: %s is served by %s", who, new.arms[arm].uri)
        if old is not None and APP in new.changed:
            self.swaps.inc()
        self.version_gauge.set(float(new.arms[APP].version))
        if new.changed or old is None or old.assigner is not new.assigner:
            if new.assigner is None:
                self.answers.switched([new.arms[APP]])
            else:
                self.answers.switched(new.live(), self._owner)

    def _owner(self, user: str) -> str:
        """The version that answers a known user (for precomputing their vector)."""
        return self.router.routing.route(user, None, "")[0].uri

    async def check_model(self) -> bool:
        """Resolve every followed alias; switch the arms whose alias names another version."""
        return await self.router.check()

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.settings.watch_interval_s)
            try:
                await self.router.sync()  # an experiment set elsewhere, then the aliases
            except Exception as exc:  # the registry may be briefly unreachable
                logger.warning("llmrec: model check failed: %s", exc)

    async def _export(self, every: float) -> None:
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.to_thread(self.impressions.export)
            except Exception as exc:  # retried next time; the rows stay in the log
                logger.warning("llmrec: exporting impressions failed: %s", exc)

    async def reconfigure(self, config: dict[str, Any]) -> None:
        """``user_config: {model_uri: ..., experiment: ...}`` in the serve config: follow
        another alias or pin a version, start, change or stop (``experiment: null``) an
        experiment, without a redeploy."""
        if config.get("model_uri"):
            await self.router.follow(str(config["model_uri"]))
        if "experiment" in config:
            await self.router.configure(parse_spec(config["experiment"]))

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
    async def recommend(self, req: RecommendRequest, request: Request) -> RecommendResponse:
        """Top-k items for a known user, or for a history and/or a free-text query (read
        into constraints: `understood`); optionally excluding items, within categories,
        re-ranked for diversity, each item explained. While an experiment runs, the user
        (or session) is served by their variant's version; `model_uri` (with the token)
        names another version to look at, answered outside experiments and logs."""
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        # one version for the whole request: the one its arm serves now, or the one named
        assigned = None
        if req.model_uri is not None:
            active = await self._named(req.model_uri, request.headers.get("authorization"))
        else:
            active, assigned = self.router.routing.route(req.user_id, req.session_id, request_id)
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
        measures = None
        share = self.explorer.share(req, active.explore)
        unit, _ = unit_of(req.user_id, req.session_id, request_id)
        try:
            items, explored = await self._answer(active, query, user, share, unit)
            if req.measures:
                measures = await self._measure(active.uri, items, query.history)
        except Unavailable as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from None
        read = understood(query.intent, query.strict, active.builder.catalogue)
        if self.settings.impressions and req.model_uri is None:
            took = 1000 * (time.perf_counter() - started)
            ids = [i.item_id for i in items]
            shown = impression(request_id, req.user_id, req.session_id, active, assigned, ids, took)
            await self._log(dataclasses.replace(shown, explored=explored))
        return RecommendResponse(
            items=items,
            model_version=active.version,
            understood=read,
            request_id=request_id,
            variant=assigned.variant if assigned else None,
            measures=measures,
        )

    async def _answer(
        self, active: Active, query: Query, user: str | None, share: float, unit: str
    ) -> tuple[list[RecommendedItem], tuple[int, ...]]:
        """The answer's items, and the 1-based positions of its exploration slots: with a
        share to explore, the ranker's wider list goes through the explorer."""
        if share <= 0:
            return await self.answers(active.uri, query, user), ()
        wide = await self.answers(active.uri, self.explorer.widen(query), user)
        trained = await self.explorer.trained(active.uri)
        return await self.explorer.choose(wide, query, share, unit, trained)

    async def _log(self, shown: Impression) -> None:
        """Commit the answer to the impression log before it is sent."""
        try:
            await asyncio.to_thread(self.impressions.record, [shown])
        except Exception as exc:  # the answer is still worth sending; the loss is counted
            logger.warning("llmrec: answer %s not logged: %s", shown.request_id, exc)
            self.lost_impressions.inc()

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
