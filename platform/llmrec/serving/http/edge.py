"""The HTTP edge as plain ASGI/FastAPI pieces: body limit, media type, request counting by
route template, the bearer-token check, and the OpenAPI document that says which routes
need the token.

Their per-process state (the limit, the counter, whether a token is set) lives in
:data:`llmrec.serving.settings.EDGE`, set by the ingress replica: Ray Serve ships the
deployment module by value, so a global of that module would be a copy, while this module
and ``settings`` are imported by reference.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from llmrec.api.errors import ApiError, error_response
from llmrec.serving import settings as serving_settings

UNMATCHED = "unmatched"
"""The ``route`` tag of requests that match no route (their raw path is not a label)."""

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


def sha256(text: str) -> str:
    """Hex SHA-256 of ``text`` (tokens are compared, and shipped, as digests)."""
    return hashlib.sha256(text.encode()).hexdigest()


def route_template(scope: Scope) -> str:
    """The route a request matched, as its template (``/users/{user_id}/history``), never the
    raw path: metric tags must be ASCII and few (one per route, not one per user)."""
    route = scope.get("route")
    if route is None:  # not routed yet (the middleware answered first): match it here
        app = scope.get("app")
        for candidate in getattr(app, "routes", ()):
            match, _ = candidate.matches(scope)
            if match is Match.FULL:
                route = candidate
                break
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path.isascii() else UNMATCHED


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class EdgeMiddleware:
    """Refuses bodies over ``EDGE["max_body_bytes"]`` (``max_admin_body_bytes`` on the
    ``/admin/`` routes) (413) and bodies that are not JSON
    (415), and counts every answer in ``EDGE["requests"]`` by route template and status.

    A body without a ``Content-Length`` (chunked) is read here up to the limit and replayed
    to the application, so the limit holds for it too.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: list[int] = [500]

        async def send_counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            refusal, receive = await self._check(scope, receive)
            if refusal is not None:
                await refusal(scope, receive, send_counted)
            else:
                await self.app(scope, receive, send_counted)
        finally:
            counter = serving_settings.EDGE.get("requests")
            if counter is not None:
                counter.inc(tags={"route": route_template(scope), "status": str(status[0])})

    async def _check(self, scope: Scope, receive: Receive) -> tuple[Any, Receive]:
        """(an answer refusing the request, or None; the receive channel to use)."""
        admin = str(scope.get("path", "")).startswith("/admin/")
        limit = int(serving_settings.EDGE["max_admin_body_bytes" if admin else "max_body_bytes"])
        length = _header(scope, b"content-length")
        if length is not None and length.strip().isdigit():
            if int(length) > limit:
                msg = f"request body is {int(length)} bytes; the limit is {limit}"
                return error_response(413, msg, ("body",)), receive
            has_body = int(length) > 0
        else:
            has_body = _header(scope, b"transfer-encoding") is not None
        if scope["method"] in _BODY_METHODS and has_body:
            ctype = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
            if ctype != "application/json" and not ctype.endswith("+json"):
                msg = f"send JSON with Content-Type: application/json (got {ctype or 'none'!r})"
                return error_response(415, msg, ("header", "content-type")), receive
        if length is None and has_body:
            return await self._buffer(receive, limit)
        return None, receive

    @staticmethod
    async def _buffer(receive: Receive, limit: int) -> tuple[Any, Receive]:
        """Read a body of unknown length (at most ``limit`` + 1 bytes) and replay it."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > limit:
                msg = f"request body is over {limit} bytes; the limit is {limit}"
                return error_response(413, msg, ("body",)), receive
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        return None, replay


class BearerAuth:
    """Checks ``Authorization: Bearer <token>`` against a SHA-256 digest, in constant time.

    Args:
        token_sha256: the digest of the token; None: every request passes (no token set).
    """

    def __init__(self, token_sha256: str | None) -> None:
        self.token_sha256 = token_sha256

    @property
    def enabled(self) -> bool:
        return self.token_sha256 is not None

    def check(self, authorization: str | None) -> None:
        """Raises :class:`ApiError` 401 unless the header carries the token."""
        if self.token_sha256 is None:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            sha256(given.strip()), self.token_sha256
        ):
            raise ApiError(
                401,
                "missing or wrong bearer token (Authorization: Bearer <LLMREC_API_TOKEN>)",
                ("header", "authorization"),
                headers={"WWW-Authenticate": "Bearer"},
            )


def openapi_document(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """``app.openapi``: the schema, with the bearer-token security scheme on the routes that
    declare it only while a token is set (``EDGE["secured"]``); without a token those routes
    are open and the document says so."""
    cache: dict[bool, dict[str, Any]] = {}

    def document() -> dict[str, Any]:
        secured = bool(serving_settings.EDGE.get("secured"))
        if secured not in cache:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            if not secured:
                spec.get("components", {}).pop("securitySchemes", None)
                for operations in spec.get("paths", {}).values():
                    for operation in operations.values():
                        operation.pop("security", None)
                        operation.get("responses", {}).pop("401", None)
            cache[secured] = spec
        return cache[secured]

    return document


__all__ = ["UNMATCHED", "BearerAuth", "EdgeMiddleware", "openapi_document", "route_template"]
