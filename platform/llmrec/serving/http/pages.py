"""The review page's files (``GET /ui``), shipped in the package: plain HTML, CSS and one
script, no build step, nothing fetched from elsewhere (the content security policy says
so to the browser too). The page calls the public API; docs/review.md shows it."""

from __future__ import annotations

from importlib import resources

from fastapi.responses import Response

from llmrec.api.errors import ApiError

TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
}
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


CHROMIUM = "/usr/bin/chromium"
"""Where Debian's chromium package puts the browser (``make setup`` installs it as root)."""
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
)
"""Headless Chromium for the page's browser test and benchmark: no sandbox (root in a
container), and none of the background connections a closed network refuses."""


def files() -> dict[str, str]:
    """The page's files by name (read once per process would do; they are small)."""
    folder = resources.files("llmrec.serving.http") / "ui"
    return {
        f.name: f.read_text(encoding="utf-8")
        for f in folder.iterdir()
        if f.is_file() and any(f.name.endswith(ext) for ext in TYPES)
    }


def page(name: str) -> Response:
    """One of the page's files; 404 (the API's error shape) for any other name."""
    found = files().get(name)
    if found is None:
        raise ApiError(404, f"no page file {name!r}", ("path", "name"))
    kind = TYPES[name[name.rfind(".") :]]
    return Response(found, media_type=kind, headers=HEADERS)


__all__ = ["CHROMIUM", "CHROMIUM_ARGS", "page"]
