"""What the review page (``GET /ui``) needs of the ingress, and nothing page-specific:
requests that name a version (``model_uri``, answered outside experiments and logs),
the list measures, known users and the registered versions.

:class:`Review` is a part of :class:`~serve_deployments.ingress.Ingress` (its routes are the
ingress's, on the same FastAPI app); it reads the ingress's router, history store, live
catalogue and deployments.
"""

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import Query as Param
from fastapi.responses import Response
from llmrec.api.errors import ApiError, error_responses
from llmrec.api.schemas import ListMeasures, UserList, VersionInfo, VersionList
from llmrec.experiments.routing import APP, Router
from llmrec.registry import store as registry
from llmrec.serving import ServeSettings
from llmrec.serving.history import HistoryStore
from llmrec.serving.http.edge import BearerAuth
from llmrec.serving.http.pages import page
from llmrec.serving.http.resilience import RetryPolicy, Unavailable, retry
from llmrec.serving.live_catalogue import LiveCatalogue
from llmrec.serving.versions import VersionCache
from ray.serve.handle import DeploymentHandle

from serve_deployments.answering import Active, is_replica_death
from serve_deployments.api import Credentials, api

logger = logging.getLogger("ray.serve")


class Review:
    """Versions named by requests, list measures, user search and the version list."""

    settings: ServeSettings
    auth: BearerAuth
    retry: RetryPolicy
    router: Router[Active]
    store: HistoryStore
    live: LiveCatalogue
    ranker: DeploymentHandle
    reviewed: VersionCache[Active]
    _prepare: Callable[..., Awaitable[Active]]
    _resolve: Callable[[str], Awaitable[str]]
    _authorize: Callable[[Any], None]

    def _start_review(self) -> None:
        """Room for the versions requests name, beside the routing's (``review_versions``)."""
        self.reviewed = VersionCache(self._prepare_review, max(1, self.settings.review_versions))

    async def _prepare_review(self, uri: str) -> Active:
        return await self._prepare(uri, None, seed=False)

    async def _named(self, target: str, credentials: str | None) -> Active:
        """The version a request names (``model_uri``) ready to answer: a served one as it
        is, another loaded beside them (at most ``review_versions``, least recently used
        first out). 401 without the token, 403 when naming is off, 404 for no such version,
        503 when it cannot be loaded."""
        self.auth.check(credentials)
        if self.settings.review_versions == 0:
            msg = "this server answers only with the versions it serves (review_versions: 0)"
            raise ApiError(403, msg, ("body", "model_uri"))
        try:
            uri = await self._resolve(target)
        except registry.ModelNotFoundError as exc:
            raise ApiError(404, str(exc), ("body", "model_uri")) from None
        for served in self.router.routing.live():
            if served.uri == uri:
                return served
        try:
            active = await self.reviewed.get(uri)
            await self.live.prepare(uri)  # live items added since it was loaded
        except Unavailable as exc:
            raise ApiError(503, str(exc), headers={"Retry-After": "1"}) from None
        except Exception as exc:  # a broken bundle is the version's fault, not the request's
            logger.warning("llmrec: loading %s for review failed: %s", uri, exc)
            msg = f"{uri} could not be loaded: {exc}"
            raise ApiError(503, msg, ("body", "model_uri")) from None
        return active

    async def _measure(self, uri: str, items: list[Any], history: tuple[str, ...]) -> ListMeasures:
        ids = [i.item_id for i in items]
        found = await retry(
            lambda: self.ranker.measure.remote(uri, [(ids, history)]),
            is_replica_death,
            self.retry,
            "measure",
        )
        return found[0]

    # -- routes -------------------------------------------------------------------------------

    @api.get("/users", response_model=UserList, responses=error_responses(401, 422))
    async def users(
        self,
        credentials: Credentials,
        prefix: Annotated[str, Param(max_length=200, description="The ids' start.")] = "",
        limit: Annotated[int, Param(ge=1, le=100, description="At most this many.")] = 20,
        sample: Annotated[
            int | None,
            Param(
                ge=1,
                le=100,
                description="A random sample of this many users of the "
                "served version's training logs instead (prefix and limit ignored).",
            ),
        ] = None,
        seed: Annotated[int, Param(ge=0, le=2**31 - 1, description="The sample's seed.")] = 0,
    ) -> UserList:
        """Known user ids (training logs and feedback) starting with ``prefix``, sorted; or
        a reproducible random sample of the served version's users."""
        self._authorize(credentials)
        if sample is not None:
            known = sorted(self.router.routing.arms[APP].builder.histories)
            picked = random.Random(seed).sample(known, min(sample, len(known)))
            return UserList(users=picked)
        return UserList(users=await asyncio.to_thread(self.store.users, prefix, limit))

    @api.get(
        "/admin/versions", response_model=VersionList, responses=error_responses(401, 404, 422)
    )
    async def versions(
        self,
        credentials: Credentials,
        model: Annotated[
            str | None,
            Param(
                min_length=1,
                max_length=200,
                description="A registered model's name; default: the model the app follows.",
            ),
        ] = None,
    ) -> VersionList:
        """The registered versions of a model with their aliases, newest first (the versions
        a request's model_uri may name)."""
        self._authorize(credentials)
        name = model or registry.model_name(self.router.target)
        try:
            found = await asyncio.to_thread(registry.list_versions, name)
        except registry.ModelNotFoundError as exc:
            raise ApiError(404, str(exc), ("query", "model")) from None
        return VersionList(
            model=name,
            follows=self.router.target,
            model_version=self.router.routing.arms[APP].version,
            versions=[
                VersionInfo(
                    version=v.version,
                    aliases=list(v.aliases),
                    run_id=v.run_id,
                    created=created,
                    description=description,
                )
                for v, created, description in found
            ],
        )

    @api.get("/ui", include_in_schema=False)
    async def ui(self) -> Response:
        """The review page: what versions recommend, side by side (docs/review.md)."""
        return page("index.html")

    @api.get("/ui/{name}", include_in_schema=False)
    async def ui_file(self, name: str) -> Response:
        return page(name)
