"""The group section of an evaluation: quality per user group, as printable Markdown.

:mod:`llmrec.evaluation.groups` computes the statistics (per-group metrics, the largest gap,
its bootstrap interval and permutation test); this module turns a method's test ranks into
the section ``jobs/evaluate.py --groups`` prints and every version's ``evaluation/table.md``
carries (docs/beyond-accuracy.md, "Quality across user groups").
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from llmrec.evaluation import groups as group_stats
from llmrec.evaluation import offline


def group_section(
    protocol: offline.Protocol,
    users: pd.DataFrame | None,
    ranks: dict[str, np.ndarray],
    base: str | None = None,
    compare: Sequence[str] = (),
    min_users: int = 20,
) -> tuple[str, pd.DataFrame]:
    """The group report of test ranks per method, as Markdown, and its gap table
    (``compare``: methods whose gaps are measured against ``base``'s)."""
    test = protocol.scored(protocol.part("test"))
    labels, skipped = group_stats.user_groups(
        test.rows["user_id"].tolist(), [len(h) for h in test.histories], users
    )
    report = group_stats.group_report(labels, ranks, base, compare, min_users)
    gaps = group_stats.gap_table(report)
    significant = report.gaps[report.gaps["significant"]] if not report.gaps.empty else []
    lines = [
        "## Quality across user groups (test split)",
        "",
        "Activity = quartile of history length"
        + (", and the user table's attributes" if users is not None else " (no user table)")
        + (f"; left out: {', '.join(skipped)}" if skipped else "")
        + f". Gaps between groups of at least {min_users} users; 95% bootstrap interval; "
        "significant = permutation p < 0.05.",
        "",
        "### NDCG@10",
        "",
        offline.to_markdown(group_stats.wide_group_table(report, "ndcg_at_10")),
        "",
        "### HR@10",
        "",
        offline.to_markdown(group_stats.wide_group_table(report, "hr_at_10")),
        "",
        "### Largest gap per attribute",
        "",
        offline.to_markdown(gaps) if not gaps.empty else "(no attribute with two groups)",
        "",
        f"Significant gaps: {len(significant)} of {len(report.gaps)}.",
    ]
    return "\n".join(lines), report.gaps


def users_frame(table: Any) -> pd.DataFrame | None:
    """The prepared user table as a DataFrame of strings (None when there is none)."""
    if table is None:
        return None
    return pd.DataFrame(
        {
            c: [None if v is None else str(v) for v in table.column(c).to_pylist()]
            for c in table.column_names
        }
    )
