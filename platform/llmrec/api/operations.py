"""Request and response models of the routes other than ``/recommend``: feedback, users,
versions, health, the live catalogue and the running experiment (re-exported by
:mod:`llmrec.api.schemas`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from llmrec.api.types import MAX_EVENTS, MAX_QUERY_CHARS, NONBLANK, EventKind, integral


class ReferredItem(BaseModel):
    item_id: str
    title: str


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
    timestamp: Annotated[int, Field(ge=0, le=32503680000), BeforeValidator(integral)] | None = (
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
