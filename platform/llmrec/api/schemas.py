"""Request and response models of the HTTP API (validated at the edge by FastAPI).

The limits here are hard caps that show in ``/docs``; the serving settings may set lower
ones (``max_query_chars``, ``max_history``), checked when the query is built. This module holds
``/recommend``'s models; the other routes' are :mod:`llmrec.api.operations` and the shared
limits and types :mod:`llmrec.api.types`, all importable from here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from llmrec.api.operations import (
    MAX_ITEM_TEXT,
    MAX_NEW_ITEMS,
    MAX_RETIRE,
    CatalogueChange,
    Category,
    ExperimentStatus,
    FeedbackEvent,
    FeedbackRequest,
    FeedbackResponse,
    Health,
    NewItem,
    NewItems,
    Nonblank,
    Ready,
    ReferredItem,
    ReloadResponse,
    RetireItems,
    UserHistory,
    UserList,
    VariantStatus,
    VersionInfo,
    VersionList,
)
from llmrec.api.types import (
    MAX_CAPS,
    MAX_EVENTS,
    MAX_EXCLUDE,
    MAX_HISTORY,
    MAX_K,
    MAX_QUERY_CHARS,
    MODEL_URI,
    NONBLANK,
    Attribute,
    Cap,
    EventKind,
    JsonInt,
    has_text,
)

_STRING = {"type": "string"}
_ITEMS = {"type": "array", "minItems": 1}
# What the validator below checks, in the schema too: a client (or a fuzzer) that follows the
# schema is never refused, and a body the schema calls invalid is refused.
_ONE_OF_THE_THREE: dict[str, Any] = {
    "anyOf": [
        {"required": ["user_id"], "properties": {"user_id": _STRING}},
        {"required": ["history"], "properties": {"history": _ITEMS}},
        {"required": ["query"], "properties": {"query": {**_STRING, "pattern": NONBLANK}}},
    ],
    "not": {
        "required": ["user_id", "history"],
        "properties": {"user_id": _STRING, "history": _ITEMS},
    },
}


class RecommendRequest(BaseModel):
    """Who to recommend for: a known ``user_id``, or a ``history`` of item ids and/or a
    free-text ``query``. With a ``user_id``, a ``query`` refines that user's request.

    Strict types over HTTP (``"k": "5"`` is refused, as the schema says); Python callers
    may pass ``strict=False`` to ``model_validate``."""

    model_config = ConfigDict(extra="forbid", strict=True, json_schema_extra=_ONE_OF_THE_THREE)

    user_id: str | None = Field(
        None, min_length=1, max_length=200, description="A user seen in the logs or feedback."
    )
    history: list[str] | None = Field(
        None, max_length=MAX_HISTORY, description="Item ids the user interacted with, oldest first."
    )
    query: str | None = Field(
        None, max_length=MAX_QUERY_CHARS, description="Free text the user typed."
    )
    session_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="An anonymous visitor's id: keeps them in one experiment variant while "
        "no user_id is given (see docs/experiments.md).",
    )
    k: JsonInt = Field(10, ge=1, le=MAX_K, description="How many items to return.")
    exclude: list[str] = Field(
        default_factory=list, max_length=MAX_EXCLUDE, description="Item ids never to return."
    )
    categories: list[str] = Field(
        default_factory=list,
        max_length=50,
        description="Return only items in at least one of these categories.",
    )
    diversity: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Diversity re-ranking strength (0 = relevance order); default: the "
        "model version's setting (rank.diversity_strength).",
    )
    calibration: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Calibrated re-ranking (Steck 2018): 0 = off, 1 = the list's category mix "
        "as close as possible to the user's history; default: the version's rank.calibration.",
    )
    tail_share: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="Minimum share of long-tail items (outside the most popular 20%) in the "
        "list; default: the version's rank.tail_share.",
    )
    max_per: dict[Attribute, Cap] | None = Field(
        None,
        max_length=MAX_CAPS,
        description="At most this many items per value of an item attribute, e.g. "
        '{"provider": 2} or {"categories": 3}; {} lifts the version\'s caps; default: the '
        "version's rank.max_per.",
    )
    explain: bool = Field(
        False,
        description="Add to each item an `explanation`: the score split into its parts, the "
        "history items that drove it (with their share), the request's constraints it meets "
        "and one sentence.",
    )
    parse_query: bool = Field(
        True,
        description="Read the `query` into constraints (wanted and unwanted categories, "
        "items referred to, years), returned as `understood` and applied to the ranking; "
        "false: the query is only encoded by the language model.",
    )
    strict: bool = Field(
        False,
        description="Wanted categories, years and attribute values from the query filter "
        "instead of boosting (unwanted ones always filter).",
    )
    measures: bool = Field(
        False,
        description="Add `measures`: the list's intra-list diversity, long-tail share, "
        "categories and miscalibration, as the offline reports compute them.",
    )
    explore: float | None = Field(
        None,
        ge=0.0,
        le=0.5,
        allow_inf_nan=False,
        description="Share of the list reserved for exploration (0.1 of 10 items: one slot; "
        "0.15: one, or two half the time): items of the model's wider candidate pool that "
        "have been shown little, chosen by a Thompson sampler over the impression log's "
        'clicks, marked `"explore": true`; 0 = off; default: the version\'s rank.explore '
        "(off unless set). See docs/serving.md.",
    )
    model_uri: str | None = Field(
        default=None,
        min_length=1,
        max_length=300,
        pattern=MODEL_URI,
        description="Answer with this registered version or alias (models:/NAME/N, "
        "models:/NAME@ALIAS) instead of the version the request would be routed to: for "
        "looking at a version before promoting it (the review page, /ui). Needs the bearer "
        "token when the server has one; such answers are outside any experiment and are not "
        "written to the impression log.",
    )

    @model_validator(mode="after")
    def _something_to_go_on(self) -> RecommendRequest:
        if not self.user_id and not self.history and not has_text(self.query):
            raise ValueError("give a user_id, a non-empty history or a query")
        if self.user_id and self.history:
            raise ValueError("give either user_id or history, not both")
        return self


class ScoreParts(BaseModel):
    """An item's score split into the terms that add up to it."""

    llm: float = Field(description="The model's standardised score times its weight.")
    cf: float = Field(description="The collaborative model's standardised score times its weight.")
    popularity: float = Field(description="Standardised log popularity times its weight.")
    transition: float = Field(
        0.0,
        description="How often the item followed the user's last item in the logs, "
        "standardised, times its weight.",
    )
    text: float = Field(
        0.0,
        description="How well the item's text matches the typed request (the frozen base "
        "language model's cosine), standardised, times its weight; 0 without a typed "
        "request or for versions without this term.",
    )
    query: float = Field(description="The boost of the query's wanted constraints the item meets.")


