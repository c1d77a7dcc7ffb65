"""The recommendation path behind the ingress: grouping, cached vectors, encoder and ranker.

:class:`Answerer` serves ``(version, query, known user)`` calls: concurrent calls travel
together (one encoder and one ranker call per group and version), known users' query
vectors come from the cache when it holds them for that exact input, and the
encode-and-rank call of a group is retried across replica deaths (both are idempotent).
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
from llmrec.serving import (
    Coalescer,
    Query,
    QueryBuilder,
    RecommendedItem,
    RecommendRequest,
    RequestError,
    ServeSettings,
)
from llmrec.serving.cache import UserVectorCache, fingerprint
from llmrec.serving.http.resilience import RetryPolicy, caused_by, retry
from llmrec.understanding.intent import IntentParser
from llmrec.understanding.query import blocks
from ray.exceptions import ActorUnavailableError, RayActorError
from ray.serve.handle import DeploymentHandle, DeploymentResponse

logger = logging.getLogger("ray.serve")


def is_replica_death(exc: BaseException) -> bool:
    """A call that failed because a replica died or is unreachable (worth retrying)."""
    return caused_by(exc, (RayActorError, ActorUnavailableError))


Job = tuple[str, Query, str | None]
"""What the ingress groups: (concrete model URI, query, the known user it is for or None)."""


@dataclass(frozen=True)
class Active:
    """The version the ingress serves: concrete URI, number, query builder, ranker facts,
    and the share of its lists to explore (its ``rank.explore``)."""

    uri: str
    version: str
    builder: QueryBuilder
    info: dict[str, Any]
    explore: float = 0.0


class Answerer:
    """Answers recommendation calls through the encoder and ranker deployments.

    Args:
        encoder: the query encoder deployment.
        ranker: the candidate ranker deployment.
        settings: ``max_batch_size``, ``max_groups_in_flight``, ``retry_deadline_s``,
            ``user_cache_size`` and ``precompute_users`` are read.
    """

    def __init__(
        self, encoder: DeploymentHandle, ranker: DeploymentHandle, settings: ServeSettings
    ) -> None:
        self.encoder = encoder
        self.ranker = ranker
        self.retry = RetryPolicy(deadline_s=settings.retry_deadline_s)
        self.cache = UserVectorCache(settings.user_cache_size)
        self.batch = settings.max_batch_size
        self.precompute_users = settings.precompute_users
        self.groups: Coalescer[Job, list[RecommendedItem]] = Coalescer(
            self._answer, settings.max_batch_size, settings.max_groups_in_flight
        )
        self.live: set[str] = set()
        self.precompute: asyncio.Task[None] | None = None

    async def __call__(self, uri: str, query: Query, user: str | None) -> list[RecommendedItem]:
        """The answer to one query of version ``uri`` (``user``: the known user it is for,
        when their cached vector may be used)."""
        return await self.groups((uri, query, user))

    async def _answer(self, jobs: list[Job]) -> list[list[RecommendedItem]]:
        """Concurrent requests travel together (``self.groups``): one encoder call and one
        ranker call per group and version instead of two calls per request (on a small
        machine the calls, not the model, are what limits throughput)."""
        out: list[Any] = [None] * len(jobs)
        for uri in dict.fromkeys(job[0] for job in jobs):
            rows = [i for i, job in enumerate(jobs) if job[0] == uri]
            group = [(jobs[i][1], jobs[i][2]) for i in rows]
            answers = await retry(
                lambda u=uri, g=group: self._encode_and_rank(u, g),  # type: ignore[misc]
                is_replica_death,
                self.retry,
                "encode and rank",
            )
            for i, items in zip(rows, answers, strict=True):
                out[i] = items
        return out

    def _encode(self, uri: str, queries: list[Query]) -> DeploymentResponse:
        """The one place the graph calls the encoder."""
        # not a streaming handle: its .remote() gives a DeploymentResponse, never a generator
        return cast(DeploymentResponse, self.encoder.encode.remote((uri, queries)))

    async def _encode_and_rank(
        self, uri: str, group: list[tuple[Query, str | None]]
    ) -> list[list[RecommendedItem]]:
        """Without known users the encoder's answer goes to the ranker directly (the
        vectors never come back through this replica); with them, cached vectors are used
        as they are. Encoding and ranking are idempotent: a call is retried whole."""
        queries = [q for q, _ in group]
        if not any(user for _, user in group):
            return await self.ranker.rank.remote(uri, self._encode(uri, queries), queries)
        vectors = await self._vectors(uri, group)
        return await self.ranker.rank.remote(uri, vectors, queries)

    async def _vectors(self, uri: str, group: list[tuple[Query, str | None]]) -> np.ndarray:
        """The group's query vectors: known users' from the cache when it holds them for
        this exact input, the others encoded (and cached for known users)."""
        keys = [fingerprint(q.request, q.history) if user else "" for q, user in group]
        found = [
            self.cache.get(uri, user, key) if user else None
            for (_, user), key in zip(group, keys, strict=True)
        ]
        missing = [i for i, v in enumerate(found) if v is None]
        if missing:
            asked = [group[i][0] for i in missing]
            fresh = blocks(await self._encode(uri, asked), asked)
            for i, block in zip(missing, fresh, strict=True):
                found[i] = block
                user = group[i][1]
                if user:
                    self.cache.put(uri, user, keys[i], block[0])
        return np.concatenate([np.atleast_2d(np.asarray(v, dtype=np.float32)) for v in found])

    async def read_phrases(self, uri: str, parser: IntentParser, text: str) -> None:
        """Embed (in the encoder, with the version's language model) the phrases of ``text``
        that ``parser`` will compare with the catalogue and does not hold yet."""
        missing = parser.missing(text)
        if missing:
            vectors = await retry(
                lambda: self.encoder.embed.remote(uri, missing),
                is_replica_death,
                self.retry,
                "embed phrases",
            )
            parser.remember(missing, vectors)

    def switched(self, live: Sequence[Active], owner: Callable[[str], str] | None = None) -> None:
        """``live`` versions are served from now on (one, or one per experiment variant):
        other versions' vectors go, and known users are encoded in the background
        (``precompute_users``) by the version that serves them (``owner(user)``: its URI;
        default the first), replacing any precomputation of an older routing."""
        self.live = {a.uri for a in live}
        self.cache.retain(*self.live)
        if self.precompute is not None:
            self.precompute.cancel()
        if self.precompute_users and self.cache.size > 0:
            self.precompute = asyncio.create_task(self._precompute(list(live), owner))

    def forget(self, user: str) -> None:
        """The user's history changed (feedback): their cached vectors go."""
        self.cache.forget(user)

    async def _precompute(self, live: list[Active], owner: Callable[[str], str] | None) -> None:
        size = self.batch
        try:
            for active in live:
                users = [
                    u
                    for u in active.builder.histories
                    if (owner(u) if owner else live[0].uri) == active.uri
                ][: self.cache.size // len(live)]
                for start in range(0, len(users), size):
                    if active.uri not in self.live:
                        return
                    chunk = users[start : start + size]
                    queries = await asyncio.to_thread(self._known_queries, active, chunk)
                    group = [(q, user) for user, q in queries]
                    if group:
                        await retry(
                            lambda a=active, g=group: self._vectors(a.uri, g),  # type: ignore[misc]
                            is_replica_death,
                            self.retry,
                            "precompute",
                        )
            logger.info("llmrec: %d known users' query vectors cached", len(self.cache))
        except Exception as exc:  # a cold cache is slower, never wrong
            logger.warning("llmrec: precomputing query vectors stopped: %s", exc)

    @staticmethod
    def _known_queries(active: Active, users: list[str]) -> list[tuple[str, Query]]:
        out = []
        for user in users:
            with contextlib.suppress(RequestError):
                out.append((user, active.builder.build(RecommendRequest(user_id=user))))
        return out
