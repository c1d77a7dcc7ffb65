"""The one error shape of the HTTP API, its handlers and its OpenAPI documentation.

Every 4xx (and the 503s) answers::

    {"detail": [{"loc": ["body", "user_id"], "msg": "unknown user_id 'x'", "type": "not_found"}]}

the shape FastAPI already uses for request validation, so that a client parses one thing: a
list of problems, each with where (``loc``: ``body``/``path``/``header`` then the field; empty
when the whole request is concerned), what (``msg``, for people) and a stable ``type`` (for
programs: pydantic's error types for validation, ``not_found``, ``unauthorized``,
``payload_too_large``, ``unsupported_media_type``, ``service_unavailable``, ...).
:func:`install_error_handlers` makes FastAPI answer every error in it;
:func:`error_responses` documents it per route (``responses=`` of a route decorator).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

ERROR_TYPES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "unprocessable",
    429: "too_many_requests",
    500: "internal_error",
    503: "service_unavailable",
}
"""The ``type`` of an error raised without one, by HTTP status."""

DESCRIPTIONS: dict[int, str] = {
    401: "Missing or wrong bearer token (only when the server runs with LLMREC_API_TOKEN).",
    404: "A user, item or category the served version does not know (or an unknown route).",
    409: "The request contradicts itself (two experiment variants with one name).",
    413: "The body is over the server's `max_body_bytes` (`max_admin_body_bytes` on /admin/).",
    415: "The body is not JSON (`Content-Type: application/json`).",
    422: "The request is not valid: each problem names its field.",
    503: "The model is not loaded, or its replicas are restarting: retry shortly.",
}


class ErrorItem(BaseModel):
    """One problem with a request."""

    loc: list[str | int] = Field(description="Where: body/path/header, then the field.")
    msg: str = Field(description="What is wrong, for people.")
    type: str = Field(description="A stable kind of error, for programs.")


class ErrorBody(BaseModel):
    """The body of every error answer."""

    detail: list[ErrorItem]


class ApiError(Exception):
    """An error answer: ``raise ApiError(404, "unknown user_id 'x'", ("body", "user_id"))``.

    Args:
        status: the HTTP status.
        msg: the message, naming the bad value.
        loc: where the problem is (empty: the request as a whole).
        type: the stable kind; default from :data:`ERROR_TYPES`.
        headers: extra response headers (``WWW-Authenticate`` for a 401, ``Retry-After``).
    """

    def __init__(
        self,
        status: int,
        msg: str,
        loc: Sequence[str | int] = (),
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.items = [error_item(msg, loc, type or ERROR_TYPES.get(status, f"http_{status}"))]
        self.headers = dict(headers or {})


def error_item(msg: str, loc: Sequence[str | int] = (), type: str = "invalid") -> dict[str, Any]:
    """One entry of ``detail``."""
    return {"loc": list(loc), "msg": msg, "type": type}


def error_response(
    status: int,
    msg: str,
    loc: Sequence[str | int] = (),
    type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A JSON answer in the error shape (for code outside FastAPI's handlers: middleware)."""
    item = error_item(msg, loc, type or ERROR_TYPES.get(status, f"http_{status}"))
    return JSONResponse({"detail": [item]}, status_code=status, headers=dict(headers or {}))


def _validation_items(exc: RequestValidationError) -> list[dict[str, Any]]:
    """pydantic's errors without ``input``/``ctx`` (they echo the request back, and may not
    be JSON: bytes, NaN)."""
    return [
        error_item(str(e.get("msg", "invalid")), list(e.get("loc", ())), str(e.get("type", "")))
        for e in exc.errors()
    ]


async def _on_api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse({"detail": exc.items}, status_code=exc.status, headers=exc.headers)


async def _on_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": _validation_items(exc)}, status_code=422)


def _routes(routes: Iterable[Any]) -> Iterator[Any]:
    """``routes`` with FastAPI's included routers (``include_router``, as Ray Serve's
    ``@serve.ingress`` registers a class's routes) expanded into the routes they hold."""
    for route in routes:
        nested = getattr(route, "effective_route_contexts", None)
        if callable(nested):
            yield from _routes(nested())
        else:
            yield route


def _allowed(request: Request) -> list[str]:
    """Every method of every route at the request's path (Starlette's 405 names only the
    first route's, where one path has a route per method)."""
    from starlette.routing import Match

    methods: set[str] = set()
    for route in _routes(request.app.router.routes):
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _on_http(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's and FastAPI's own HTTP errors (404 route, 405 method, 400 body) too."""
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:  # FastAPI could not decode the body (not UTF-8, say)
        msg = f"the body is not valid JSON: {exc.detail}"
        return JSONResponse({"detail": [error_item(msg, ("body",), "json_invalid")]}, 422)
    if isinstance(exc.detail, list):  # already a list of problems
        items = exc.detail
    else:
        kind = ERROR_TYPES.get(exc.status_code, f"http_{exc.status_code}")
        items = [error_item(str(exc.detail), (), kind)]
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and _allowed(request):
        headers["Allow"] = ", ".join(_allowed(request))
    return JSONResponse({"detail": items}, status_code=exc.status_code, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Every error ``app`` answers (its own, FastAPI's validation, Starlette's routing)
    takes the one shape."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status documented with the error shape."""
    return {
        status: {"model": ErrorBody, "description": DESCRIPTIONS.get(status, "Error.")}
        for status in statuses
    }


__all__ = [
    "ApiError",
    "ErrorBody",
    "ErrorItem",
    "error_item",
    "error_response",
    "error_responses",
    "install_error_handlers",
]
