"""Request and response models of the HTTP API (validated at the edge by FastAPI)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator

MAX_K = 100
MAX_QUERY_CHARS = 1000
MAX_HISTORY = 200


class RecommendRequest(BaseModel):
    """Who to recommend for: a known ``user_id``, or a ``history`` of item ids and/or a
    free-text ``query``. With a ``user_id``, a ``query`` refines that user's request."""

    model_config = ConfigDict(extra="forbid")

    user_id: str | None = Field(
        None, min_length=1, max_length=200, description="A user seen in the training logs."
    )
    history: list[str] | None = Field(
        None, max_length=MAX_HISTORY, description="Item ids the user interacted with, oldest first."
    )
    query: str | None = Field(
        None, max_length=MAX_QUERY_CHARS, description="Free text the user typed."
    )
    k: int = Field(10, ge=1, le=MAX_K, description="How many items to return.")

    @model_validator(mode="after")
    def _something_to_go_on(self) -> RecommendRequest:
        if not self.user_id and not self.history and not (self.query and self.query.strip()):
            raise ValueError("give a user_id, a non-empty history or a query")
        if self.user_id and self.history:
            raise ValueError("give either user_id or history, not both")
        return self


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    title: str


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    model_version: str = Field(description="The registered version that computed this answer.")


class Health(BaseModel):
    status: str
    model_version: str | None = None
