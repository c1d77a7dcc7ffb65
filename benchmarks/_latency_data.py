"""The generated catalogues and requests of ``serve_latency.py``: titles from word lists,
one of ten genres each, item vectors from the version's item tower (the first ``encoded``
items) or noisy copies of those, users with 5-item histories, and requests that are a
5-item history plus a typed query.

Latency depends on the catalogue's size, not on how its vectors were made; encoding every
item of a 100,000-item catalogue would take ~17 minutes on a 2-core CPU.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pyarrow as pa
    from llmrec.modeling.towers import Towers

GENRES = [
    "Fantasy",
    "Mystery",
    "Romance",
    "Science Fiction",
    "History",
    "Travel",
    "Cooking",
    "Music",
    "Business",
    "Health & Fitness",
]
ADJ = [
    "Silent",
    "Golden",
    "Hidden",
    "Broken",
    "Northern",
    "Electric",
    "Quiet",
    "Burning",
    "Lost",
    "Velvet",
    "Iron",
    "Crimson",
    "Wandering",
    "Secret",
    "Endless",
    "Frozen",
]
NOUN = [
    "Kingdom",
    "Harbor",
    "Recipe",
    "Symphony",
    "Journey",
    "Empire",
    "Garden",
    "Signal",
    "Archive",
    "Frontier",
    "Market",
    "Lantern",
    "Orbit",
    "Cathedral",
    "River",
    "Ledger",
]
QUERIES = [
    "something light for the weekend",
    "a slow, thoughtful story",
    "dragons and magic",
    "learn to cook quickly",
    "true stories about explorers",
    "music that helps focus",
    "a detective with a twist",
    "startup lessons",
    "romance in a small town",
    "space battles and politics",
]
"""The typed queries of the requests, in turn."""


def catalogue_table(n: int, seed: int = 0) -> pa.Table:
    """``n`` items (``b000000``, ...): a title from the word lists, one genre as its
    category and a one-line text naming the genre (seeded)."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    genres = rng.integers(0, len(GENRES), n)
    titles = [
        f"{ADJ[a]} {NOUN[b]} {i}"
        for i, (a, b) in enumerate(zip(rng.integers(0, 16, n), rng.integers(0, 16, n), strict=True))
    ]
    return pa.table(
        {
            "item_id": [f"b{i:06d}" for i in range(n)],
            "title": titles,
            "text": [f"A {GENRES[g].lower()} title." for g in genres],
            "categories": [[GENRES[g]] for g in genres],
        }
    )


def make_bundle(
    source: Path, n: int, encoded: int, out: Path, towers: Towers, known_users: int = 1
) -> Path:
    """The source bundle with a generated ``n``-item catalogue, ``known_users`` users with
    5-item histories (``bench-u00000``, ...) and no hybrid part. ``encoded`` items get their
    vector from the version's item tower; the rest are noisy copies of those."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from llmrec.data.catalogue import Catalogue

    shutil.copytree(source, out, ignore=shutil.ignore_patterns("hybrid"))
    table = catalogue_table(n)
    cat = Catalogue.from_table(table)
    base = towers.encode_new_items([cat.items[i] for i in cat.ids[:encoded]])
    rng = np.random.default_rng(1)
    rest = base[rng.integers(0, len(base), n - len(base))]
    spread = 0.05 * float(np.linalg.norm(base, axis=1).mean()) / np.sqrt(base.shape[1])
    rest = rest + spread * rng.standard_normal(rest.shape).astype(np.float32)
    emb = np.concatenate([base, rest]).astype(np.float32)
    table = table.append_column(
        "embedding", pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    )
    pq.write_table(table, out / "items.parquet")
    ids = table["item_id"].to_pylist()
    picks = np.random.default_rng(4).integers(0, n, (known_users, 5))
    pd.DataFrame(
        {
            "user_id": [f"bench-u{u:05d}" for u in range(known_users)],
            "items": [[ids[i] for i in row] for row in picks],
        }
    ).to_parquet(out / "histories.parquet", index=False)
    return out


def bodies(n_items: int, count: int, seed: int = 2) -> list[dict[str, Any]]:
    """``count`` request bodies: 5 distinct items of an ``n_items`` catalogue as the
    history, one of :data:`QUERIES` as the typed query, ``k`` 10 (seeded)."""
    rng = np.random.default_rng(seed)
    return [
        {
            "history": [f"b{i:06d}" for i in rng.choice(n_items, 5, replace=False)],
            "query": QUERIES[j % len(QUERIES)],
            "k": 10,
        }
        for j in range(count)
    ]
