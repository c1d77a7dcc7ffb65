"""The ingress's routes other than ``/recommend``: feedback (committed, attributed to the
answer it names), a user's history, and the operations (reload, the live catalogue, the
running experiment).

:class:`Operations` is a part of :class:`~serve_deployments.ingress.Ingress` (its routes are
the ingress's, on the same FastAPI app), as :class:`~serve_deployments.review.Review` is; it
reads the ingress's router, stores, logs and metrics.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from llmrec.api.errors import ApiError, error_responses
from llmrec.api.experiment import ExperimentSpec
from llmrec.api.schemas import (
    CatalogueChange,
    ExperimentStatus,
    FeedbackEvent,
    FeedbackRequest,
    FeedbackResponse,
    NewItems,
    ReferredItem,
    ReloadResponse,
    RetireItems,
    UserHistory,
)
from llmrec.experiments.attribution import Attributed, AttributionError, attribute
from llmrec.experiments.impressions import ImpressionLog
from llmrec.experiments.routing import APP, Router, status
from llmrec.registry import store as registry
from llmrec.serving.catalogue_state import LiveItem
from llmrec.serving.history import Event, FeedbackLog, HistoryStore
from llmrec.serving.http.resilience import Unavailable
from llmrec.serving.live_catalogue import LiveCatalogue

from serve_deployments.answering import Active, Answerer
from serve_deployments.api import ADDED_ITEM_LINKS, Credentials, api


class Operations:
    """Feedback, users' histories, reloads, the live catalogue and the experiment."""

    router: Router[Active]
    answers: Answerer
    store: HistoryStore
    feedback_log: FeedbackLog
    impressions: ImpressionLog
    live: LiveCatalogue
    feedback_events: Any
    _authorize: Callable[[Any], None]
    _sync_live: Callable[[Active], None]
    _resolve: Callable[[str], Awaitable[str]]
    check_model: Callable[[], Awaitable[bool]]

    @property
    def active(self) -> Active:
        """The version of the app's ``model_uri`` (what answers outside experiments)."""
        return self.router.routing.arms[APP]

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
        arms = self.router.routing.live()
        for arm in arms:
            self._sync_live(arm)  # feedback on live items is valid
        unknown = [e.item_id for e in given if not any(a.builder.knows(e.item_id) for a in arms)]
        if unknown:
            shown = ", ".join(repr(i) for i in unknown[:10])
            raise ApiError(404, f"unknown item ids: {shown}", ("body", "item_id"))
        now = int(time.time())
        events = [
            Event(e.user_id, e.item_id, e.event, e.value, e.query, e.timestamp or now)
            for e in given
        ]
        attributed = await self._attribute(
            [(g.request_id, e) for g, e in zip(given, events, strict=True) if g.request_id]
        )
        await asyncio.to_thread(self.store.append, events)
        for user in {e.user_id for e in events}:
            self.answers.forget(user)  # their history changed
        if attributed:
            await asyncio.to_thread(self.impressions.record_events, attributed)
        path = await asyncio.to_thread(self.feedback_log.append, events)
        for e in events:
            self.feedback_events.inc(tags={"event": e.event})
        return FeedbackResponse(
            accepted=len(events), logged_to=path.name, attributed=len(attributed)
        )

    async def _attribute(self, pairs: list[tuple[str, Event]]) -> list[Attributed]:
        """Events that name a ``request_id``, attributed to its logged answer (404 for an
        id with none, 422 for an answer given to another user)."""
        if not pairs:
            return []
        found = await asyncio.to_thread(self.impressions.lookup, [r for r, _ in pairs])
        try:
            return attribute(pairs, found)
        except AttributionError as exc:
            raise ApiError(exc.status, exc.message, ("body", "request_id")) from None

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
        titles = self.active.builder.catalogue
        return UserHistory(
            user_id=user_id,
            history=list(state.history),
            items=[
                ReferredItem(item_id=i, title=titles.title(i) if i in titles else i)
                for i in state.history
            ],
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
            changed=changed, model_version=self.active.version, follows=self.router.target
        )

    @api.post(
        "/admin/items",
        response_model=CatalogueChange,
        responses={
            **error_responses(401, 413, 415, 422, 503),
            200: {"description": "What changed.", "links": ADDED_ITEM_LINKS},
        },
    )
    async def add_items(self, body: NewItems, credentials: Credentials) -> CatalogueChange:
        """Add items to the served catalogue, or update existing ones: the served version's
        item tower embeds them and they are recommendable in the next request. Durable:
        kept across restarts and model swaps (the new version embeds them with its own
        tower), and read by the update job as new catalogue rows."""
        self._authorize(credentials)
        items = [LiveItem(i.item_id, i.title, i.text, tuple(i.categories)) for i in body.unique()]
        async with self.router.swap_lock:  # embedded and recorded for the versions served
            active = self.active
            try:
                done = await self.live.add(active.uri, items, active.builder.knows)
                for uri in {a.uri for a in self.router.routing.live()} - {active.uri}:
                    await self.live.prepare(uri)  # the running experiment's other versions
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

    @api.get("/admin/experiment", response_model=ExperimentStatus, responses=error_responses(401))
    async def experiment_status(self, credentials: Credentials) -> ExperimentStatus:
        """The running experiment: its split, each variant's version, and live counts per
        variant (requests, users, items shown, attributed events, CTR)."""
        self._authorize(credentials)
        return await self._status()

    @api.put(
        "/admin/experiment",
        response_model=ExperimentStatus,
        responses=error_responses(401, 404, 409, 413, 415, 422, 503),
    )
    async def start_experiment(
        self, spec: ExperimentSpec, credentials: Credentials
    ) -> ExperimentStatus:
        """Start an experiment, or change the running one (weights, variants, targets)
        without a redeploy: every variant's version is loaded before any request is
        assigned; users stay in their variant unless a weight change must move them. Other
        ingress replicas follow within ``watch_interval_s``."""
        self._authorize(credentials)
        if spec.problems():
            raise ApiError(409, "; ".join(spec.problems()), ("body", "variants"))
        for i, variant in enumerate(spec.variants):
            try:
                await self._resolve(variant.model_uri)
            except registry.ModelNotFoundError as exc:
                raise ApiError(404, str(exc), ("body", "variants", i, "model_uri")) from None
        try:
            await self.router.run(spec)
        except Unavailable as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from None
        return await self._status()

    @api.delete(
        "/admin/experiment", response_model=ExperimentStatus, responses=error_responses(401, 503)
    )
    async def stop_experiment(self, credentials: Credentials) -> ExperimentStatus:
        """Stop the running experiment: every request is served by the app's model_uri."""
        self._authorize(credentials)
        try:
            await self.router.run(None)
        except Unavailable as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from None
        return await self._status()

    async def _status(self) -> ExperimentStatus:
        routing = self.router.routing
        name = routing.assigner.spec.name if routing.assigner else None
        counts = await asyncio.to_thread(self.impressions.counts, name) if name else {}
        return status(routing, counts, self.router.target)
