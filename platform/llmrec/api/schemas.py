"""Request and response models of the HTTP API (validated at the edge by FastAPI).

The limits here are hard caps that show in ``/docs``; the serving settings may set lower
ones (``max_query_chars``, ``max_history``), checked when the query is built.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

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


def _integral(value: Any) -> Any:
    """JSON Schema counts 6.0 as an integer; so do we (but not "6" nor true)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_integral)]
"""An integer as JSON Schema defines it, checked strictly otherwise."""

Cap = Annotated[int, Field(ge=1, le=MAX_K), BeforeValidator(_integral)]
"""A per-value cap of ``max_per`` (``2`` or ``2.0``, as JSON Schema counts integers; the
bounds before the validator, so that the schema says ``minimum``/``maximum``)."""

NONBLANK = r"[^ \t\n\r\f\v]"
"""A query counts when it holds a character other than ASCII white space; the same regular
expression in the OpenAPI schema and in the check, so that both agree on every input."""

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


def has_text(query: str | None) -> bool:
    """Whether ``query`` holds something to encode (see :data:`NONBLANK`)."""
    return query is not None and re.search(NONBLANK, query) is not None


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


class ReferredItem(BaseModel):
    item_id: str
    title: str


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


class FeedbackEvent(BaseModel):
    """What a user did with an item."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user_id: str = Field(min_length=1, max_length=200)
    item_id: str = Field(min_length=1, max_length=200)
    event: EventKind = Field("click", description="dislike and skip mask the item only.")
    value: float = Field(
        1.0, ge=-1e6, le=1e6, allow_inf_nan=False, description="A rating, or a weight."
    )
    query: str | None = Field(None, max_length=MAX_QUERY_CHARS, description="Text typed, if any.")
    timestamp: Annotated[int, Field(ge=0, le=32503680000), BeforeValidator(_integral)] | None = (
        Field(None, description="Unix seconds; default: when received.")
    )
    request_id: str | None = Field(
        None,
        min_length=1,
        max_length=64,
        description="The request_id of the answer that showed the item: the event is then "
        "attributed to it (experiment variant, model version, position).",
    )


class FeedbackRequest(BaseModel):
    """One event, or ``{"events": [...]}`` (up to 100), committed together."""

    model_config = ConfigDict(extra="forbid", strict=True)

    events: list[FeedbackEvent] = Field(min_length=1, max_length=MAX_EVENTS)

    @model_validator(mode="before")
    @classmethod
    def _single(cls, data: Any) -> Any:
        if isinstance(data, dict) and "events" not in data and "user_id" in data:
            return {"events": [data]}
        return data


class FeedbackResponse(BaseModel):
    accepted: int
    logged_to: str = Field(description="The Parquet file the events were appended to.")
    attributed: int = Field(0, description="Events attributed to an answer by request_id.")


class UserHistory(BaseModel):
    user_id: str
    history: list[str] = Field(description="Items that build the user's text, oldest first.")
    items: list[ReferredItem] = Field(
        default_factory=list, description="The same items with their titles, oldest first."
    )
    recent_feedback: list[dict[str, Any]]


class UserList(BaseModel):
    """Known user ids: those starting with a prefix, or a random sample."""

    users: list[str]


class VersionInfo(BaseModel):
    version: str
    aliases: list[str]
    run_id: str
    created: int = Field(description="Registration time, Unix milliseconds.")
    description: str | None = None


class VersionList(BaseModel):
    """The registered versions of a model, newest first."""

    model: str
    follows: str = Field(description="The alias or version the app follows.")
    model_version: str = Field(description="The version the app serves now.")
    versions: list[VersionInfo]


class ReloadResponse(BaseModel):
    changed: bool = Field(description="Whether the served version changed.")
    model_version: str
    follows: str = Field(description="The alias or version the server follows.")


class Health(BaseModel):
    status: str
    model_version: str | None = None


class Ready(BaseModel):
    ready: bool
    model_version: str
    model_uri: str
    index: str
    items: int
    hybrid: str
    users: int
    cached_users: int = Field(0, description="Known users whose query vector is cached.")


MAX_NEW_ITEMS = 100
MAX_RETIRE = 1000
MAX_ITEM_TEXT = 5000
Nonblank = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NONBLANK)]
Category = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NONBLANK)]


class NewItem(BaseModel):
    """An item in the catalogue contract (``docs/data.md``)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    item_id: Nonblank = Field(description="New, or an existing item to update.")
    title: Annotated[str, StringConstraints(min_length=1, max_length=500, pattern=NONBLANK)]
    text: str | None = Field(None, max_length=MAX_ITEM_TEXT, description="A description.")
    categories: list[Category] = Field(default_factory=list, max_length=20)


class NewItems(BaseModel):
    """Items to add or update (re-embedded from the new text), at most 100 a request; an id
    given twice is taken as its last entry."""

    model_config = ConfigDict(extra="forbid", strict=True)

    items: list[NewItem] = Field(min_length=1, max_length=MAX_NEW_ITEMS)

    def unique(self) -> list[NewItem]:
        """The items, each id once (its last entry), in the order first given."""
        last = {i.item_id: i for i in self.items}
        return [last[item_id] for item_id in dict.fromkeys(i.item_id for i in self.items)]


class RetireItems(BaseModel):
    """Items to take out of recommendations (their history stays)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    item_ids: list[Nonblank] = Field(min_length=1, max_length=MAX_RETIRE)


class CatalogueChange(BaseModel):
    added: list[str] = Field(description="Items new to the served catalogue.")
    updated: list[str] = Field(description="Items that existed, re-embedded from the new text.")
    retired: list[str] = Field(description="Items taken out of recommendations now.")
    unchanged: list[str] = Field(description="Items asked to retire that were retired already.")
    model_version: str = Field(description="The version whose item tower embedded the items.")


class VariantStatus(BaseModel):
    """One variant of the running experiment: its split, its version and live counts."""

    name: str
    weight: float
    share: float = Field(description="Share of users (hash buckets) assigned to it.")
    follows: str = Field(description="The alias or version it follows.")
    model_version: str = Field(description="The version answering for it now.")
    requests: int
    users: int = Field(description="Distinct users (or sessions) answered.")
    impressions: int = Field(description="Items shown.")
    events: dict[str, int] = Field(description="Attributed feedback events by kind.")
    value: float = Field(description="Sum of the attributed events' values.")
    ctr: float | None = Field(description="Attributed clicks / items shown.")


class ExperimentStatus(BaseModel):
    """The running experiment (null when none runs) and the app's own version."""

    experiment: str | None
    control: str | None = None
    variants: list[VariantStatus] = Field(default_factory=list)
    model_version: str = Field(description="The app's model_uri version (outside experiments).")
    follows: str
