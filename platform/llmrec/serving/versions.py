"""Model versions in a serving process: open a registered version's bundle, keep the last
few loaded.

Each replica of the graph (encoder, ranker) answers for the version it is asked for, so that
requests in flight during a swap finish on the version they started with; a
:class:`VersionCache` holds the last ``size`` loaded objects and loads each one once. An
experiment serves one version per variant at once: the ingress asks for room for all of
them, and for each one's successor during a swap (:func:`versions_needed`).
"""

from __future__ import annotations

import asyncio
import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from llmrec.registry import store as registry
from llmrec.registry.bundle import ModelBundle

T = TypeVar("T")


def open_version(model_uri: str, tracking_uri: str) -> tuple[str, ModelBundle]:
    """Download (once per node and version) and open a concrete version's bundle.

    Returns:
        (the version number, the bundle).
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    version, path = registry.cached_bundle(model_uri)
    return version.version, ModelBundle(path)


class VersionCache(Generic[T]):
    """The last ``size`` objects loaded by model URI, each loaded once (a plain function in
    a thread, a coroutine function awaited).

    Args:
        load: builds the object of one model URI (slow: downloads, model weights).
        size: how many versions to keep; 2 lets a swap finish the old version's requests.
    """

    def __init__(
        self, load: Callable[[str], T] | Callable[[str], Awaitable[T]], size: int = 2
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.load = load
        self.size = size
        self.loaded: OrderedDict[str, T] = OrderedDict()
        self._lock = asyncio.Lock()

    def resize(self, size: int) -> None:
        """Keep ``size`` versions from now on (the least recently used go first)."""
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = size
        while len(self.loaded) > self.size:
            self.loaded.popitem(last=False)

    def put(self, uri: str, value: T) -> None:
        """Store an object loaded elsewhere (a replica's first version, in its constructor)."""
        self.loaded[uri] = value
        self.loaded.move_to_end(uri)
        while len(self.loaded) > self.size:
            self.loaded.popitem(last=False)

    async def get(self, uri: str) -> T:
        """The object of ``uri``, loading it (once, however many callers wait) if needed."""
        if uri in self.loaded:
            self.loaded.move_to_end(uri)
            return self.loaded[uri]
        async with self._lock:
            if uri not in self.loaded:
                if inspect.iscoroutinefunction(self.load):
                    value = await self.load(uri)
                else:
                    value = await asyncio.to_thread(self.load, uri)
                self.put(uri, value)
            return self.loaded[uri]


def versions_needed(live: int, review: int = 0) -> int:
    """Versions a replica keeps for ``live`` versions served at once (one per experiment
    variant, or one): each, and its successor while a swap lets its requests finish; and
    ``review`` versions asked for by name (``model_uri`` on a request: the review page)."""
    return 2 * max(1, live) + max(0, review)


__all__ = ["VersionCache", "open_version", "versions_needed"]
