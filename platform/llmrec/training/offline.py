"""Offline evaluation of any method on the EVALUATION.md protocol, into one table.

A method is anything that scores every catalogue item for a batch of users given their
histories (item indices). Each row of the table holds HR@10/20, NDCG@10/20, MRR and the
beyond-accuracy measures of the top-10 lists (coverage, intra-list diversity over category
vectors, novelty, Gini of exposure).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from llmrec.data.catalogue import Catalogue
from llmrec.data.splits import Split
from llmrec.data.text import render_user
from llmrec.modeling.baselines import EASE, ItemKNN, ItemScorer, Popularity, interaction_matrix
from llmrec.modeling.scorer import LLMScorer
from llmrec.training.metrics import beyond_accuracy, ranking_metrics, target_ranks, top_k_lists

ScoreFn = Callable[[list[list[int]], pd.DataFrame], np.ndarray]
"""(histories as item indices, the split part's rows) -> ``[users, items]`` scores."""


@dataclass(frozen=True)
class EvalPart:
    """One split part resolved against a catalogue."""

    name: str
    rows: pd.DataFrame
    histories: list[list[int]]
    targets: np.ndarray


@dataclass(frozen=True)
class Protocol:
    """A split, its catalogue, and what the beyond-accuracy measures need."""

    split: Split
    catalogue: Catalogue

    @classmethod
    def create(cls, split: Split, catalogue: Catalogue) -> Protocol:
        """The protocol ranks against the items left after k-core filtering (as the
        reference implementation does), not the whole raw catalogue."""
        return cls(split, catalogue.subset(split.item_ids()))

    def part(self, name: str) -> EvalPart:
        rows = self.split.part(name)
        index = self.catalogue.index
        histories = [[index[i] for i in h] for h in rows["history"]]
        targets = np.array([index[t] for t in rows["target"]], dtype=np.int64)
        return EvalPart(name, rows, histories, targets)

    def category_vectors(self) -> np.ndarray:
        cats = sorted({c for it in self.catalogue.items.values() for c in it.categories})
        pos = {c: j for j, c in enumerate(cats)}
        out = np.zeros((len(self.catalogue), max(len(cats), 1)), dtype=np.float32)
        for i, item_id in enumerate(self.catalogue.ids):
            for c in self.catalogue.items[item_id].categories:
                out[i, pos[c]] = 1.0
        return out


def evaluate(protocol: Protocol, part: EvalPart, scores: np.ndarray) -> dict[str, float]:
    """Accuracy and beyond-accuracy metrics of one score matrix on one split part."""
    ranks = target_ranks(scores, part.targets, part.histories)
    out = ranking_metrics(ranks)
    top = top_k_lists(scores, part.histories, 10)
    counts = np.bincount([i for h in part.histories for i in h], minlength=len(protocol.catalogue))
    out |= beyond_accuracy(
        top, len(protocol.catalogue), protocol.category_vectors(), counts, len(part.histories)
    )
    return out


def fit_score(model: ItemScorer, part: EvalPart, num_items: int) -> np.ndarray:
    """Fit on the part's histories (train for val, train + val for test) and score them."""
    x = interaction_matrix(part.histories, num_items)
    return model.fit(x).score(x)


def tune_ease(
    protocol: Protocol, lambdas: Sequence[float] = (10, 50, 100, 200, 500, 1000)
) -> tuple[float, dict[float, float]]:
    """The EASE lambda with the best validation NDCG@10, and every lambda's value."""
    val = protocol.part("val")
    n = len(protocol.catalogue)
    tried = {
        lam: ranking_metrics(
            target_ranks(fit_score(EASE(lam), val, n), val.targets, val.histories)
        )["ndcg_at_10"]
        for lam in lambdas
    }
    return max(tried, key=lambda lam: tried[lam]), tried


def baseline_table(protocol: Protocol, ease_lambda: float) -> pd.DataFrame:
    """Popularity, ItemKNN and EASE on validation and test."""
    rows = []
    n = len(protocol.catalogue)
    for part_name in ("val", "test"):
        part = protocol.part(part_name)
        for model in (Popularity(), ItemKNN(), EASE(ease_lambda)):
            label = f"ease (lambda={ease_lambda:g})" if model.name == "ease" else model.name
            metrics = evaluate(protocol, part, fit_score(model, part, n))
            rows.append({"method": label, "split": part_name, **metrics})
    return pd.DataFrame(rows)


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table with 4 decimals (no extra dependency)."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def llm_scores(
    scorer: LLMScorer,
    protocol: Protocol,
    part: EvalPart,
    max_history: int,
    item_embeddings: torch.Tensor | None = None,
) -> np.ndarray:
    """``[users, items]`` scores of a trained scorer; the catalogue is embedded with that
    scorer unless its embeddings are given."""
    items = item_embeddings
    if items is None:
        items = scorer.encode(protocol.catalogue.texts(), kind="item")
    texts = [
        render_user(h, protocol.catalogue.items, q, max_history)
        for h, q in zip(part.rows["history"], part.rows["target_query"], strict=True)
    ]
    return (scorer.encode(texts, kind="query") @ items.T).numpy()
