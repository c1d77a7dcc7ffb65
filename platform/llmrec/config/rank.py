"""The ``rank`` section: the served hybrid, its collaborative term and the re-rankers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class RankConfig:
    """How candidates are scored and re-ranked, offline and in serving."""

    hybrid: bool = True
    """Add a collaborative score and a popularity prior to the LLM score, with weights tuned
    on validation and stored with the model version."""
    cf: Literal["auto", "ease", "sparse", "itemknn", "als"] = "auto"
    """The collaborative part of the hybrid (``llmrec.modeling.cf``): ``ease`` (dense closed
    form), ``sparse`` (EASE over each item's ``cf_neighbours`` most co-occurring items),
    ``itemknn`` (top-``cf_neighbours`` cosine), ``als`` (``cf_factors`` implicit-ALS factors,
    the user's factor solved from their history at request time); ``auto``: ``ease`` up to
    ``ease_max_items`` items, ``sparse`` up to ``sparse_max_items``, ``als`` above. Lambdas and
    ALS regularisation/confidence are tuned on validation."""
    transitions: bool = True
    """Add the transition term to the hybrid: how often each item followed the user's last
    item in the logs (a first-order Markov chain), standardised like the CF part, its weight
    tuned on validation (0 where order carries no signal)."""
    cf_neighbours: int = 50
    """Neighbours per item of ``sparse`` and ``itemknn``."""
    cf_factors: int = 32
    """Factors of ``als`` (32 beat 64 on ml-100k validation)."""
    ease_max_items: int = 10000
    """Largest catalogue for dense EASE (``4 n^2`` bytes, ``O(n^3)`` to fit)."""
    sparse_max_items: int = 200000
    """Largest catalogue ``auto`` gives the sparse neighbourhood EASE (``O(n k^2)`` lookups to
    fit); ALS above."""
    diversity: Literal["none", "mmr", "msd", "dpp"] = "none"
    """Diversity re-ranking of the top ``rerank_depth`` candidates (``msd``: max-sum
    diversification, the best trade-off on ml-100k; see docs/beyond-accuracy.md)."""
    diversity_strength: float = 0.0
    """Trade-off knob in [0, 1]: 0 = relevance order, 1 = only diversity."""
    rerank_depth: int = 50
    """Candidates the re-rankers choose from."""
    similarity: Literal["embedding", "categories"] = "embedding"
    """Item similarity for re-ranking: item-tower embeddings or category vectors."""
    calibration: float = 0.0
    """Calibrated re-ranking (Steck 2018) in [0, 1]: 0 = off; the list's category mix moves
    toward the user's history. A request's ``"calibration"`` overrides it."""
    tail_share: float = 0.0
    """Minimum share of long-tail items per list (outside the most popular 20% of items by
    training interactions), in [0, 1]. A request's ``"tail_share"`` overrides it."""
    max_per: dict[str, int] = field(default_factory=dict)
    """At most this many items per value of an item attribute per list, e.g.
    ``{provider: 2}`` or ``{categories: 3}``. A request's ``"max_per"`` replaces it."""
    explore: float = 0.0
    """Share of each served list reserved for exploration, in [0, 0.5]: items with little
    evidence (impressions, and the version's training interactions) among the model's wider
    candidate pool and its best-scored new or rarely used items, chosen by a Thompson sampler
    over the impression log's clicks (``llmrec.experiments.exploration``; 0.1 of 10 items is
    one slot); 0 = off. A request's ``"explore"`` overrides it. See docs/serving.md."""

    def problems(self) -> list[str]:
        out = []
        for name in ("diversity_strength", "calibration", "tail_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                out.append(f"rank.{name} must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.explore <= 0.5:
            out.append(f"rank.explore must be in [0, 0.5], got {self.explore}")
        for name in (
            "cf_neighbours",
            "cf_factors",
            "ease_max_items",
            "sparse_max_items",
            "rerank_depth",
        ):
            if getattr(self, name) < 1:
                out.append(f"rank.{name} must be >= 1, got {getattr(self, name)}")
        for attr, cap in self.max_per.items():
            if isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
                out.append(f"rank.max_per.{attr} must be an integer >= 1, got {cap!r}")
        return out
