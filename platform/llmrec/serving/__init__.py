"""Serving as plain classes: query building, encoding, ranking, and the HTTP schemas."""

from llmrec.serving.recommender import (
    CandidateRanker,
    Query,
    QueryBuilder,
    QueryEncoder,
    RequestError,
)
from llmrec.serving.schemas import RecommendedItem, RecommendRequest, RecommendResponse

__all__ = [
    "CandidateRanker",
    "Query",
    "QueryBuilder",
    "QueryEncoder",
    "RecommendRequest",
    "RecommendResponse",
    "RecommendedItem",
    "RequestError",
]
