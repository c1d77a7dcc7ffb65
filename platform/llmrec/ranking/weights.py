"""The hybrid's weights: what each standardised part counts for (:class:`HybridWeights`), how
they are tuned on the validation split (:func:`tune_weights` over :func:`weight_grid`), and
how they are written to a version's ``weights.json`` (:func:`weights_json`,
:func:`weights_from_json`). :class:`~llmrec.ranking.hybrid.HybridScorer` adds the parts
under them.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

CF_GRID = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
POPULARITY_GRID = (0.0, 0.1, 0.25, 0.5)
TRANSITION_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 1.0)
"""Weights of the standardised transition term: its nonzero entries are far out in the
tail of a user's distribution (a handful of successors among thousands of items), so small
weights already move them to the top."""
PARTS = ("llm", "cf", "popularity", "transition", "text")


@dataclass(frozen=True)
class HybridWeights:
    """Weights of the standardised parts; ``llm=1`` and the rest 0 is the LLM alone.

    ``text`` weighs the text-match part, which only requests with typed text have (it is 0
    for every other request whatever its weight)."""

    llm: float = 1.0
    cf: float = 0.0
    popularity: float = 0.0
    transition: float = 0.0
    text: float = 0.0

    def describe(self) -> str:
        text = f" + text {self.text:g}" if self.text else ""
        return (
            f"llm {self.llm:g} + cf {self.cf:g} + popularity {self.popularity:g}"
            f" + transition {self.transition:g}{text}"
        )


def weight_grid() -> list[HybridWeights]:
    """The (llm, cf, popularity) weights tried on validation: the LLM with every CF /
    popularity weight, plus the collaborative model alone (so that a useless LLM cannot make
    the hybrid worse). The transition weight is tuned after them (:func:`tune_weights`)."""
    grid = [HybridWeights(1.0, c, p) for c, p in itertools.product(CF_GRID, POPULARITY_GRID)]
    grid += [HybridWeights(0.0, 1.0, p) for p in POPULARITY_GRID]
    return grid


def with_model(weights: HybridWeights) -> HybridWeights:
    """``weights`` with the model's term at 1 or more: a typed request reaches the ranking
    only through the model, so it must count even where the CF model alone won on
    validation."""
    return dataclasses.replace(weights, llm=max(weights.llm, 1.0))


@dataclass(frozen=True)
class Tuned:
    """The weights picked on validation and the metric of every weight setting tried."""

    weights: HybridWeights
    tried: list[tuple[HybridWeights, float]]

    @property
    def value(self) -> float:
        """The metric of the picked weights."""
        return max(v for _, v in self.tried)


def tune_weights(
    llm: np.ndarray,
    cf: np.ndarray,
    popularity: np.ndarray,
    metric: Callable[[np.ndarray], float],
    grid: Sequence[HybridWeights] | None = None,
    transition: np.ndarray | None = None,
) -> Tuned:
    """Pick the weights with the best ``metric(scores)`` on validation.

    The (llm, cf, popularity) settings of ``grid`` are tried first; with a ``transition``
    part, every :data:`TRANSITION_GRID` weight is then tried on top of the best of them,
    beside the chain alone (the transition term with each popularity weight: so that the
    hybrid is never below the Markov chain it could have used), and the (llm, cf,
    popularity) grid is tried once more around the best transition weight.

    Args:
        llm: ``[users, items]`` standardised LLM scores
            (:meth:`~llmrec.ranking.hybrid.HybridScorer.llm_part`).
        cf: ``[users, items]`` standardised CF scores.
        popularity: ``[items]`` standardised popularity.
        metric: maps a score matrix to the value to maximise (e.g. validation NDCG@10).
        grid: (llm, cf, popularity) settings to try (default :func:`weight_grid`).
        transition: ``[users, items]`` standardised transition scores, or None.
    """
    base = list(grid or weight_grid())
    tried: dict[HybridWeights, float] = {}

    def attempt(w: HybridWeights) -> float:
        if w not in tried:
            scores = w.llm * llm + w.cf * cf + w.popularity * popularity[None, :]
            if w.transition and transition is not None:
                scores = scores + w.transition * transition
            tried[w] = metric(scores)
        return tried[w]

    for w in base:
        attempt(w)
    if transition is not None:
        best = max(tried, key=tried.__getitem__)
        for t in TRANSITION_GRID:
            attempt(dataclasses.replace(best, transition=t))
        for p in (0.01, *POPULARITY_GRID):  # 0.01: popularity only breaks the chain's ties
            attempt(HybridWeights(0.0, 0.0, p, 1.0))
        t = max(tried, key=tried.__getitem__).transition
        for w in base:
            attempt(dataclasses.replace(w, transition=t))
    best = max(tried, key=tried.__getitem__)
    return Tuned(best, list(tried.items()))


def weights_json(
    weights: HybridWeights, request_weights: HybridWeights
) -> dict[str, dict[str, float]]:
    """What ``weights.json`` holds of the weights. The text-match weights go under
    ``text_weights`` (when there are any), not in ``weights`` / ``request_weights``: serving
    code from before the term reads those two as they were, and serves a version written
    since without the term rather than failing on a field it does not know."""
    out: dict[str, dict[str, float]] = {}
    for name, w in (("weights", weights), ("request_weights", request_weights)):
        out[name] = {k: v for k, v in asdict(w).items() if k != "text"}
    if weights.text or request_weights.text:
        out["text_weights"] = {"weights": weights.text, "request_weights": request_weights.text}
    return out


def weights_from_json(meta: dict) -> tuple[HybridWeights, HybridWeights | None]:
    """The weights and the request weights (None: not given) of a ``weights.json``."""
    text = meta.get("text_weights") or {}
    weights = HybridWeights(**meta["weights"])
    weights = dataclasses.replace(weights, text=float(text.get("weights", weights.text)))
    asked = meta.get("request_weights")
    if not asked:
        return weights, None
    request = HybridWeights(**asked)
    text_asked = float(text.get("request_weights", request.text))
    return weights, dataclasses.replace(request, text=text_asked)
