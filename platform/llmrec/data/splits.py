"""Iterative k-core filtering and per-user chronological leave-one-out splits.

This is the evaluation protocol of docs/evaluation.md (LRURec / LlamaRec on MovieLens): every
interaction counts, users and items with fewer than ``k`` interactions are dropped until both
hold, each user's interactions are sorted by (timestamp, item id), the last item is the test
target, the second-to-last the validation target and the rest is training history.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pyarrow as pa


def k_core(interactions: pd.DataFrame, k: int) -> pd.DataFrame:
    """Drop users and items with fewer than ``k`` interactions, repeatedly, until both hold."""
    df = interactions
    while True:
        user_n = df.groupby("user_id")["item_id"].transform("size")
        item_n = df.groupby("item_id")["user_id"].transform("size")
        keep = (user_n >= k) & (item_n >= k)
        if keep.all():
            return df.reset_index(drop=True)
        df = df[keep]


@dataclass(frozen=True)
class Split:
    """Per-user chronological sequences; the last two items are validation and test targets.

    ``sequences`` has one row per user: ``user_id``, ``items``, ``timestamps``, ``queries``
    (lists in time order, ``queries[i]`` the text typed with ``items[i]`` or None) and
    ``values``.
    """

    sequences: pd.DataFrame

    def part(self, name: str) -> pd.DataFrame:
        """``train``: all but the last two; ``val``: history = train, target = 2nd-to-last;
        ``test``: history = train + val, target = last. Columns: ``user_id``, ``history``,
        ``history_queries``, ``target``, ``target_query``."""
        cut = {"val": -2, "test": -1}[name]
        seq = self.sequences
        return pd.DataFrame(
            {
                "user_id": seq["user_id"],
                "history": seq["items"].map(lambda s: list(s[:cut])),
                "history_queries": seq["queries"].map(lambda s: list(s[:cut])),
                "target": seq["items"].map(lambda s: s[cut]),
                "target_query": pd.Series(
                    [s[cut] for s in seq["queries"]], index=seq.index, dtype=object
                ),
            }
        )

    def train_sequences(self) -> pd.DataFrame:
        """Each user's training part (everything before the validation target)."""
        seq = self.sequences
        return seq.assign(
            items=seq["items"].map(lambda s: list(s[:-2])),
            timestamps=seq["timestamps"].map(lambda s: list(s[:-2])),
            queries=seq["queries"].map(lambda s: list(s[:-2])),
            values=seq["values"].map(lambda s: list(s[:-2])),
        )

    def item_ids(self) -> set[str]:
        """Every item left after k-core filtering: the catalogue that evaluation ranks."""
        return {i for items in self.sequences["items"] for i in items}

    @property
    def num_users(self) -> int:
        return len(self.sequences)


def drop_items(sequences: pd.DataFrame, items: frozenset[str], min_length: int = 2) -> pd.DataFrame:
    """``sequences`` with ``items`` removed from every user's lists (``items``,
    ``timestamps``, ``queries``, ``values``); users left shorter than ``min_length`` go."""
    if not items:
        return sequences
    keep = sequences["items"].map(lambda s: [i not in items for i in s])
    cols = {
        c: [
            [v for v, k in zip(vals, ks, strict=True) if k]
            for vals, ks in zip(sequences[c], keep, strict=True)
        ]
        for c in ("items", "timestamps", "queries", "values")
    }
    out = sequences.assign(**cols)
    return out[out["items"].map(len) >= min_length].reset_index(drop=True)


def hold_out_items(split: Split, share: float, seed: int = 0) -> frozenset[str]:
    """A random ``share`` of the split's items, held out of training entirely (the cold-start
    protocol of EVALUATION.md, step 9)."""
    if share <= 0:
        return frozenset()
    import numpy as np

    items = sorted(split.item_ids())
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(items), size=max(1, round(share * len(items))), replace=False)
    return frozenset(items[i] for i in picked)


def in_time_order(df: pd.DataFrame) -> pd.DataFrame:
    """Interactions sorted by user, then timestamp; ties on timestamp broken by item id,
    numerically when every id is a number (as in the reference implementation on
    MovieLens)."""
    numeric = df["item_id"].str.fullmatch(r"\d+").all()
    order = df["item_id"].astype("int64") if numeric else df["item_id"]
    df = df.assign(_order=order).sort_values(["user_id", "timestamp", "_order"], kind="stable")
    return df.drop(columns="_order")


def leave_one_out(interactions: pa.Table | pd.DataFrame, min_core: int = 5) -> Split:
    """k-core filter, then sort each user's interactions by (timestamp, item id).

    Users left with fewer than 3 interactions (possible only when ``min_core < 3``) cannot
    give a training, validation and test item and are dropped.
    """
    df = interactions.to_pandas() if isinstance(interactions, pa.Table) else interactions
    df = in_time_order(k_core(df[["user_id", "item_id", "timestamp", "value", "query"]], min_core))
    grouped = df.groupby("user_id", sort=True)
    seq = pd.DataFrame(
        {
            "items": grouped["item_id"].agg(list),
            "timestamps": grouped["timestamp"].agg(list),
            "queries": grouped["query"].agg(lambda q: [None if pd.isna(v) else v for v in q]),
            "values": grouped["value"].agg(list),
        }
    ).reset_index()
    seq = seq[seq["items"].map(len) >= 3].reset_index(drop=True)
    return Split(sequences=seq)