class BecauseItem(BaseModel):
    """An item of the user's history (or one the query referred to) that drove a
    recommendation."""

    item_id: str
    title: str
    share: float = Field(description="Its share of what the history adds to the score (0-1).")
    source: Literal["history", "query"] = Field(
        description="history: the user's; query: referred to in the query ('like X')."
    )


class Explanation(BaseModel):
    """Why an item is recommended, computed from its score."""

    parts: ScoreParts
    because: list[BecauseItem] = Field(description="Up to 3 items, largest share first.")
    matched: list[str] = Field(description="The query's constraints the item meets.")
    text: str = Field(description="One sentence for people.")


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    title: str
    explanation: Explanation | None = Field(default=None, description='With `"explain": true`.')
    explore: bool | None = Field(
        default=None,
        description="true: an exploration slot (an item shown to learn whether users like it; "
        "see the request's `explore`); absent otherwise.",
    )


class YearRange(BaseModel):
    first: int
    last: int


class Understood(BaseModel):
    """What the query was read as, and applied to the ranking."""

    categories: list[str] = Field(description="Wanted categories (boosted; filtered if strict).")
    without: list[str] = Field(description="Unwanted categories (filtered out).")
    like: list[ReferredItem] = Field(
        description="Items referred to: read as history by the model, never recommended."
    )
    years: YearRange | None = Field(default=None, description="Wanted years, inclusive.")
    without_years: YearRange | None = Field(
        default=None, description="Unwanted years (filtered out)."
    )
    attributes: dict[str, list[str]] = Field(description="Wanted attribute values.")
    without_attributes: dict[str, list[str]] = Field(description="Unwanted attribute values.")
    text: str | None = Field(default=None, description="What the language model read of the query.")
    strict: bool


class ListMeasures(BaseModel):
    """What the offline reports measure of a list, for this one list (a measure that is
    undefined for it is left out)."""

    diversity: float | None = Field(
        default=None,
        description="Mean pairwise 1 - cosine of the items' similarity vectors (the "
        "version's rank.similarity); absent when fewer than two items have one.",
    )
    tail_share: float = Field(
        description="Share of the items outside the most popular 20% (training counts)."
    )
    mean_popularity: float = Field(description="Mean training interactions of the items.")
    categories: int = Field(description="Distinct categories among the items.")
    miscalibration: float | None = Field(
        default=None,
        description="KL divergence of the list's category mix from the history's (Steck "
        "2018; 0 = the same mix); absent without categorised history.",
    )


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    model_version: str = Field(description="The registered version that computed this answer.")
    understood: Understood | None = Field(
        default=None, description="How the query was read (when there is a query and parse_query)."
    )
    request_id: str = Field(
        description="Names this answer: send it back with feedback on its items "
        "(POST /feedback) to attribute them to it."
    )
    variant: str | None = Field(
        None, description="The experiment variant that answered; null when none runs."
    )
    measures: ListMeasures | None = Field(None, description='With `"measures": true`.')


__all__ = [
    "MAX_CAPS",
    "MAX_EVENTS",
    "MAX_EXCLUDE",
    "MAX_HISTORY",
    "MAX_ITEM_TEXT",
    "MAX_K",
    "MAX_NEW_ITEMS",
    "MAX_QUERY_CHARS",
    "MAX_RETIRE",
    "MODEL_URI",
    "NONBLANK",
    "Attribute",
    "BecauseItem",
    "Cap",
    "CatalogueChange",
    "Category",
    "EventKind",
    "ExperimentStatus",
    "Explanation",
    "FeedbackEvent",
    "FeedbackRequest",
    "FeedbackResponse",
    "Health",
    "JsonInt",
    "ListMeasures",
    "NewItem",
    "NewItems",
    "Nonblank",
    "Ready",
    "RecommendRequest",
    "RecommendResponse",
    "RecommendedItem",
    "ReferredItem",
    "ReloadResponse",
    "RetireItems",
    "ScoreParts",
    "Understood",
    "UserHistory",
    "UserList",
    "VariantStatus",
    "VersionInfo",
    "VersionList",
    "YearRange",
    "has_text",
]
