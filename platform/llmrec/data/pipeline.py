"""Ray Data: training examples from the training sequences, sharded to the workers.

Ray is imported where a dataset is built, so the per-user functions (what a row becomes)
import without it.

Each user's training sequence becomes examples ``(user as text at time t -> item t)`` for the
most recent positions; the text of the user at time t is written from the items before t and
the query typed with item t. With ``llmrec.serving.indexing`` (a catalogue embedded for
the index), the only Ray Data code in the library.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from llmrec.data.catalogue import Catalogue
from llmrec.data.text import render_item, render_user

if TYPE_CHECKING:
    import ray.data


def user_examples(
    row: dict[str, Any], catalogue: Catalogue, max_history: int, examples_per_user: int
) -> list[dict[str, Any]]:
    """Training examples of one user (one row of ``train_sequences.parquet``)."""
    items = list(row["items"])
    queries = list(row["queries"])
    values = list(row["values"]) if row.get("values") is not None else [1.0] * len(items)
    positions = list(range(1, len(items)))
    if examples_per_user > 0:
        positions = positions[-examples_per_user:]
    index = catalogue.index
    return [
        {
            "query_text": render_user(items[:t], catalogue.items, queries[t], max_history),
            "item_text": render_item(catalogue.items[items[t]]),
            "item_index": index[items[t]],
            "value": float(values[t]),
        }
        for t in positions
        if items[t] in index
    ]


def build_train_dataset(
    sequences_path: str | Path,
    catalogue: Catalogue,
    max_history: int,
    examples_per_user: int,
    seed: int,
) -> ray.data.Dataset:
    """Read the training sequences with Ray Data and expand them into shuffled examples."""
    import ray.data

    ds = ray.data.read_parquet(str(sequences_path))
    ds = ds.flat_map(
        functools.partial(
            user_examples,
            catalogue=catalogue,
            max_history=max_history,
            examples_per_user=examples_per_user,
        )
    )
    return ds.random_shuffle(seed=seed)


def user_windows(
    row: dict[str, Any],
    rows: dict[str, int],
    query_ids: dict[str, int],
    length: int,
    new_from: int = 0,
    user: int | None = None,
) -> list[dict[str, Any]]:
    """One user's training sequence cut into windows of at most ``length + 1`` items, from the
    most recent backwards, so that every position after the first is a target exactly once.

    Each window holds catalogue ``items`` rows, the ``queries`` typed with them (ids in
    ``query_ids``; 0 = none), their ``values`` and ``first``, the position of its first
    target. With ``new_from`` (an index into ``row["items"]``) only the items from there on
    are targets, read after everything before them (an update's new interactions). With
    ``user`` every window also holds ``user``: the user's place in the table of explicit
    negatives the training loop gets (-1: none; :func:`llmrec.data.events.negative_rows`).
    """
    keep = [t for t, item in enumerate(row["items"]) if item in rows]
    items = [rows[row["items"][t]] for t in keep]
    raw_queries = list(row["queries"]) if row.get("queries") is not None else []
    queries = [
        query_ids.get(raw_queries[t], 0) if t < len(raw_queries) and raw_queries[t] else 0
        for t in keep
    ]
    raw_values = list(row["values"]) if row.get("values") is not None else []
    values = [float(raw_values[t]) if t < len(raw_values) else 1.0 for t in keep]
    first_new = max(sum(1 for t in keep if t < new_from), 1)  # the first target, kept items
    out = []
    end = len(items)
    while end >= 2 and end - 1 >= first_new:
        start = max(0, end - length - 1)
        out.append(
            {
                "items": np.asarray(items[start:end], dtype=np.int64),
                "queries": np.asarray(queries[start:end], dtype=np.int64),
                "values": np.asarray(values[start:end], dtype=np.float32),
                "first": max(1, first_new - start),
                **({} if user is None else {"user": int(user)}),
            }
        )
        end -= length
    return out


def owned_windows(
    row: dict[str, Any],
    rows: dict[str, int],
    query_ids: dict[str, int],
    length: int,
    users: Mapping[str, int],
) -> list[dict[str, Any]]:
    """:func:`user_windows` of a row of the training sequences, each window holding
    ``user``: the row's user's place in ``users`` (-1: not there)."""
    owner = users.get(str(row["user_id"]), -1)
    return user_windows(row, rows, query_ids, length, user=owner)


def build_window_dataset(
    sequences_path: str | Path,
    catalogue: Catalogue,
    query_ids: dict[str, int],
    length: int,
    seed: int,
    users: Mapping[str, int] | None = None,
) -> ray.data.Dataset:
    """Read the training sequences with Ray Data and cut them into history windows (the
    sequential design's examples; see :func:`user_windows`), materialized once in the object
    store: the many short epochs of this design then read blocks instead of re-running the
    pipeline, and workers shuffle locally (``iter_batches(local_shuffle_buffer_size=...)``).
    ``users``: the users with explicit negatives, by their place in the negatives' table
    (every window then holds ``user``; see :func:`owned_windows`)."""
    import ray.data

    ds = ray.data.read_parquet(str(sequences_path))
    cut: Any = functools.partial(
        user_windows, rows=catalogue.index, query_ids=query_ids, length=length
    )
    if users:
        cut = functools.partial(
            owned_windows,
            rows=catalogue.index,
            query_ids=query_ids,
            length=length,
            users=dict(users),
        )
    ds = ds.flat_map(cut)
    return ds.random_shuffle(seed=seed).materialize()


def training_queries(sequences_path: str | Path) -> list[str]:
    """The distinct requests typed in the training sequences, sorted (the request vocabulary;
    id 0 is reserved for "no request")."""
    column = pq.read_table(str(sequences_path), columns=["queries"]).column("queries")
    flat = pc.list_flatten(column).drop_null()
    return sorted(q for q in set(flat.to_pylist()) if isinstance(q, str) and q.strip())


def item_log_frequency(sequences_path: str | Path, catalogue: Catalogue) -> np.ndarray:
    """Log share of each catalogue item (index order) among the training interactions.

    The popularity estimate of the in-batch softmax's sampling-bias correction
    (``train.logq_correction``); add-one smoothing keeps unseen and cold items finite.
    """
    items = pq.read_table(str(sequences_path), columns=["items"]).column("items")
    counts = pc.value_counts(pc.list_flatten(items)).to_pylist()
    freq = np.ones(len(catalogue), dtype=np.float64)
    index = catalogue.index
    for entry in counts:
        row = index.get(entry["values"])
        if row is not None:
            freq[row] += entry["counts"]
    return np.log(freq / freq.sum()).astype(np.float32)
