"""Grouping concurrent calls so that each group costs one model call, not one per request.

``@serve.batch`` (Ray 2.60) forms its next batch as soon as the previous one has been
*formed*, not when it has *finished*: batches wait their turn behind ``max_concurrent_batches``
already cut. Under steady load, requests then arrive one by one within each
``batch_wait_timeout_s`` window and every batch holds one request; measured on the serving
benchmark at concurrency 32, 187 of 238 groups held one request. :class:`Coalescer` cuts a group
only when a slot is free, so everything that arrived while the previous group was being served
goes together: no wait at all when the server is idle, full groups when it is busy.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Coalescer(Generic[T, R]):
    """Serves calls ``await c(item)`` in groups through ``fn(items) -> results``.

    A group starts as soon as one of ``max_in_flight`` slots is free and holds whatever is
    waiting, at most ``max_size`` items, in arrival order. ``fn`` must return one result per
    item, in order. An exception from ``fn`` is raised to every caller of that group; a caller
    that is cancelled (its client went away) does not disturb the others.

    Args:
        fn: the group function (one encoder and one ranker call, say).
        max_size: the most items in one group.
        max_in_flight: groups served at once; 2 lets the next group's model call overlap the
            previous group's ranking and response.
    """

    def __init__(
        self,
        fn: Callable[[list[T]], Awaitable[list[R]]],
        max_size: int,
        max_in_flight: int = 1,
    ) -> None:
        if max_size < 1 or max_in_flight < 1:
            raise ValueError(
                f"max_size and max_in_flight must be >= 1, got {max_size} and {max_in_flight}"
            )
        self.fn = fn
        self.max_size = max_size
        self.max_in_flight = max_in_flight
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def __call__(self, item: T) -> R:
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        self._start_groups()
        return await future

    def _start_groups(self) -> None:
        while self._waiting and self._in_flight < self.max_in_flight:
            group = [(i, f) for i, f in self._waiting[: self.max_size] if not f.done()]
            del self._waiting[: self.max_size]
            if not group:
                continue
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._serve(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _serve(self, group: list[tuple[T, asyncio.Future[R]]]) -> None:
        try:
            results = await self.fn([item for item, _ in group])
            if len(results) != len(group):
                raise RuntimeError(f"group function returned {len(results)} for {len(group)}")
            for (_, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except asyncio.CancelledError:
            for _, future in group:
                future.cancel()
            raise
        except Exception as exc:  # every caller of the group sees the failure
            for _, future in group:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._in_flight -= 1
            self._start_groups()
