"""Serving as plain classes: query building, encoding, ranking, and the HTTP schemas."""

from llmrec.serving.grouping import Coalescer
from llmrec.serving.recommender import (
    CandidateRanker,
    Query,
    QueryBuilder,
    QueryEncoder,
    RequestError,
)
from llmrec.serving.schemas import RecommendedItem, RecommendRequest, RecommendResponse
from llmrec.serving.settings import ServeSettings, SettingsError

__all__ = [
    "CandidateRanker",
    "Coalescer",
    "Query",
    "QueryBuilder",
    "QueryEncoder",
    "RecommendRequest",
    "RecommendResponse",
    "RecommendedItem",
    "RequestError",
    "ServeSettings",
    "SettingsError",
]
