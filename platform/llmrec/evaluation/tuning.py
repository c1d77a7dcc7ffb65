"""What is tuned on validation NDCG@10: EASE's lambda, each CF option's hyper-parameters and
the hybrid's weights.

Each tuning fits on what the validation part may see (train, cold items left out), scores
the protocol's scored users (:meth:`llmrec.evaluation.offline.Protocol.scored`), and keeps
the best setting; the hybrid's weights are tuned once for every user and, when enough
validation users typed a request, once for those users (:func:`fit_hybrid`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from llmrec.config import RankConfig
from llmrec.evaluation.metrics import ranking_metrics, target_ranks
from llmrec.evaluation.offline import EvalPart, Protocol, evaluate
from llmrec.modeling.baselines import EASE, Popularity, interaction_matrix
from llmrec.modeling.cf import CFModel, CFParams, choose_cf, fit_cf
from llmrec.modeling.transitions import Transitions
from llmrec.ranking.hybrid import HybridScorer
from llmrec.ranking.weights import HybridWeights, tune_weights, weight_grid

EASE_LAMBDAS = (10, 50, 100, 200, 500, 1000)
"""The EASE lambdas tried on validation."""


def tune_ease(
    protocol: Protocol, lambdas: Sequence[float] = EASE_LAMBDAS
) -> tuple[float, dict[float, float]]:
    """The EASE lambda with the best validation NDCG@10 (of the scored users: all, or the
    protocol's sample; fitted on every user), and every lambda's value."""
    full = protocol.part("val")
    val = protocol.scored(full)
    n = len(protocol.catalogue)
    x = interaction_matrix(full.fit_histories, n)
    rows = interaction_matrix(val.histories, n)
    tried = {
        lam: ranking_metrics(
            target_ranks(EASE(lam).fit(x).score(rows), val.targets, val.histories)
        )["ndcg_at_10"]
        for lam in lambdas
    }
    return max(tried, key=lambda lam: tried[lam]), tried


POPULARITY_WEIGHTS = (0.0, 0.05, 0.1, 0.25, 0.5, 1.0)


def ease_popularity(
    protocol: Protocol, cf: float | Mapping[str, CFModel]
) -> tuple[HybridWeights, dict[str, np.ndarray]]:
    """The hybrid without a language model: the standardised CF model + a popularity prior
    whose weight is tuned on validation NDCG@10 (the :class:`HybridScorer` the platform
    serves, with the LLM weight at 0). ``cf``: per part, the CF model fitted on what the
    part may see (e.g. ``references.fit_cf_models``), or a lambda of dense EASE fitted here.
    Returns the weights and the scores per part."""
    n = len(protocol.catalogue)
    scorers = {}
    for name in ("val", "test"):
        part = protocol.part(name)
        x = interaction_matrix(part.fit_histories, n)
        model = EASE(cf).fit(x).weights if isinstance(cf, int | float) else cf[name]
        scorers[name] = HybridScorer(
            np.zeros((n, 1), dtype=np.float32),
            cf=model,
            popularity=Popularity().fit(x).counts,
        )
    val = protocol.scored(protocol.part("val"))
    s = scorers["val"]

    def ndcg(scores: np.ndarray) -> float:
        return ranking_metrics(target_ranks(scores, val.targets, val.histories))["ndcg_at_10"]

    part_scores = s.cf_part(val.histories)
    grid = [HybridWeights(0.0, 1.0, p) for p in POPULARITY_WEIGHTS]
    weights = tune_weights(
        np.zeros_like(part_scores), part_scores, s.popularity_part(), ndcg, grid
    ).weights
    scores = {}
    for name, scorer in scorers.items():
        part = protocol.scored(protocol.part(name))
        scores[name] = scorer.with_weights(weights).scores(
            np.zeros((len(part.targets), 1)), part.histories
        )
    return weights, scores


ALS_GRID = ((1.0, 2.0), (1.0, 5.0), (1.0, 10.0), (10.0, 2.0), (10.0, 5.0), (10.0, 10.0))
"""(regularisation, confidence alpha) pairs of ALS tried on validation."""


def cf_candidates(kind: str, rank: RankConfig, lambdas: Sequence[float]) -> list[CFParams]:
    """The hyper-parameters of ``kind`` tried on validation."""
    if kind in ("ease", "sparse"):
        return [CFParams(ease_lambda=lam, neighbours=rank.cf_neighbours) for lam in lambdas]
    if kind == "als":
        return [CFParams(factors=rank.cf_factors, regularization=r, alpha=a) for r, a in ALS_GRID]
    return [CFParams(neighbours=rank.cf_neighbours)]


def cf_label(kind: str, p: CFParams) -> str:
    """How a fitted CF option is named in tables."""
    return {
        "ease": f"ease (lambda={p.ease_lambda:g})",
        "sparse": f"sparse ease (k={p.neighbours}, lambda={p.ease_lambda:g})",
        "itemknn": f"itemknn (k={p.neighbours})",
        "als": f"als (f={p.factors}, reg={p.regularization:g}, alpha={p.alpha:g})",
    }[kind]


def tune_cf(
    protocol: Protocol, kind: str, rank: RankConfig, lambdas: Sequence[float]
) -> tuple[CFParams, dict[str, float]]:
    """The ``kind`` hyper-parameters with the best validation NDCG@10 of the CF model alone
    (and every setting's value, by label)."""
    full = protocol.part("val")
    val = protocol.scored(full)
    n = len(protocol.catalogue)
    x = interaction_matrix(full.fit_histories, n)
    tried: dict[str, tuple[CFParams, float]] = {}
    for p in cf_candidates(kind, rank, lambdas):
        model = fit_cf(kind, x, p)
        ranks = target_ranks(model.part(val.histories), val.targets, val.histories)
        tried[cf_label(kind, p)] = (p, ranking_metrics(ranks)["ndcg_at_10"])
    best = max(tried.values(), key=lambda t: t[1])[0]
    return best, {label: v for label, (_, v) in tried.items()}


def cf_table(
    protocol: Protocol, kinds: Sequence[str], rank: RankConfig, lambdas: Sequence[float]
) -> pd.DataFrame:
    """Each CF option alone, tuned on validation, on validation and test."""
    rows: list[dict[str, object]] = []
    n = len(protocol.catalogue)
    for kind in kinds:
        p, _ = tune_cf(protocol, kind, rank, lambdas)
        for name in ("val", "test"):
            full = protocol.part(name)
            part = protocol.scored(full)
            model = fit_cf(kind, interaction_matrix(full.fit_histories, n), p)
            scores = model.part(part.histories)
            label = f"cf {cf_label(kind, p)}"
            rows.append({"method": label, "split": name, **evaluate(protocol, part, scores)})
    return pd.DataFrame(rows)


@dataclass(frozen=True)
class HybridFit:
    """Hybrid weights tuned on validation, and a scorer per split part (the CF part and the
    popularity fitted on what that part may see: train for val, train + val for test)."""

    weights: HybridWeights
    cf: str
    cf_params: CFParams
    val_ndcg_at_10: float
    scorers: dict[str, HybridScorer]
    request_weights: HybridWeights | None = None
    """The weights for users who typed a request (tuned on the validation users whose target
    came with one, when there are enough; see :func:`fit_hybrid`)."""

    @property
    def ease_lambda(self) -> float:
        return self.cf_params.ease_lambda if self.cf in ("ease", "sparse") else 0.0

    def refit(self, x: sp.csr_matrix) -> CFModel:
        """The same CF option and hyper-parameters fitted on other interactions (serving)."""
        return fit_cf(self.cf, x, self.cf_params)

    def meta(self) -> dict[str, object]:
        return {
            "cf": self.cf,
            "cf_label": cf_label(self.cf, self.cf_params),
            "ease_lambda": self.ease_lambda,
            "val_ndcg_at_10": self.val_ndcg_at_10,
            "tuned_on": "validation NDCG@10",
            "request_weights_tuned_on": (
                "validation users with a request" if self.request_weights else "none (default)"
            ),
        }


def fit_hybrid(
    protocol: Protocol,
    item_embeddings: np.ndarray,
    val_queries: np.ndarray,
    cf: str = "auto",
    lambdas: Sequence[float] = (10, 50, 100, 200, 500, 1000),
    rank: RankConfig | None = None,
) -> HybridFit:
    """Tune the hybrid's weights on validation NDCG@10 (the CF option's own
    hyper-parameters first, on its own).

    ``cf`` is a ``rank.cf`` value (``auto`` resolves by catalogue size with ``rank``'s
    limits); ``item_embeddings`` are the protocol catalogue's rows, ``val_queries`` the
    validation users' vectors (:func:`user_vectors`).
    """
    rank = rank or RankConfig(cf=cf)  # type: ignore[arg-type]
    n = len(protocol.catalogue)
    kind = choose_cf(cf, n, rank.ease_max_items, rank.sparse_max_items)
    params = tune_cf(protocol, kind, rank, lambdas)[0]
    scorers = {}
    for name in ("val", "test"):
        part = protocol.part(name)
        x = interaction_matrix(part.fit_histories, n)
        scorers[name] = HybridScorer(
            item_embeddings,
            cf=fit_cf(kind, x, params),
            popularity=Popularity().fit(x).counts,
            transitions=Transitions.fit(part.fit_histories, n) if rank.transitions else None,
        )
    val = protocol.scored(protocol.part("val"))
    s = scorers["val"]

    def ndcg(scores: np.ndarray) -> float:
        return ranking_metrics(target_ranks(scores, val.targets, val.histories))["ndcg_at_10"]

    llm, cf_scores, pop = s.llm_part(val_queries), s.cf_part(val.histories), s.popularity_part()
    chain = s.transition_part(val.histories) if rank.transitions else None
    tuned = tune_weights(llm, cf_scores, pop, ndcg, transition=chain)
    request = None
    asked = np.flatnonzero(requests_of(val))
    if len(asked) >= MIN_REQUEST_USERS:  # enough validation users who typed a request
        sub = val.subset(asked, val.name)

        def ndcg_asked(scores: np.ndarray) -> float:
            ranks = target_ranks(scores, sub.targets, sub.histories)
            return ranking_metrics(ranks)["ndcg_at_10"]

        grid = [w for w in weight_grid() if w.llm > 0]  # the request must count
        request = tune_weights(
            llm[asked],
            cf_scores[asked],
            pop,
            ndcg_asked,
            grid,
            None if chain is None else chain[asked],
        ).weights
        if request.llm == 0:  # the chain alone won: the request must still count
            request = dataclasses.replace(request, llm=1.0)
    return HybridFit(
        tuned.weights,
        kind,
        params,
        tuned.value,
        {name: sc.with_weights(tuned.weights, request) for name, sc in scorers.items()},
        request,
    )


MIN_REQUEST_USERS = 30
"""Validation users with a typed request needed to tune the hybrid's weights for requests."""


def requests_of(part: EvalPart) -> list[bool]:
    """Per user of ``part``: whether a request came with the target."""
    return [isinstance(q, str) and bool(q.strip()) for q in part.rows["target_query"]]
