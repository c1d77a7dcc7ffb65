"""A synthetic catalogue and interaction log with realistic skew, for the scale benchmark.

- Items: the demo's genres and vocabulary (``llmrec.data.demo.GENRES``), a title, a one-line
  text and one genre each; popularity follows Zipf's law (weight ``1 / rank^s``, ranks
  shuffled so that popularity does not follow the item id).
- Users: activity follows a power law (Pareto tail, at least ``min_events``, capped), each
  user loves one or two genres: 80% of their interactions are drawn from those genres (by
  popularity), the rest from the whole catalogue. So the log has both a popularity head and
  the co-occurrence structure collaborative filtering learns from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.sparse as sp
from llmrec.data.demo import GENRES


@dataclass
class Synthetic:
    items: pa.Table
    """item_id, title, text, categories (the items contract)."""
    genre: np.ndarray
    """``[items]`` genre index of each item."""
    x: sp.csr_matrix
    """Binary ``users x items`` interactions (repeats counted once)."""
    histories: list[np.ndarray]
    """Per user, item rows in time order (repeats kept)."""

    @property
    def interactions(self) -> int:
        return int(sum(len(h) for h in self.histories))


def generate(
    num_items: int,
    num_interactions: int,
    seed: int = 0,
    zipf: float = 1.0,
    activity_tail: float = 1.3,
    min_events: int = 5,
    max_events: int = 2000,
) -> Synthetic:
    """Items and a log of about ``num_interactions`` events (seeded)."""
    rng = np.random.default_rng(seed)
    names = list(GENRES)
    genre = rng.integers(0, len(names), num_items)
    weight = 1.0 / (rng.permutation(num_items) + 1.0) ** zipf
    # users until the activity adds up to the wanted number of interactions
    acts: list[np.ndarray] = []
    total = 0
    while total < num_interactions:
        a = np.minimum(min_events * (1 - rng.random(65536)) ** (-1 / activity_tail), max_events)
        a = a.astype(np.int64)
        acts.append(a)
        total += int(a.sum())
    activity = np.concatenate(acts)
    activity = activity[: int(np.searchsorted(np.cumsum(activity), num_interactions)) + 1]
    users = len(activity)
    loves = rng.integers(0, len(names), (users, 2))
    single = rng.random(users) < 0.5  # half the users love one genre only
    loves[single, 1] = loves[single, 0]
    owner = np.repeat(np.arange(users), activity)
    pick = loves[owner, rng.integers(0, 2, len(owner))]
    explore = rng.random(len(owner)) < 0.2
    pick[explore] = -1
    rows = np.empty(len(owner), dtype=np.int64)
    for g in [-1, *range(len(names))]:
        at = np.flatnonzero(pick == g)
        pool = np.arange(num_items) if g < 0 else np.flatnonzero(genre == g)
        cum = np.cumsum(weight[pool])
        rows[at] = pool[np.searchsorted(cum, rng.random(len(at)) * cum[-1])]
    return _assemble(_items(rng, genre, names), genre, rows, activity)


def _assemble(
    items: pa.Table, genre: np.ndarray, rows: np.ndarray, activity: np.ndarray
) -> Synthetic:
    """The log's matrix and histories from the item rows in user order and each user's count."""
    users, num_items = len(activity), len(genre)
    owner = np.repeat(np.arange(users), activity)
    x = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (owner, rows)), shape=(users, num_items)
    )
    x.data[:] = 1.0
    bounds = np.concatenate([[0], np.cumsum(activity)])
    histories = [rows[bounds[u] : bounds[u + 1]] for u in range(users)]
    return Synthetic(items, genre, x, histories)


def cached(folder: Path | None, num_items: int, num_interactions: int, seed: int = 0) -> Synthetic:
    """:func:`generate`, kept under ``folder/items-N_events-E_seed-S`` and read back on the
    next run with the same size, events and seed (``None``: always generated)."""
    if folder is None:
        return generate(num_items, num_interactions, seed)
    home = folder / f"items-{num_items}_events-{num_interactions}_seed-{seed}"
    if (home / "log.npz").exists():
        log = np.load(home / "log.npz")
        return _assemble(
            pq.read_table(home / "items.parquet"), log["genre"], log["rows"], log["activity"]
        )
    data = generate(num_items, num_interactions, seed)
    home.mkdir(parents=True, exist_ok=True)
    pq.write_table(data.items, home / "items.parquet")
    activity = np.array([len(h) for h in data.histories], dtype=np.int64)
    rows = np.concatenate(data.histories) if data.histories else np.zeros(0, np.int64)
    np.savez(home / "log.tmp.npz", genre=data.genre, rows=rows, activity=activity)
    (home / "log.tmp.npz").replace(home / "log.npz")  # complete or absent
    return data


def _items(rng: np.random.Generator, genre: np.ndarray, names: list[str]) -> pa.Table:
    n = len(genre)
    adj = rng.integers(0, 6, n)
    noun = rng.integers(0, 6, n)
    topic = rng.integers(0, 4, n)
    titles, texts = [], []
    for i in range(n):
        vocab = GENRES[names[genre[i]]]
        titles.append(f"{vocab['adj'][adj[i]]} {vocab['noun'][noun[i]]} {i}")
        texts.append(f"A {names[genre[i]].lower()} title about {vocab['topic'][topic[i]]}.")
    return pa.table(
        {
            "item_id": [f"s{i:07d}" for i in range(n)],
            "title": titles,
            "text": texts,
            "categories": [[names[g]] for g in genre],
        }
    )
