"""Offline evaluation of any method on the EVALUATION.md protocol, into one table.

A method is anything that scores every catalogue item for a batch of users given their
histories (item indices). Each row of the table holds HR@10/20, NDCG@10/20, MRR and the
beyond-accuracy measures of the top-10 lists (coverage, intra-list diversity over category
vectors, novelty, Gini of exposure, miscalibration, long-tail share).
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
from llmrec.ranking.hybrid import HybridScorer, HybridWeights, cf_matrix_from, tune_weights
from llmrec.ranking.rerank import category_distribution
from llmrec.ranking.slate import long_tail
from llmrec.training.metrics import beyond_accuracy, ranking_metrics, target_ranks, top_k_lists

ScoreFn = Callable[[list[list[int]], pd.DataFrame], np.ndarray]
"""(histories as item indices, the split part's rows) -> ``[users, items]`` scores."""


@dataclass(frozen=True)
class EvalPart:
    """One split part resolved against a catalogue.

    ``histories`` (what the user did before the target) are written into the user's text and
    masked in the ranking; models are fitted on ``fit_histories``, the same without the
    protocol's cold items. ``cold_rows``: the users whose target is a cold item.
    """

    name: str
    rows: pd.DataFrame
    histories: list[list[int]]
    targets: np.ndarray
    fit_histories: list[list[int]]
    cold_rows: np.ndarray

    def subset(self, rows: np.ndarray, name: str) -> EvalPart:
        """The part restricted to the users at positions ``rows``."""
        take = [int(r) for r in rows]
        return EvalPart(
            name,
            self.rows.iloc[take].reset_index(drop=True),
            [self.histories[r] for r in take],
            self.targets[take],
            [self.fit_histories[r] for r in take],
            np.zeros(0, dtype=np.int64),
        )

    def counts(self, num_items: int) -> np.ndarray:
        """Interactions per item in the part's histories (what its users were trained on)."""
        flat = [i for h in self.histories for i in h]
        return np.bincount(np.asarray(flat, dtype=np.int64), minlength=num_items)


@dataclass(frozen=True)
class Protocol:
    """A split, its catalogue, and what the beyond-accuracy measures need."""

    split: Split
    catalogue: Catalogue
    cold: frozenset[str] = frozenset()

    @classmethod
    def create(
        cls, split: Split, catalogue: Catalogue, cold: frozenset[str] = frozenset()
    ) -> Protocol:
        """The protocol ranks against the items left after k-core filtering (as the
        reference implementation does), not the whole raw catalogue. ``cold`` items were
        held out of training entirely."""
        return cls(split, catalogue.subset(split.item_ids()), cold)

    def part(self, name: str) -> EvalPart:
        rows = self.split.part(name)
        index = self.catalogue.index
        histories = [[index[i] for i in h] for h in rows["history"]]
        targets = np.array([index[t] for t in rows["target"]], dtype=np.int64)
        cold = {index[i] for i in self.cold if i in index}
        fit = [[i for i in h if i not in cold] for h in histories] if cold else histories
        cold_rows = np.array([i for i, t in enumerate(targets) if t in cold], dtype=np.int64)
        return EvalPart(name, rows, histories, targets, fit, cold_rows)

    def category_vectors(self) -> np.ndarray:
        return self.catalogue.category_vectors()


def list_metrics(
    protocol: Protocol, part: EvalPart, top: np.ndarray, history: np.ndarray | None = None
) -> dict[str, float]:
    """Beyond-accuracy measures of top-k lists ``[users, k]`` of one split part: coverage,
    diversity, novelty, Gini, miscalibration and long-tail share (the tail and popularity
    from the part's histories; ``history``: their category distributions when known)."""
    n = len(protocol.catalogue)
    counts = part.counts(n)
    cats = protocol.category_vectors()
    return beyond_accuracy(
        top,
        n,
        cats,
        counts,
        len(part.histories),
        genres=category_distribution(cats),
        histories=part.histories if history is None else history,
        tail=long_tail(counts),
    )


def evaluate(protocol: Protocol, part: EvalPart, scores: np.ndarray) -> dict[str, float]:
    """Accuracy and beyond-accuracy metrics of one score matrix on one split part."""
    ranks = target_ranks(scores, part.targets, part.histories)
    return ranking_metrics(ranks) | list_metrics(
        protocol, part, top_k_lists(scores, part.histories, 10)
    )


def fit_score(model: ItemScorer, part: EvalPart, num_items: int) -> np.ndarray:
    """Fit on the part's histories (train for val, train + val for test; cold items left
    out) and score every item for them."""
    x = interaction_matrix(part.fit_histories, num_items)
    return model.fit(x).score(interaction_matrix(part.histories, num_items))


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


def baseline_scores(protocol: Protocol, ease_lambda: float) -> dict[str, dict[str, np.ndarray]]:
    """Popularity, ItemKNN and EASE scores on validation and test: label -> part -> scores."""
    n = len(protocol.catalogue)
    out: dict[str, dict[str, np.ndarray]] = {}
    for part_name in ("val", "test"):
        part = protocol.part(part_name)
        for model in (Popularity(), ItemKNN(), EASE(ease_lambda)):
            label = f"ease (lambda={ease_lambda:g})" if model.name == "ease" else model.name
            out.setdefault(label, {})[part_name] = fit_score(model, part, n)
    return out


def score_table(protocol: Protocol, scored: dict[str, dict[str, np.ndarray]]) -> pd.DataFrame:
    """One row per method and part (and ``test_cold`` rows under the cold-start protocol)."""
    rows: list[dict[str, object]] = []
    for part_name in ("val", "test"):
        part = protocol.part(part_name)
        for label, by_part in scored.items():
            scores = by_part[part_name]
            rows.append({"method": label, "split": part_name, **evaluate(protocol, part, scores)})
            if part_name == "test" and len(part.cold_rows):
                rows.append(cold_row(protocol, part, scores, label))
    return pd.DataFrame(rows)


def baseline_table(protocol: Protocol, ease_lambda: float) -> pd.DataFrame:
    """Popularity, ItemKNN and EASE on validation and test."""
    return score_table(protocol, baseline_scores(protocol, ease_lambda))


POPULARITY_WEIGHTS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)


