"""Ranking shared by offline evaluation and serving: hybrid scores, re-ranking for
diversity, calibration and exposure (one :class:`Reranker` interface), the measures of a
list beyond accuracy, and the item index (exact or FAISS). Imports config, data, modeling.
"""

from llmrec.ranking.hybrid import HybridScorer
from llmrec.ranking.rerank import SlateSpec, calibrated, dpp, greedy, mmr, rerank
from llmrec.ranking.slate import ItemFacts, Reranker, long_tail
from llmrec.ranking.weights import HybridWeights

__all__ = [
    "HybridScorer",
    "HybridWeights",
    "ItemFacts",
    "Reranker",
    "SlateSpec",
    "calibrated",
    "dpp",
    "greedy",
    "long_tail",
    "mmr",
    "rerank",
]
