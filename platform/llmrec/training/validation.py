"""Full-ranking evaluation of a scorer on a validation or test split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from llmrec.data.catalogue import Catalogue
from llmrec.data.splits import Split
from llmrec.data.text import render_user
from llmrec.evaluation.metrics import ranking_metrics, target_ranks
from llmrec.modeling.scorer import LLMScorer


@dataclass(frozen=True)
class EvalSet:
    """Users written as text, their target item and the items to mask, over one catalogue."""

    query_texts: list[str]
    targets: np.ndarray
    exclude: list[list[int]]
    item_texts: list[str]

    def __len__(self) -> int:
        return len(self.query_texts)

    def head(self, n: int) -> EvalSet:
        """The first ``n`` users (all when n <= 0), to bound per-epoch evaluation cost."""
        if n <= 0 or n >= len(self):
            return self
        return EvalSet(self.query_texts[:n], self.targets[:n], self.exclude[:n], self.item_texts)


def build_eval_set(split: Split, part: str, catalogue: Catalogue, max_history: int) -> EvalSet:
    """The ``val`` or ``test`` part of ``split`` as an :class:`EvalSet`."""
    rows = split.part(part)
    index = catalogue.index
    texts = [
        render_user(h, catalogue.items, q, max_history)
        for h, q in zip(rows["history"], rows["target_query"], strict=True)
    ]
    return EvalSet(
        query_texts=texts,
        targets=np.array([index[t] for t in rows["target"]], dtype=np.int64),
        exclude=[[index[i] for i in h if i in index] for h in rows["history"]],
        item_texts=catalogue.texts(),
    )


def score_matrix(query_emb: torch.Tensor, item_emb: torch.Tensor) -> np.ndarray:
    """``[users, items]`` dot products."""
    return (query_emb @ item_emb.T).numpy()


def evaluate_scorer(
    scorer: LLMScorer, data: EvalSet, item_emb: torch.Tensor | None = None
) -> dict[str, float]:
    """HR@10/20, NDCG@10/20 and MRR of ``scorer`` under full ranking, history masked.

    Args:
        scorer: The model (put in eval mode for the call).
        data: Users, targets, masks and item texts.
        item_emb: Precomputed item embeddings (computed from ``data.item_texts`` if None).
    """
    if item_emb is None:
        item_emb = scorer.encode(data.item_texts, kind="item")
    query_emb = scorer.encode(data.query_texts, kind="query")
    ranks = target_ranks(score_matrix(query_emb, item_emb), data.targets, data.exclude)
    return ranking_metrics(ranks)
