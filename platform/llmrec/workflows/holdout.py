"""Comparing a candidate with the champion on held-back interactions, each as it would be
served: its own towers, item vectors and hybrid over the same grown catalogue.

The update job (:mod:`llmrec.workflows.update`) compares the two on the newest slice of the
new data before it registers the candidate; the gate may then promote on that comparison.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from llmrec.data.catalogue import Catalogue
from llmrec.evaluation.incremental import PeriodUsers, period_metrics
from llmrec.modeling.towers import Towers
from llmrec.ranking.hybrid import HybridScorer
from llmrec.registry.bundle import ModelBundle
from llmrec.workflows.steps import cf_settings, serving_hybrid


def compare(
    towers: Towers,
    vectors: np.ndarray,
    catalogue: Catalogue,
    champion: ModelBundle,
    users: PeriodUsers,
    before: pa.Table,
) -> dict[str, dict[str, float]]:
    """``candidate`` (``towers`` and its ``vectors`` over ``catalogue``, the champion's
    hybrid weights with the CF part and popularity fitted on ``before``, the interactions
    before the held-back ones) and ``champion`` as served, on ``users``: the LLM part alone
    (``llm_*``) and the hybrid (``hybrid_*``)."""
    if (champion.path / "hybrid" / "weights.json").exists():
        weights, kind, params = cf_settings(champion)
        asked = champion.hybrid.request_weights
        hybrid = serving_hybrid(weights, kind, params, catalogue, vectors, before, asked)
    else:
        hybrid = HybridScorer(vectors)
    return {
        "candidate": scores_of(towers, hybrid, len(catalogue), users),
        "champion": champion_scores(champion, catalogue, users),
    }


def scores_of(towers: Towers, hybrid: HybridScorer, n: int, users: PeriodUsers) -> dict[str, float]:
    """The LLM part alone and the hybrid on ``users``, ranking all ``n`` items."""
    queries = towers.encode_users(users.history_ids, users.queries)
    every = np.arange(n)
    llm = queries @ np.asarray(hybrid.items, dtype=np.float32).T
    out = {f"llm_{k}": v for k, v in period_metrics(llm, users, every).items()}
    typed = [q is not None for q in users.queries]  # scored as serving scores them
    mixed = hybrid.scores(queries, users.histories, requests=typed)
    return out | {f"hybrid_{k}": v for k, v in period_metrics(mixed, users, every).items()}


def champion_scores(
    bundle: ModelBundle, catalogue: Catalogue, users: PeriodUsers
) -> dict[str, float]:
    """The champion as served now: its own item vectors and hybrid; the items it lacks are
    embedded by its item tower and appended as serving appends live items (no CF or
    popularity part)."""
    towers = bundle.load_towers()
    own = bundle.catalogue.index
    extra = [i for i in catalogue.ids if i not in own]
    hybrid = bundle.hybrid
    if extra:
        texts = [catalogue.items[i] for i in extra]
        vectors = towers.encode_new_items(texts)
        towers.add_items(extra, texts, vectors)
        hybrid.extend(vectors)
    order = {**own, **{i: len(own) + k for k, i in enumerate(extra)}}
    perm = np.array([order[i] for i in catalogue.ids], dtype=np.int64)  # our row -> theirs
    theirs = PeriodUsers(
        users.user_ids,
        [[int(perm[r]) for r in h] for h in users.histories],
        users.history_ids,
        perm[users.targets],
        users.queries,
        users.returning,
    )
    return scores_of(towers, hybrid, len(order), theirs)


__all__ = ["champion_scores", "compare", "scores_of"]
