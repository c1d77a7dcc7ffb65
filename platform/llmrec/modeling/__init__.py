"""The models: the LLM scorer (base model + adapter + pooling), towers, sequential encoder,
collaborative filtering and baselines, losses. Imports config and data only.
"""

from llmrec.modeling.losses import in_batch_softmax
from llmrec.modeling.scorer import LLMScorer, build_scorer, resolve_base

__all__ = ["LLMScorer", "build_scorer", "in_batch_softmax", "resolve_base"]
