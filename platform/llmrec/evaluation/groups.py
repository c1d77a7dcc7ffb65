"""Quality across groups of users: NDCG@10 and HR@10 per group value, and the largest gap.

Groups come from the optional ``users`` table (every attribute column with at most
``max_values`` distinct values: gender, age band, occupation on MovieLens) and from the
activity level, always available: the quartile of the user's history length.

For each attribute and method, the largest gap is the difference between the best and the
worst group (groups with fewer than ``min_users`` users are shown but left out of the gap).
Two uncertainty figures come with it:

- a 95% bootstrap interval of that difference (users resampled within each of the two
  groups, ``boot`` times);
- a permutation p-value of the range of group means (labels shuffled across users): the
  chance of a range at least as wide if the attribute made no difference. Picking the best
  and the worst of many groups makes their difference look large even without a real
  effect; the permutation test accounts for that choice, so it decides what is called
  significant (p < 0.05).

A re-ranker's effect on a gap is the change of the same pair's difference against a base
method, with a paired bootstrap interval (the same resampled users for both methods).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

METRICS = ("ndcg_at_10", "hr_at_10")


def per_user(ranks: np.ndarray, k: int = 10) -> dict[str, np.ndarray]:
    """Per-user NDCG@k and HR@k from 0-based target ranks."""
    ranks = np.asarray(ranks)
    hit = ranks < k
    return {
        f"ndcg_at_{k}": np.where(hit, 1.0 / np.log2(ranks + 2.0), 0.0),
        f"hr_at_{k}": hit.astype(np.float64),
    }


def activity_levels(history_lengths: Sequence[int]) -> pd.Series:
    """Quartile of the history length, labelled with its range (``Q1 (5-24)``)."""
    lengths = pd.Series(np.asarray(history_lengths), dtype="int64")
    quartile = pd.qcut(lengths.rank(method="first"), 4, labels=False)
    labels = {
        q: f"Q{q + 1} ({lengths[quartile == q].min()}-{lengths[quartile == q].max()})"
        for q in range(4)
        if (quartile == q).any()
    }
    return quartile.map(labels)


def user_groups(
    user_ids: Sequence[str],
    history_lengths: Sequence[int],
    users: pd.DataFrame | None = None,
    max_values: int = 25,
) -> tuple[pd.DataFrame, list[str]]:
    """One row per user (in ``user_ids`` order), one column per grouping attribute:
    ``activity`` and each column of ``users`` with at most ``max_values`` distinct values
    (missing values become ``unknown``). Also the attributes left out, with why."""
    out = pd.DataFrame({"activity": activity_levels(history_lengths).to_numpy()})
    skipped = []
    if users is not None:
        table = users.drop_duplicates("user_id").set_index("user_id")
        for col in table.columns:
            values = table[col].reindex(list(user_ids))
            distinct = values.dropna().astype(str).nunique()
            if distinct > max_values:
                skipped.append(f"{col} ({distinct} values > {max_values})")
                continue
            out[col] = values.astype(object).where(values.notna(), "unknown").astype(str).to_numpy()
    return out, skipped


@dataclass(frozen=True)
class GroupReport:
    """``groups``: one row per attribute, group value and method (users, NDCG@10, HR@10);
    ``gaps``: one row per attribute, method and metric (best and worst group, the gap,
    its 95% bootstrap interval, the permutation p-value, and against the base method the
    change of the gap with its interval)."""

    groups: pd.DataFrame
    gaps: pd.DataFrame


def group_report(
    groups: pd.DataFrame,
    methods: dict[str, np.ndarray],
    base: str | None = None,
    compare: Sequence[str] = (),
    min_users: int = 20,
    boot: int = 1000,
    seed: int = 0,
) -> GroupReport:
    """The group table and the gaps of each method.

    Args:
        groups: :func:`user_groups` (one row per user).
        methods: method -> ``[users]`` 0-based target ranks (``k`` or more = a miss).
        base: the method that ``compare`` (its re-rankings, say) are measured against: their
            gap is taken between the base's best and worst groups, and its change reported.
        compare: methods compared with ``base``.
        min_users: smaller groups are listed but not used for the gap.
        boot: bootstrap resamples and label permutations.
        seed: seed of both.
    """
    scores = {m: per_user(r) for m, r in methods.items()}
    group_rows, gap_rows = [], []
    for attr in groups.columns:
        labels = groups[attr].to_numpy()
        names, counts = np.unique(labels, return_counts=True)
        for name, count in zip(names, counts, strict=True):
            at = labels == name
            for m, s in scores.items():
                group_rows.append(
                    {
                        "attribute": attr,
                        "group": name,
                        "users": int(count),
                        "method": m,
                        **{metric: float(s[metric][at].mean()) for metric in METRICS},
                    }
                )
        kept = [str(n) for n, c in zip(names, counts, strict=True) if c >= min_users]
        if len(kept) < 2:
            continue
        for metric in METRICS:
            values = {m: s[metric] for m, s in scores.items()}
            gap_rows += _gaps(attr, metric, labels, kept, values, base, compare, boot, seed)
    return GroupReport(pd.DataFrame(group_rows), pd.DataFrame(gap_rows))


def _gaps(
    attr: str,
    metric: str,
    labels: np.ndarray,
    kept: list[str],
    values: dict[str, np.ndarray],
    base: str | None,
    compare: Sequence[str],
    boot: int,
    seed: int,
) -> list[dict[str, object]]:
    rng = np.random.default_rng(seed)
    members = {g: np.flatnonzero(labels == g) for g in kept}
    # the same resampled users for every method: paired intervals of gap changes
    draws = {g: rng.integers(0, len(idx), (boot, len(idx))) for g, idx in members.items()}
    pairs = {m: _extremes(v, members) for m, v in values.items()}
    if base in values:
        pairs |= {m: pairs[str(base)] for m in compare if m in values}
    gaps, boot_gaps = {}, {}
    for m, v in values.items():
        best, worst = pairs[m]
        gaps[m] = float(v[members[best]].mean() - v[members[worst]].mean())
        boot_gaps[m] = _boot_mean(v, members[best], draws[best]) - _boot_mean(
            v, members[worst], draws[worst]
        )
    rows: list[dict[str, object]] = []
    for m, v in values.items():
        low, high = np.percentile(boot_gaps[m], [2.5, 97.5])
        p = _permutation_p(v, labels, kept, boot, seed)
        row: dict[str, object] = {
            "attribute": attr,
            "metric": metric,
            "method": m,
            "best": pairs[m][0],
            "worst": pairs[m][1],
            "gap": gaps[m],
            "ci_low": float(low),
            "ci_high": float(high),
            "p_value": p,
            "significant": p < 0.05,
        }
        if base in values and m in compare:
            change = boot_gaps[m] - boot_gaps[str(base)]
            row["gap_change"] = gaps[m] - gaps[str(base)]
            row["change_low"], row["change_high"] = (
                float(x) for x in np.percentile(change, [2.5, 97.5])
            )
        rows.append(row)
    return rows


def _extremes(v: np.ndarray, members: dict[str, np.ndarray]) -> tuple[str, str]:
    means = {g: v[idx].mean() for g, idx in members.items()}
    return max(means, key=lambda g: means[g]), min(means, key=lambda g: means[g])


def _boot_mean(v: np.ndarray, idx: np.ndarray, draws: np.ndarray) -> np.ndarray:
    return v[idx][draws].mean(1)


def _permutation_p(
    v: np.ndarray, labels: np.ndarray, kept: list[str], perms: int, seed: int
) -> float:
    """P(range of group means >= the observed one) with labels shuffled among the users of
    the kept groups."""
    at = np.isin(labels, kept)
    x, codes = v[at], np.searchsorted(np.array(sorted(kept)), labels[at])
    sizes = np.bincount(codes, minlength=len(kept))

    def spread(c: np.ndarray) -> float:
        means = np.bincount(c, weights=x, minlength=len(kept)) / sizes
        return float(means.max() - means.min())

    observed = spread(codes)
    rng = np.random.default_rng(seed + 1)
    wider = sum(spread(rng.permutation(codes)) >= observed - 1e-12 for _ in range(perms))
    return (1 + wider) / (1 + perms)


def gap_table(report: GroupReport) -> pd.DataFrame:
    """The gaps as printed: one row per attribute, metric and method."""
    gaps = report.gaps
    if gaps.empty:
        return gaps
    out = pd.DataFrame(
        {
            "attribute": gaps["attribute"],
            "metric": gaps["metric"].map({"ndcg_at_10": "NDCG@10", "hr_at_10": "HR@10"}),
            "method": gaps["method"],
            "best - worst": gaps["best"] + " - " + gaps["worst"],
            "gap [95% CI]": [
                f"{g:.4f} [{lo:.4f}, {hi:.4f}]"
                for g, lo, hi in zip(gaps["gap"], gaps["ci_low"], gaps["ci_high"], strict=True)
            ],
            "p (permutation)": gaps["p_value"].map(lambda p: f"{p:.3f}"),
            "significant": gaps["significant"].map({True: "yes", False: "no"}),
        }
    )
    if "gap_change" in gaps:
        out["gap change vs base [95% CI]"] = [
            "-" if pd.isna(c) else f"{c:+.4f} [{lo:+.4f}, {hi:+.4f}]"
            for c, lo, hi in zip(
                gaps["gap_change"], gaps["change_low"], gaps["change_high"], strict=True
            )
        ]
    return out


def wide_group_table(report: GroupReport, metric: str = "ndcg_at_10") -> pd.DataFrame:
    """One row per attribute and group, one column per method: the metric's value."""
    g = report.groups
    wide = g.pivot_table(
        index=["attribute", "group", "users"], columns="method", values=metric, sort=False
    )
    return wide[list(dict.fromkeys(g["method"]))].reset_index()
