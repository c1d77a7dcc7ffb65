"""What Ray Serve's HTTP proxy answers when the ingress replica dies under a request.

The proxy (Ray 2.60) answers a request whose replica died mid-request with a bare 500, although
nothing is wrong with the request and the next one will be served by the replacement replica.
:class:`ReplicaLostMiddleware` runs in the proxy and turns every request that the proxy could
not answer at all (no response started: the replica died or could not be reached) into a
503 with ``Retry-After`` in the API's one error shape. Answers the ingress produced itself,
its own errors included, pass untouched.

Ray Serve loads proxy middlewares from an import path in the environment of the processes
that start Ray (``ray start``, ``serve run``, or the ``ray.init`` of a script)::

    export RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH=llmrec.serving.http.proxy:middlewares
"""

from __future__ import annotations

import asyncio
import json

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PROXY_CALLBACK_ENV = "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH"
PROXY_CALLBACK = "llmrec.serving.http.proxy:middlewares"
"""The value of :data:`PROXY_CALLBACK_ENV` that installs :func:`middlewares`."""

GRPC_ENV = {
    "RAY_SERVE_USE_GRPC_BY_DEFAULT": "1",
    "RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH": str(2**31 - 1),
}
"""The environment (of the processes that start Ray) that sends the graph's calls (proxy to
ingress, ingress to encoder and ranker) over gRPC between the processes instead of as Ray
tasks. On 2 cores it saved about 1 ms of CPU per request in each process, inside the
run-to-run noise (``benchmarks/graph_overhead.py``, docs/serving.md); Ray's direct ingress
(``RAY_SERVE_THROUGHPUT_OPTIMIZED=1``) uses it too. gRPC's own limit on a received message
(4 MiB) is lifted: a version's title vectors for query understanding are larger. A replica
lost under a call surfaces as ``ActorUnavailableError``, which the ingress retries like any
replica death."""

LOST = (
    "the server's ingress replica stopped while handling this request; it is being "
    "replaced: retry shortly"
)


class ReplicaLostMiddleware:
    """A 503 (error shape, ``Retry-After: 1``) for an HTTP request that ended without any
    response having been started."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except asyncio.CancelledError:
            raise
        except Exception:
            if started:
                raise
        if not started:
            await _send_503(send)


async def _send_503(send: Send) -> None:
    body = json.dumps(
        {"detail": [{"loc": [], "msg": LOST, "type": "service_unavailable"}]}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", b"1"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def middlewares() -> list[Middleware]:
    """The proxy middlewares of llmrec (the callback Ray Serve's proxy calls)."""
    return [Middleware(ReplicaLostMiddleware)]


__all__ = [
    "GRPC_ENV",
    "PROXY_CALLBACK",
    "PROXY_CALLBACK_ENV",
    "ReplicaLostMiddleware",
    "middlewares",
]