def ease_popularity(
    protocol: Protocol, ease_lambda: float
) -> tuple[HybridWeights, dict[str, np.ndarray]]:
    """The hybrid without a language model: standardised EASE + a popularity prior whose
    weight is tuned on validation NDCG@10 (the :class:`HybridScorer` the platform serves,
    with the LLM weight at 0). Returns the weights and the scores per part."""
    n = len(protocol.catalogue)
    scorers = {}
    for name in ("val", "test"):
        part = protocol.part(name)
        x = interaction_matrix(part.fit_histories, n)
        scorers[name] = HybridScorer(
            np.zeros((n, 1), dtype=np.float32),
            cf_matrix=cf_matrix_from(EASE(ease_lambda).fit(x)),
            popularity=Popularity().fit(x).counts,
        )
    val = protocol.part("val")
    s = scorers["val"]

    def ndcg(scores: np.ndarray) -> float:
        return ranking_metrics(target_ranks(scores, val.targets, val.histories))["ndcg_at_10"]

    cf = s.cf_part(val.histories)
    grid = [HybridWeights(0.0, 1.0, p) for p in POPULARITY_WEIGHTS]
    weights = tune_weights(np.zeros_like(cf), cf, s.popularity_part(), ndcg, grid).weights
    scores = {}
    for name, scorer in scorers.items():
        part = protocol.part(name)
        scores[name] = scorer.with_weights(weights).scores(
            np.zeros((len(part.targets), 1)), part.histories
        )
    return weights, scores


def cold_row(
    protocol: Protocol, part: EvalPart, scores: np.ndarray, method: str
) -> dict[str, object]:
    """A table row over the users whose target is a cold item (split ``test_cold``)."""
    cold = part.subset(part.cold_rows, f"{part.name}_cold")
    return {
        "method": method,
        "split": cold.name,
        **evaluate(protocol, cold, scores[part.cold_rows]),
    }


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table with 4 decimals (no extra dependency)."""
    cols = list(table.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in table.iterrows():
        cells = [f"{v:.4f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def llm_queries(
    scorer: LLMScorer, protocol: Protocol, part: EvalPart, max_history: int
) -> np.ndarray:
    """``[users, dim]`` query-tower embeddings of the part's users written as text."""
    texts = [
        render_user(h, protocol.catalogue.items, q, max_history)
        for h, q in zip(part.rows["history"], part.rows["target_query"], strict=True)
    ]
    return scorer.encode(texts, kind="query").numpy()


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
    return llm_queries(scorer, protocol, part, max_history) @ items.numpy().T


@dataclass(frozen=True)
class HybridFit:
    """Hybrid weights tuned on validation, and a scorer per split part (the CF part and the
    popularity fitted on what that part may see: train for val, train + val for test)."""

    weights: HybridWeights
    cf: str
    ease_lambda: float
    val_ndcg_at_10: float
    scorers: dict[str, HybridScorer]

    def meta(self) -> dict[str, object]:
        return {
            "cf": self.cf,
            "ease_lambda": self.ease_lambda,
            "val_ndcg_at_10": self.val_ndcg_at_10,
            "tuned_on": "validation NDCG@10",
        }


def cf_model(kind: str, ease_lambda: float) -> ItemScorer:
    return EASE(ease_lambda) if kind == "ease" else ItemKNN()


def fit_hybrid(
    protocol: Protocol,
    item_embeddings: np.ndarray,
    val_queries: np.ndarray,
    cf: str = "ease",
    lambdas: Sequence[float] = (10, 50, 100, 200, 500, 1000),
) -> HybridFit:
    """Tune the hybrid's weights on validation NDCG@10 (EASE's lambda first, on its own).

    ``item_embeddings`` are the protocol catalogue's rows, ``val_queries`` the validation
    users' query embeddings (:func:`llm_queries`).
    """
    lam = tune_ease(protocol, lambdas)[0] if cf == "ease" else 0.0
    n = len(protocol.catalogue)
    scorers = {}
    for name in ("val", "test"):
        part = protocol.part(name)
        x = interaction_matrix(part.fit_histories, n)
        model = cf_model(cf, lam).fit(x)
        counts = Popularity().fit(x).counts
        scorers[name] = HybridScorer(
            item_embeddings, cf_matrix=cf_matrix_from(model), popularity=counts
        )
    val = protocol.part("val")
    s = scorers["val"]

    def ndcg(scores: np.ndarray) -> float:
        return ranking_metrics(target_ranks(scores, val.targets, val.histories))["ndcg_at_10"]

    tuned = tune_weights(
        s.llm_part(val_queries), s.cf_part(val.histories), s.popularity_part(), ndcg
    )
    return HybridFit(
        tuned.weights,
        cf,
        lam,
        tuned.value,
        {name: sc.with_weights(tuned.weights) for name, sc in scorers.items()},
    )
