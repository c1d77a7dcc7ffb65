"""Ray Data: training examples from the training sequences, sharded to the workers.

Each user's training sequence becomes examples ``(user as text at time t -> item t)`` for the
most recent positions; the text of the user at time t is written from the items before t and
the query typed with item t. This module is the only Ray Data code in the library.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import ray.data

from llmrec.data.catalogue import Catalogue
from llmrec.data.text import render_item, render_user


def user_examples(
    row: dict[str, Any], catalogue: Catalogue, max_history: int, examples_per_user: int
) -> list[dict[str, Any]]:
    """Training examples of one user (one row of ``train_sequences.parquet``)."""
    items = list(row["items"])
    queries = list(row["queries"])
    positions = list(range(1, len(items)))
    if examples_per_user > 0:
        positions = positions[-examples_per_user:]
    index = catalogue.index
    return [
        {
            "query_text": render_user(items[:t], catalogue.items, queries[t], max_history),
            "item_text": render_item(catalogue.items[items[t]]),
            "item_index": index[items[t]],
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
