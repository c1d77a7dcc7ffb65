"""What training does with each interaction's ``event``: the event policy (``data.events``).

Every validated interaction row keeps its ``event`` in the contract Parquet; what training
reads is decided here, per event, by the policy (``data.events`` over
:data:`llmrec.config.DEFAULT_EVENTS`):

- ``positive``: a training interaction (sequences, windows, the CF part, popularity,
  transitions, the version's histories);
- ``negative``: evidence against the item for that user. The user's positive rows of the
  item are withdrawn when the negative is their latest word on it (a click, then a
  dislike); a later positive row wins (a dislike, then a purchase: the purchase is trained
  on, the dislike is not a negative any more). A negative (user, item) pair is never a
  positive, gives the item no popularity, co-occurrence or transition, and is an explicit
  negative of the sequential design's loss (``train.negative_weight``);
- ``ignore``: left out of training.

A positive and a negative row of one pair at the same second: the negative wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from llmrec.config import DEFAULT_EVENTS, OTHER_EVENTS

NEGATIVES_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),
        pa.field("event", pa.string(), nullable=False),
    ]
)
"""One row per negative (user, item) pair: its latest negative event and when it was."""

_ORDER = {"positive": 0, "negative": 1, "ignore": 2}


def policy_of(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """The default policy with ``overrides`` (``data.events``) applied, keys in lower case."""
    return {**DEFAULT_EVENTS, **{k.strip().lower(): v for k, v in (overrides or {}).items()}}


def action_of(policy: Mapping[str, str], event: str | None) -> str:
    """What ``policy`` does with ``event`` (an event it does not name: positive)."""
    return policy.get((event or "").strip().lower(), OTHER_EVENTS)


@dataclass(frozen=True)
class EventSplit:
    """Interactions split by the event policy.

    ``positives``: the rows training reads (the input's schema and order; the input table
    itself when every row is positive). ``negatives``: one row per negative (user, item)
    pair (:data:`NEGATIVES_SCHEMA`). ``counts``: rows per event as written in the data,
    with what was done with them. ``withdrawn``: positive rows left out because their
    user's latest word on the item is negative.
    """

    positives: pa.Table
    negatives: pa.Table = field(default_factory=NEGATIVES_SCHEMA.empty_table)
    counts: dict[str, tuple[str, int]] = field(default_factory=dict)
    withdrawn: int = 0

    @property
    def rows(self) -> int:
        """Every row the split was made from."""
        return sum(n for _, n in self.counts.values())

    def describe(self) -> str:
        """One line: ``events: 9800 x rating, 120 x click -> positive; 8 x dislike ->
        negative (2 earlier positive rows withdrawn); 3 x skip -> ignore``."""
        if not self.counts:
            return "events: none"
        parts = []
        for action in _ORDER:
            named = sorted(
                ((n, e) for e, (a, n) in self.counts.items() if a == action),
                key=lambda t: (-t[0], t[1]),
            )
            if not named:
                continue
            text = ", ".join(f"{n} x {e}" for n, e in named) + f" -> {action}"
            if action == "negative" and self.withdrawn:
                text += f" ({self.withdrawn} earlier positive rows withdrawn)"
            parts.append(text)
        return "events: " + "; ".join(parts)


def split_events(table: pa.Table, overrides: Mapping[str, str] | None = None) -> EventSplit:
    """Split validated interactions (the contract's columns) by the event policy
    (``overrides``: ``data.events``; None: the defaults)."""
    policy = policy_of(overrides)
    n = table.num_rows
    if n == 0:
        return EventSplit(table)
    events = table.column("event")
    kinds = pc.unique(events).to_pylist()
    actions = [action_of(policy, e) for e in kinds]
    which = pc.index_in(events, value_set=pa.array(kinds, events.type)).to_numpy()
    code = np.array([_ORDER[a] for a in actions], dtype=np.int8)[which]
    sizes = np.bincount(which, minlength=len(kinds))
    counts = {str(e): (a, int(k)) for e, a, k in zip(kinds, actions, sizes, strict=True)}
    positive = code == _ORDER["positive"]
    if not (code == _ORDER["negative"]).any():
        kept = table if positive.all() else table.filter(pa.array(positive))
        return EventSplit(kept, counts=counts)
    frame = pd.DataFrame(
        {
            "user_id": table.column("user_id").to_numpy(zero_copy_only=False),
            "item_id": table.column("item_id").to_numpy(zero_copy_only=False),
            "timestamp": table.column("timestamp").to_numpy(),
            "event": events.to_numpy(zero_copy_only=False),
        }
    )
    pair = ["user_id", "item_id"]
    neg = frame[code == _ORDER["negative"]].sort_values("timestamp", kind="stable")
    last_neg = neg.drop_duplicates(pair, keep="last")
    pos = frame[positive]
    last_pos = pos.merge(last_neg[pair], on=pair).groupby(pair, sort=False)["timestamp"].max()
    marked = last_neg.set_index(pair)
    later = last_pos.reindex(marked.index)
    # a positive row at the same second as the latest negative does not win
    negative_pairs = marked[~(later > marked["timestamp"]).to_numpy()]
    index = pd.MultiIndex.from_frame(pos[pair])
    withdrawn = index.isin(negative_pairs.index)
    keep = positive.copy()
    keep[np.flatnonzero(positive)[withdrawn]] = False
    negatives = pa.Table.from_pandas(
        negative_pairs.reset_index().sort_values(pair, kind="stable")[NEGATIVES_SCHEMA.names],
        schema=NEGATIVES_SCHEMA,
        preserve_index=False,
    )
    return EventSplit(table.filter(pa.array(keep)), negatives, counts, int(withdrawn.sum()))


def negative_rows(
    negatives: pa.Table,
    rows: Mapping[str, int],
    until: int | Mapping[str, int] | None = None,
    skip: frozenset[str] = frozenset(),
) -> tuple[dict[str, int], list[list[int]]]:
    """The explicit negatives of the sequential design: ``users`` (user id -> a position
    in ``table``) and ``table`` (per such user, the catalogue rows of their negative items).

    Args:
        negatives: Negative pairs (:data:`NEGATIVES_SCHEMA`).
        rows: Catalogue rows by item id (other items are skipped).
        until: Only negatives at or before this time, or per user (a mapping: users it
            does not name have none); None: all.
        skip: Items never to use (e.g. the cold items a run holds out).
    """
    users: dict[str, int] = {}
    table: list[list[int]] = []
    if negatives.num_rows == 0:
        return users, table
    cols = negatives.select(["user_id", "item_id", "timestamp"]).to_pydict()
    for user, item, when in zip(cols["user_id"], cols["item_id"], cols["timestamp"], strict=True):
        if item not in rows or item in skip:
            continue
        if isinstance(until, Mapping):
            if user not in until or when > until[user]:
                continue
        elif until is not None and when > until:
            continue
        if user not in users:
            users[user] = len(table)
            table.append([])
        table[users[user]].append(int(rows[item]))
    return users, table


__all__ = [
    "NEGATIVES_SCHEMA",
    "EventSplit",
    "action_of",
    "negative_rows",
    "policy_of",
    "split_events",
]
