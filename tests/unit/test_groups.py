"""The group report on a small fixture whose numbers can be checked by hand."""

import math

import numpy as np
import pandas as pd
import pytest
from llmrec.evaluation.groups import (
    activity_levels,
    gap_table,
    group_report,
    user_groups,
    wide_group_table,
)

# 8 users: F1-F4 find their target first; M1 first, M2 second, M3 and M4 miss it
USERS = ["F1", "F2", "F3", "F4", "M1", "M2", "M3", "M4"]
RANKS = np.array([0, 0, 0, 0, 0, 1, 10, 25])
M_NDCG = (1 + 1 / math.log2(3)) / 4  # 0.4077
TABLE = pd.DataFrame(
    {
        "user_id": USERS,
        "gender": ["F"] * 4 + ["M"] * 4,
        "zip_code": [f"{i:05d}" for i in range(8)],
        "team": ["a", "b", "a", "b", "a", "b", "a", "b"],
    }
)


def test_activity_is_the_quartile_of_the_history_length():
    levels = activity_levels([8, 1, 7, 2, 6, 3, 5, 4])
    assert levels.tolist() == [
        "Q4 (7-8)", "Q1 (1-2)", "Q4 (7-8)", "Q1 (1-2)", "Q3 (5-6)", "Q2 (3-4)", "Q3 (5-6)",
        "Q2 (3-4)",
    ]  # fmt: skip


def test_user_groups_take_attribute_columns_with_few_values():
    groups, skipped = user_groups([*USERS, "X"], list(range(1, 10)), TABLE, max_values=5)
    assert list(groups.columns) == ["activity", "gender", "team"]
    assert skipped == ["zip_code (8 values > 5)"]
    assert groups["gender"].tolist()[-2:] == ["M", "unknown"]  # X is not in the user table


def test_group_means_gap_interval_and_permutation_p():
    groups, _ = user_groups(USERS, [10] * 8, TABLE, max_values=5)
    report = group_report(groups[["gender", "team"]], {"m": RANKS}, min_users=2, boot=400)
    g = report.groups.set_index(["attribute", "group"])
    assert g.loc[("gender", "F"), "ndcg_at_10"] == 1.0
    assert g.loc[("gender", "M"), "ndcg_at_10"] == pytest.approx(M_NDCG)
    assert g.loc[("gender", "M"), "hr_at_10"] == 0.5
    gaps = report.gaps.set_index(["attribute", "metric"])
    ndcg = gaps.loc[("gender", "ndcg_at_10")]
    assert (ndcg["best"], ndcg["worst"]) == ("F", "M")
    assert ndcg["gap"] == pytest.approx(1 - M_NDCG)
    # F's values never vary, so the interval is 1 minus M's resampled means: within [0.18, 1]
    assert 1 - 2 * M_NDCG - 1e-9 <= ndcg["ci_low"] <= ndcg["gap"] <= ndcg["ci_high"] <= 1
    assert gaps.loc[("gender", "hr_at_10"), "gap"] == 0.5
    # team a = F1, F3, M1, M3 (ranks 0, 0, 0, 10), team b = F2, F4, M2, M4 (0, 0, 1, 25)
    team = gaps.loc[("team", "hr_at_10")]
    assert team["gap"] == 0.0 and team["p_value"] == 1.0 and not team["significant"]
    # permutation p: of the 70 ways to split the 8 users 4/4, a range of at least 0.592
    # needs one half to hold four of the five 1.0s (5 splits) or their complement (5 more)
    assert ndcg["p_value"] == pytest.approx(10 / 70, abs=0.04)
    assert not ndcg["significant"]  # 8 users cannot show much


def test_a_re_ranker_is_compared_on_the_base_methods_pair():
    groups = pd.DataFrame({"gender": ["F"] * 4 + ["M"] * 4})
    narrower = np.array([0, 0, 0, 10, 0, 1, 10, 25])  # one F user now misses
    report = group_report(
        groups, {"base": RANKS, "rr": narrower}, base="base", compare=["rr"], min_users=2
    )
    hr = report.gaps[report.gaps["metric"] == "hr_at_10"].set_index("method")
    assert hr.loc["base", "gap"] == 0.5 and hr.loc["rr", "gap"] == 0.25
    assert hr.loc["rr", "gap_change"] == -0.25
    assert hr.loc["rr", "change_low"] <= -0.25 <= hr.loc["rr", "change_high"]
    printed = gap_table(report)
    assert "gap change vs base [95% CI]" in printed.columns
    assert printed["best - worst"].tolist()[0] == "F - M"
    wide = wide_group_table(report, "hr_at_10")
    assert wide.set_index("group").loc["F", "rr"] == 0.75


def test_small_groups_are_listed_but_not_in_the_gap():
    groups = pd.DataFrame({"g": ["a"] * 7 + ["b"]})
    report = group_report(groups, {"m": RANKS}, min_users=2)
    assert set(report.groups["group"]) == {"a", "b"}
    assert report.gaps.empty  # one group of 2+ users: no gap to measure
