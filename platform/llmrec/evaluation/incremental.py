"""Learning from what happened after a model was trained: the timeline of interactions, the
training windows of a time range (new data, replayed older data), and the users to evaluate
on a later range.

Shared by the update job (:mod:`llmrec.workflows.update`: new data = the events after the
champion's cut-off) and the incremental evaluation (:mod:`llmrec.workflows.incremental`:
new data = the periods after the base period). Every interaction has a place on one
timeline (sorted by time, ties by user and item), so that "before", "in a period" and
"newest share" mean the same everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from llmrec.data.pipeline import user_windows
from llmrec.evaluation.metrics import ranking_metrics, target_ranks


@dataclass(frozen=True)
class Timeline:
    """Interactions in time order: ``frame`` has ``user_id, item_id, timestamp, query,
    value`` and ``pos`` (0, 1, ...: the place on the timeline), sorted by ``pos``."""

    frame: pd.DataFrame

    @classmethod
    def build(cls, interactions: pa.Table | pd.DataFrame) -> Timeline:
        df = interactions.to_pandas() if isinstance(interactions, pa.Table) else interactions
        cols = ["user_id", "item_id", "timestamp", "query", "value"]
        df = df[[c for c in cols if c in df.columns]].copy()
        if "query" not in df:
            df["query"] = None
        if "value" not in df:
            df["value"] = 1.0
        numeric = bool(df["item_id"].str.fullmatch(r"\d+").all()) if len(df) else False
        order = df["item_id"].astype("int64") if numeric else df["item_id"]
        df = df.assign(_order=order).sort_values(["timestamp", "user_id", "_order"], kind="stable")
        df = df.drop(columns="_order").reset_index(drop=True)
        df["pos"] = np.arange(len(df), dtype=np.int64)
        return cls(df)

    def __len__(self) -> int:
        return len(self.frame)

    def share(self, fraction: float) -> int:
        """The position that ends the first ``fraction`` of the interactions."""
        return round(fraction * len(self))

    def after(self, timestamp: int) -> int:
        """The position of the first interaction later than ``timestamp``."""
        return int(np.searchsorted(self.frame["timestamp"].to_numpy(), timestamp, side="right"))

    def timestamp(self, pos: int) -> int:
        """The time of the interaction at ``pos`` (the last one for ``pos >= len``)."""
        return int(self.frame["timestamp"].iloc[min(pos, len(self) - 1)])

    @cached_property
    def users(self) -> dict[str, dict[str, list[Any]]]:
        """Each user's interactions in time order: ``items``, ``pos``, ``queries``,
        ``values``."""
        out: dict[str, dict[str, list[Any]]] = {}
        for user, part in self.frame.groupby("user_id", sort=True):
            out[str(user)] = {
                "items": part["item_id"].tolist(),
                "pos": part["pos"].tolist(),
                "queries": [q if isinstance(q, str) and q.strip() else None for q in part["query"]],
                "values": [float(v) for v in part["value"]],
            }
        return out

    def first_seen(self) -> dict[str, int]:
        """Each item's first position."""
        firsts = self.frame.groupby("item_id", sort=False)["pos"].min()
        return {str(k): int(v) for k, v in firsts.items()}

    def items_before(self, end: int) -> set[str]:
        """Items that occur at positions before ``end``."""
        return set(self.frame["item_id"].iloc[:end])

    def queries(self, start: int, end: int) -> list[str]:
        """The distinct requests typed in ``[start, end)``, sorted."""
        part = self.frame["query"].iloc[start:end]
        return sorted({q for q in part if isinstance(q, str) and q.strip()})


