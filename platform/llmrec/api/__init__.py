"""The HTTP contract: request and response models, the error shape, an experiment's spec.

Imports nothing from llmrec (plain pydantic); every layer above may import it.
"""

from llmrec.api.errors import ErrorBody
from llmrec.api.experiment import ExperimentSpec, Variant
from llmrec.api.schemas import RecommendedItem, RecommendRequest, RecommendResponse

__all__ = [
    "ErrorBody",
    "ExperimentSpec",
    "RecommendRequest",
    "RecommendResponse",
    "RecommendedItem",
    "Variant",
]
