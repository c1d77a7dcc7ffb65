"""Serving as plain classes: the recommender (query building, encoding, ranking), versions,
caches, histories and the live catalogue; ``serving.http`` is its HTTP edge. Imports config,
data, api, modeling, ranking, registry, understanding; never experiments or evaluation.
"""

from llmrec.api.schemas import RecommendedItem, RecommendRequest, RecommendResponse
from llmrec.serving.grouping import Coalescer
from llmrec.serving.recommender import CandidateRanker, QueryBuilder, QueryEncoder
from llmrec.serving.settings import ServeSettings, SettingsError
from llmrec.understanding.query import Query, RequestError

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
