"""The LLM scorer (base model + adapter + pooling) and its losses."""

from llmrec.modeling.losses import in_batch_softmax
from llmrec.modeling.scorer import LLMScorer, build_scorer, resolve_base

__all__ = ["LLMScorer", "build_scorer", "in_batch_softmax", "resolve_base"]
