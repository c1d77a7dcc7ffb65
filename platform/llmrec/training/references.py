"""The simple baselines every table sets beside a trained model, and the comparison itself.

A user bringing their own data needs to see, on that data and that split, whether the
language-model scorer beats what they could use instead: popularity, a first-order Markov
chain (:mod:`llmrec.modeling.transitions`), the collaborative model the hybrid uses, alone
(EASE on catalogues that fit it), and ItemKNN where its dense similarity fits. Each is fitted
on what the split part may see (train for validation, train + validation for test).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from llmrec.config import RankConfig
from llmrec.modeling.baselines import ItemKNN, Popularity, interaction_matrix
from llmrec.modeling.cf import CFModel, CFParams, fit_cf
from llmrec.modeling.transitions import markov_scores
from llmrec.training.offline import MARKOV_LABEL, Protocol

REFERENCE_LABELS = ("popularity", "itemknn", MARKOV_LABEL)
"""Baselines by name (the CF model alone is named by ``offline.cf_label``)."""


def reference_scores(
    protocol: Protocol, rank: RankConfig, cf: str, cf_models: Mapping[str, CFModel]
) -> dict[str, dict[str, np.ndarray]]:
    """Scores of the baselines on validation and test: label -> part -> ``[users, items]``.

    Args:
        protocol: The split and its catalogue.
        rank: Size limits (``rank.ease_max_items``: ItemKNN's dense similarity is skipped on
            larger catalogues).
        cf: How the CF model is named in tables (``offline.cf_label``).
        cf_models: Per part (``val``, ``test``), the CF model the hybrid uses, fitted on what
            that part may see (:func:`fit_cf_models`, or the hybrid's own).
    """
    n = len(protocol.catalogue)
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in ("val", "test"):
        full = protocol.part(name)
        part = protocol.scored(full)
        x = interaction_matrix(full.fit_histories, n)
        rows = interaction_matrix(part.histories, n)
        out.setdefault("popularity", {})[name] = Popularity().fit(x).score(rows)
        if n <= rank.ease_max_items:
            out.setdefault("itemknn", {})[name] = ItemKNN().fit(x).score(rows)
        out.setdefault(MARKOV_LABEL, {})[name] = markov_scores(
            full.fit_histories, part.histories, n
        )
        out.setdefault(cf, {})[name] = cf_models[name].score(rows)
    return out


def fit_cf_models(protocol: Protocol, kind: str, params: CFParams) -> dict[str, CFModel]:
    """The CF model ``kind`` fitted per part on what that part may see."""
    n = len(protocol.catalogue)
    return {
        name: fit_cf(kind, interaction_matrix(protocol.part(name).fit_histories, n), params)
        for name in ("val", "test")
    }


def comparison(table: pd.DataFrame, models: Mapping[str, str]) -> pd.DataFrame:
    """A compact table: per method, validation NDCG@10 and test HR@10 / NDCG@10, and each of
    ``models``' test NDCG@10 as a multiple of the best baseline's (the strongest method on
    test that is not one of ``models``: the stricter comparison).

    Args:
        table: Rows of ``method``, ``split`` and the metrics (:func:`offline.score_table`).
        models: Method label -> how to call it in the table (e.g. ``"llm" -> "model alone"``).
    """
    wide = table[table["split"].isin(["val", "test"])].pivot_table(
        index="method", columns="split", values=["ndcg_at_10", "hr_at_10"], sort=False
    )
    out = pd.DataFrame(
        {
            "method": [models.get(m, m) for m in wide.index],
            "val NDCG@10": wide[("ndcg_at_10", "val")].to_numpy(),
            "test HR@10": wide[("hr_at_10", "test")].to_numpy(),
            "test NDCG@10": wide[("ndcg_at_10", "test")].to_numpy(),
        }
    )
    is_model = np.array([m in models for m in wide.index])
    best = out.loc[~is_model, "test NDCG@10"].max() if (~is_model).any() else np.nan
    ratio = out["test NDCG@10"] / best if best and best > 0 else np.nan
    out["x best baseline"] = np.where(is_model, ratio, np.nan)
    out = out.sort_values("test NDCG@10", ascending=False, kind="stable").reset_index(drop=True)
    return out.astype({"x best baseline": object}).where(out.notna(), "")


def best_baseline(table: pd.DataFrame, models: Mapping[str, str]) -> tuple[str, float]:
    """The baseline with the highest test NDCG@10 and that value."""
    test = table[(table["split"] == "test") & ~table["method"].isin(list(models))]
    row = test.loc[test["ndcg_at_10"].idxmax()]
    return str(row["method"]), float(row["ndcg_at_10"])


__all__ = [
    "REFERENCE_LABELS",
    "best_baseline",
    "comparison",
    "fit_cf_models",
    "reference_scores",
]
