"""Retrying idempotent calls across replica deaths.

Encoding a query and ranking it have no side effects, so a call whose replica died (killed,
out of memory, its node lost) can simply be made again: the deployment's router sends it to
another replica, or waits for the replacement the controller starts. :func:`retry` does that
with a bounded, growing back-off and a deadline; what counts as a replica death is the
caller's predicate (Ray's exception types stay at the edge, in ``serve_deployments``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
logger = logging.getLogger(__name__)


class Unavailable(RuntimeError):
    """The call kept failing on dead replicas until the deadline; answer 503, not 500."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to keep retrying a call whose replica died.

    Attributes:
        deadline_s: give up (raise :class:`Unavailable`) after this long in all; keep it
            under the HTTP proxy's ``request_timeout_s``.
        first_delay_s: the wait before the first retry.
        max_delay_s: the longest wait between two tries (the delay doubles up to it).
    """

    deadline_s: float = 20.0
    first_delay_s: float = 0.05
    max_delay_s: float = 1.0

    def problems(self) -> list[str]:
        """Every bad field, named with its value."""
        out = []
        for name in ("deadline_s", "first_delay_s", "max_delay_s"):
            value = getattr(self, name)
            if not value > 0:
                out.append(f"retry.{name} must be > 0, got {value}")
        return out


async def retry(
    call: Callable[[], Awaitable[T]],
    is_replica_death: Callable[[BaseException], bool],
    policy: RetryPolicy,
    what: str = "call",
) -> T:
    """``await call()``, again after each failure that ``is_replica_death`` accepts.

    Other exceptions propagate at once. Raises :class:`Unavailable` (with the last error
    as its cause) when the deadline passes.
    """
    start = time.monotonic()
    delay = policy.first_delay_s
    attempt = 1
    while True:
        try:
            return await call()
        except Exception as exc:
            if not is_replica_death(exc):
                raise
            waited = time.monotonic() - start
            if waited + delay > policy.deadline_s:
                raise Unavailable(
                    f"{what} failed on dead replicas for {waited:.1f} s "
                    f"({attempt} tries): {type(exc).__name__}"
                ) from exc
            logger.warning("llmrec: %s failed (%s), retry %d", what, type(exc).__name__, attempt)
        await asyncio.sleep(delay)
        delay = min(2 * delay, policy.max_delay_s)
        attempt += 1


def caused_by(exc: BaseException | None, types: tuple[type[BaseException], ...]) -> bool:
    """Whether ``exc`` or anything in its cause/context chain is one of ``types``."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, types):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__ or getattr(exc, "cause", None)
    return False


__all__ = ["RetryPolicy", "Unavailable", "caused_by", "retry"]
