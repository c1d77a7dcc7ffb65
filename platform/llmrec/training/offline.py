"""Offline evaluation of any method on the EVALUATION.md protocol, into one table.

A method is anything that scores every catalogue item for a batch of users given their
histories (item indices). Each row of the table holds HR@10/20, NDCG@10/20, MRR and the
beyond-accuracy measures of the top-10 lists (coverage, intra-list diversity over category
vectors, novelty, Gini of exposure).
"""

from __future__ import annotations

import dataclasses
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
from llmrec.ranking.rerank import Method, rerank
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


@dataclass(frozen=True)
class Protocol:
    """A split, its catalogue, and what the beyond-accuracy measures need."""

    split: Split
    catalogue: Catalogue
    cold: frozenset[str] = frozenset()
    diversity_vectors: np.ndarray | None = None
    """``[items, f]`` vectors of the intra-list diversity measure; None: undefined."""
    diversity_basis: str = "undefined"
    """What ``diversity_vectors`` are (printed beside the table)."""

    @classmethod
    def create(
        cls, split: Split, catalogue: Catalogue, cold: frozenset[str] = frozenset()
    ) -> Protocol:
        """The protocol ranks against the items left after k-core filtering (as the
        reference implementation does), not the whole raw catalogue. ``cold`` items were
        held out of training entirely. Diversity is measured on category vectors; a
        catalogue without categories leaves it undefined (see :meth:`with_item_vectors`)."""
        ranked = catalogue.subset(split.item_ids())
        if not ranked.categories:
            return cls(split, ranked, cold, None, "undefined: the items have no categories")
        return cls(split, ranked, cold, ranked.category_vectors(), "category vectors")

    def with_item_vectors(self, vectors: np.ndarray, name: str) -> Protocol:
        """This protocol measuring diversity on ``vectors`` (``[items, f]``, e.g. a model's
        item embeddings) when the catalogue has no categories; unchanged otherwise."""
        if self.diversity_vectors is not None:
            return self
        return dataclasses.replace(
            self, diversity_vectors=vectors, diversity_basis=f"item embeddings of {name}"
        )

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


def evaluate(protocol: Protocol, part: EvalPart, scores: np.ndarray) -> dict[str, float]:
    """Accuracy and beyond-accuracy metrics of one score matrix on one split part."""
    ranks = target_ranks(scores, part.targets, part.histories)
    out = ranking_metrics(ranks)
    top = top_k_lists(scores, part.histories, 10)
    counts = np.bincount([i for h in part.histories for i in h], minlength=len(protocol.catalogue))
    out |= beyond_accuracy(
        top, len(protocol.catalogue), protocol.diversity_vectors, counts, len(part.histories)
    )
    return out


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


def baseline_table(protocol: Protocol, ease_lambda: float) -> pd.DataFrame:
    """Popularity, ItemKNN and EASE on validation and test."""
    rows: list[dict[str, object]] = []
    n = len(protocol.catalogue)
    for part_name in ("val", "test"):
        part = protocol.part(part_name)
        for model in (Popularity(), ItemKNN(), EASE(ease_lambda)):
            label = f"ease (lambda={ease_lambda:g})" if model.name == "ease" else model.name
            scores = fit_score(model, part, n)
            rows.append({"method": label, "split": part_name, **evaluate(protocol, part, scores)})
            if part_name == "test" and len(part.cold_rows):
                rows.append(cold_row(protocol, part, scores, label))
    return pd.DataFrame(rows)


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
        cells = [_cell(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return "n/a" if np.isnan(value) else f"{value:.4f}"
    return str(value)


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


SWEEP_STRENGTHS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def diversity_sweep(
    protocol: Protocol,
    part: EvalPart,
    scores: np.ndarray,
    vectors: np.ndarray,
    methods: Sequence[Method] = ("mmr", "dpp"),
    strengths: Sequence[float] = SWEEP_STRENGTHS,
    depth: int = 50,
    k: int = 10,
) -> pd.DataFrame:
    """Accuracy (@k) and beyond-accuracy of re-ranked top-k lists across the knob.

    Each user's top ``depth`` candidates (history masked) are re-ranked with ``vectors``
    (``[items, f]``) as item similarity; a target outside the re-ranked list is a miss.
    """
    cand = top_k_lists(scores, part.histories, depth)
    counts = np.bincount([i for h in part.histories for i in h], minlength=len(protocol.catalogue))
    cats = protocol.diversity_vectors
    rows = []
    for method in methods:
        for strength in strengths:
            top = np.stack(
                [
                    c[rerank(method, scores[u, c], vectors[c], k, strength)]
                    for u, c in enumerate(cand)
                ]
            )
            hit = top == part.targets[:, None]
            ranks = np.where(hit.any(1), hit.argmax(1), k)
            metrics = ranking_metrics(ranks, ks=(k,))
            rows.append(
                {
                    "method": method,
                    "strength": float(strength),
                    f"hr_at_{k}": metrics[f"hr_at_{k}"],
                    f"ndcg_at_{k}": metrics[f"ndcg_at_{k}"],
                    **beyond_accuracy(top, len(protocol.catalogue), cats, counts, len(top)),
                }
            )
    return pd.DataFrame(rows)


def choose_diversity(sweep: pd.DataFrame, max_loss: float = 0.05, k: int = 10) -> pd.Series:
    """The row with the highest intra-list diversity whose NDCG@k is within ``max_loss``
    (relative) of the un-re-ranked lists (strength 0)."""
    base = sweep.loc[sweep["strength"] == 0.0, f"ndcg_at_{k}"].max()
    ok = sweep[sweep[f"ndcg_at_{k}"] >= (1.0 - max_loss) * base]
    return ok.sort_values(["diversity", "strength"], ascending=[False, True]).iloc[0]
