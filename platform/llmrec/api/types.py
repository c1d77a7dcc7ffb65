"""The HTTP contract's shared limits and field types (used by :mod:`llmrec.api.schemas` and
:mod:`llmrec.api.operations`)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, StringConstraints

MAX_K = 100
MAX_QUERY_CHARS = 1000
MAX_HISTORY = 200
MAX_EXCLUDE = 1000
MAX_EVENTS = 100

MAX_CAPS = 10
MODEL_URI = r"^models:/[^/@]+(/[0-9]+|@[A-Za-z0-9_-]+)$"
"""A registered version or alias: ``models:/NAME/VERSION`` or ``models:/NAME@ALIAS``."""
Attribute = Annotated[str, StringConstraints(min_length=1, max_length=100)]

EventKind = Literal["view", "click", "like", "purchase", "rating", "dislike", "skip"]


def integral(value: Any) -> Any:
    """JSON Schema counts 6.0 as an integer; so do we (but not "6" nor true)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(integral)]
"""An integer as JSON Schema defines it, checked strictly otherwise."""

Cap = Annotated[int, Field(ge=1, le=MAX_K), BeforeValidator(integral)]
"""A per-value cap of ``max_per`` (``2`` or ``2.0``, as JSON Schema counts integers; the
bounds before the validator, so that the schema says ``minimum``/``maximum``)."""

NONBLANK = r"[^ \t\n\r\f\v]"
"""A query counts when it holds a character other than ASCII white space; the same regular
expression in the OpenAPI schema and in the check, so that both agree on every input."""


def has_text(query: str | None) -> bool:
    """Whether ``query`` holds something to encode (see :data:`NONBLANK`)."""
    return query is not None and re.search(NONBLANK, query) is not None


__all__ = [
    "MAX_CAPS",
    "MAX_EVENTS",
    "MAX_EXCLUDE",
    "MAX_HISTORY",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "MODEL_URI",
    "NONBLANK",
    "Attribute",
    "Cap",
    "EventKind",
    "JsonInt",
    "has_text",
    "integral",
]
