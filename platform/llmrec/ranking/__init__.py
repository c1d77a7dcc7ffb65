"""Ranking shared by offline evaluation and serving: hybrid scores, diversity re-ranking and
the item index (exact or FAISS)."""

from llmrec.ranking.hybrid import HybridScorer, HybridWeights
from llmrec.ranking.rerank import dpp, mmr, rerank

__all__ = ["HybridScorer", "HybridWeights", "dpp", "mmr", "rerank"]