def windows(
    timeline: Timeline,
    rows: dict[str, int],
    query_ids: dict[str, int],
    length: int,
    start: int,
    end: int,
    users: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Training windows whose targets are the interactions at positions ``[start, end)``,
    each a target once, read after the user's interactions before ``start``.

    Args:
        timeline: The interactions.
        rows: Catalogue rows by item id (other items are skipped).
        query_ids: Request ids (0: no request).
        length: The user tower's sequence length (``model.seq_len``).
        start: The first position that is a target (0: every interaction).
        end: The end of the range (exclusive).
        users: Given, every window carries ``user``: its user's position in the table of
            explicit negatives (-1: none; :func:`llmrec.data.events.negative_rows`).
    """
    out = []
    for user, seq in timeline.users.items():
        pos = seq["pos"]
        stop = int(np.searchsorted(pos, end))
        first = int(np.searchsorted(pos, start))
        if first >= stop:
            continue
        row = {k: v[:stop] for k, v in seq.items()}
        owner = None if users is None else users.get(user, -1)
        out += user_windows(row, rows, query_ids, length, new_from=first, user=owner)
    return out


def replay(
    timeline: Timeline,
    rows: dict[str, int],
    query_ids: dict[str, int],
    length: int,
    before: int,
    count: int,
    seed: int = 0,
    users: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """``count`` windows drawn without replacement from the interactions before ``before``
    (all of them when there are fewer): what an update replays of the older data
    (``users``: as :func:`windows`)."""
    pool = windows(timeline, rows, query_ids, length, 0, before, users)
    if count >= len(pool):
        return pool
    picked = np.random.default_rng(seed).choice(len(pool), size=count, replace=False)
    return [pool[i] for i in sorted(picked)]


@dataclass(frozen=True)
class PeriodUsers:
    """The users active in a period: each one's first interaction there is the target,
    everything before it the history (catalogue rows, oldest first)."""

    user_ids: list[str]
    histories: list[list[int]]
    history_ids: list[list[str]]
    targets: np.ndarray
    queries: list[str | None]
    returning: np.ndarray
    """Whether the user had interactions before ``seen_before`` (a base-period user)."""

    def __len__(self) -> int:
        return len(self.user_ids)


def period_users(
    timeline: Timeline, rows: dict[str, int], start: int, end: int, seen_before: int
) -> PeriodUsers:
    """The users with an interaction in ``[start, end)`` whose first one there is an item of
    ``rows``, with their history (items of ``rows`` before it)."""
    users, hist, hist_ids, targets, queries, returning = [], [], [], [], [], []
    for user, seq in timeline.users.items():
        pos = seq["pos"]
        at = int(np.searchsorted(pos, start))
        if at >= len(pos) or pos[at] >= end or seq["items"][at] not in rows:
            continue
        before = [i for i in seq["items"][:at] if i in rows]
        users.append(user)
        hist_ids.append(before)
        hist.append([rows[i] for i in before])
        targets.append(rows[seq["items"][at]])
        queries.append(seq["queries"][at])
        returning.append(bool(pos[0] < seen_before))
    return PeriodUsers(
        users,
        hist,
        hist_ids,
        np.asarray(targets, dtype=np.int64),
        queries,
        np.asarray(returning, dtype=bool),
    )


def period_metrics(
    scores: np.ndarray, users: PeriodUsers, candidates: np.ndarray
) -> dict[str, float]:
    """HR/NDCG@10/20 and MRR of ``[users, catalogue]`` scores, ranking ``candidates`` (rows)
    with the history masked, overall and for returning vs new users
    (``returning_ndcg_at_10``, ``new_ndcg_at_10``; NaN when a group is empty)."""
    place = {int(r): k for k, r in enumerate(candidates)}
    sub = scores[:, candidates]
    targets = np.array([place[int(t)] for t in users.targets], dtype=np.int64)
    exclude = [[place[r] for r in h if r in place] for h in users.histories]
    ranks = target_ranks(sub, targets, exclude)
    out = ranking_metrics(ranks)
    for name, mask in (("returning", users.returning), ("new", ~users.returning)):
        value = ranking_metrics(ranks[mask])["ndcg_at_10"] if mask.any() else float("nan")
        out[f"{name}_ndcg_at_10"] = value
        out[f"{name}_users"] = float(mask.sum())
    out["users"] = float(len(users))
    return out


__all__ = ["PeriodUsers", "Timeline", "period_metrics", "period_users", "replay", "windows"]
