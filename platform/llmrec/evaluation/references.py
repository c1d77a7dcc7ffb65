"""The simple baselines every table sets beside a trained model, and the comparison itself.

A user bringing their own data needs to see, on that data and that split, whether the
language-model scorer beats what they could use instead: popularity, a first-order Markov
chain (:mod:`llmrec.modeling.transitions`), the collaborative model the hybrid uses, alone
(EASE on catalogues that fit it), and ItemKNN. Each is fitted on what the split part may see
(train for validation, train + validation for test).

Catalogue size decides which form each baseline takes (:func:`size_rules`), with the limits of
``rank.cf: auto``: dense EASE and dense ItemKNN up to ``rank.ease_max_items`` (and only when
their estimated memory is available), the sparse neighbourhood EASE and the top-``k`` cosine
ItemKNN up to ``rank.sparse_max_items``, ALS above; what cannot fit is skipped with a one-line
reason. No baseline allocates a dense ``items x items`` matrix above the dense limit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from llmrec.config import RankConfig
from llmrec.evaluation.offline import MARKOV_LABEL, Protocol
from llmrec.evaluation.tuning import cf_label
from llmrec.modeling.baselines import ItemKNN, Popularity, interaction_matrix
from llmrec.modeling.cf import CFKind, CFModel, CFParams, choose_cf, fit_cf
from llmrec.modeling.transitions import markov_scores

REFERENCE_LABELS = ("popularity", "itemknn", MARKOV_LABEL)
"""Baselines by name (the CF model alone is named by ``tuning.cf_label``; ItemKNN above the
dense limit by ``tuning.cf_label("itemknn", ...)``, e.g. ``itemknn (k=50)``)."""

DENSE_FIT_BYTES = {"ease": 5 * 8, "itemknn": 4 * 4}
"""Bytes per ``items x items`` entry at the peak of a dense fit, estimated: EASE holds about
five float64 copies (the Gram matrix, its Cholesky factor and inverse, the symmetrised
inverse, the weights), ItemKNN about four float32 ones (the Gram matrix, its copy, two
normalisation temporaries)."""

KIND_NAMES = {
    "ease": "dense EASE",
    "sparse": "sparse EASE",
    "itemknn": "sparse ItemKNN",
    "als": "ALS",
}


def dense_fit_bytes(kind: str, num_items: int) -> int:
    """Estimated peak memory of the dense ``kind`` fit (``ease`` or ``itemknn``)."""
    return DENSE_FIT_BYTES[kind] * num_items * num_items


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux ``MemAvailable``; else the
    free physical pages), None when the system does not say."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def fmt_gb(num_bytes: float) -> str:
    """Bytes as GB, rounded for a one-line note."""
    gb = num_bytes / 1e9
    if gb < 0.1:
        return f"{num_bytes / 1e6:.1f} MB"
    return f"{gb:,.0f} GB" if gb >= 10 else f"{gb:.1f} GB"


@dataclass(frozen=True)
class SizeRules:
    """Which form each baseline takes on a catalogue (:func:`size_rules`)."""

    num_items: int
    cf: CFKind
    """The CF baseline (``ease``: dense, ``sparse`` or ``als``), as ``rank.cf: auto``."""
    itemknn: str | None
    """``dense`` (every item's cosine), ``sparse`` (top ``rank.cf_neighbours``) or None:
    skipped."""
    notes: tuple[str, ...] = ()
    """One line per baseline that fell back to a sparse form or was skipped, and why."""


def size_rules(num_items: int, rank: RankConfig, available: int | None = None) -> SizeRules:
    """The size rules of the baselines, those of ``rank.cf: auto``.

    The CF baseline: dense EASE up to ``rank.ease_max_items`` items, the sparse
    neighbourhood EASE up to ``rank.sparse_max_items``, ALS above. ItemKNN: dense up to
    ``rank.ease_max_items``, the top-``rank.cf_neighbours`` cosine (sparse) up to
    ``rank.sparse_max_items``, skipped above (its sparse similarity of so many items would
    not fit either). With ``available`` bytes known, a dense fit whose estimated peak
    (:func:`dense_fit_bytes`) exceeds it takes the sparse form too.
    """
    n = num_items
    notes = []
    above: CFKind = "sparse" if n <= rank.sparse_max_items else "als"
    cf = choose_cf("auto", n, rank.ease_max_items, rank.sparse_max_items)
    need = dense_fit_bytes("ease", n)
    if cf != "ease":
        notes.append(
            f"ease: dense EASE skipped: {n:,} items > rank.ease_max_items={rank.ease_max_items:,}"
            f" (its {n:,} x {n:,} fit needs ~{fmt_gb(need)}); {KIND_NAMES[cf]} instead, as "
            "rank.cf: auto"
        )
    elif available is not None and need > available:
        cf = above
        notes.append(
            f"ease: dense EASE skipped: its {n:,} x {n:,} fit needs ~{fmt_gb(need)}, "
            f"{fmt_gb(available)} available; {KIND_NAMES[cf]} instead"
        )
    itemknn: str | None = "dense"
    need = dense_fit_bytes("itemknn", n)
    if n > rank.ease_max_items or (available is not None and need > available):
        why = (
            f"{n:,} items > rank.ease_max_items={rank.ease_max_items:,}"
            if n > rank.ease_max_items
            else f"its {n:,} x {n:,} fit needs ~{fmt_gb(need)}, {fmt_gb(available or 0)} available"
        )
        if n <= rank.sparse_max_items:
            itemknn = "sparse"
            notes.append(
                f"itemknn: dense ItemKNN skipped: {why}; the top-{rank.cf_neighbours} "
                "cosine (sparse) instead"
            )
        else:
            itemknn = None
            notes.append(
                f"itemknn: skipped: {n:,} items > rank.sparse_max_items="
                f"{rank.sparse_max_items:,} (neither its dense nor its sparse similarity "
                "would fit)"
            )
    return SizeRules(n, cf, itemknn, tuple(notes))


def cf_problem(kind: str, num_items: int, rank: RankConfig, available: int | None = None) -> str:
    """Why the CF option ``kind`` is not fitted alone on this catalogue ("" when it is):
    dense EASE above ``rank.ease_max_items`` or beyond the memory available."""
    n = num_items
    if kind != "ease":
        return ""
    need = dense_fit_bytes("ease", n)
    if n > rank.ease_max_items:
        return (
            f"cf ease: skipped: {n:,} items > rank.ease_max_items={rank.ease_max_items:,} "
            f"(its {n:,} x {n:,} fit needs ~{fmt_gb(need)}); --cf sparse or als fit here"
        )
    if available is not None and need > available:
        return (
            f"cf ease: skipped: its {n:,} x {n:,} fit needs ~{fmt_gb(need)}, {fmt_gb(available)} "
            "available; --cf sparse or als fit here"
        )
    return ""


def reference_scores(
    protocol: Protocol,
    rank: RankConfig,
    cf: str,
    cf_models: Mapping[str, CFModel],
    rules: SizeRules | None = None,
) -> dict[str, dict[str, np.ndarray]]:
    """Scores of the baselines on validation and test: label -> part -> ``[users, items]``.

    Args:
        protocol: The split and its catalogue.
        rank: Size limits (:func:`size_rules`) and ``rank.cf_neighbours``.
        cf: How the CF model is named in tables (``tuning.cf_label``).
        cf_models: Per part (``val``, ``test``), the CF model the hybrid uses, fitted on what
            that part may see (:func:`fit_cf_models`, or the hybrid's own).
        rules: The forms of the baselines (default: :func:`size_rules` by the limits alone;
            their notes are the caller's to print).
    """
    n = len(protocol.catalogue)
    rules = rules or size_rules(n, rank)
    knn = CFParams(neighbours=rank.cf_neighbours)
    out: dict[str, dict[str, np.ndarray]] = {}
    for name in ("val", "test"):
        full = protocol.part(name)
        part = protocol.scored(full)
        x = interaction_matrix(full.fit_histories, n)
        rows = interaction_matrix(part.histories, n)
        out.setdefault("popularity", {})[name] = Popularity().fit(x).score(rows)
        if rules.itemknn == "dense":
            out.setdefault("itemknn", {})[name] = ItemKNN().fit(x).score(rows)
        elif rules.itemknn == "sparse":
            scores = fit_cf("itemknn", x, knn).score(rows)
            out.setdefault(cf_label("itemknn", knn), {})[name] = scores
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
    "SizeRules",
    "available_memory",
    "best_baseline",
    "cf_problem",
    "comparison",
    "dense_fit_bytes",
    "fit_cf_models",
    "reference_scores",
    "size_rules",
]
