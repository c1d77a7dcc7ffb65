"""Ray Data: training examples from the training sequences, sharded to the workers.

Each user's training sequence becomes examples ``(user as text at time t -> item t)`` for the
most recent positions; the text of the user at time t is written from the items before t and
the query typed with item t. This module is the only Ray Data code in the library.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import ray.data

from llmrec.data.catalogue import Catalogue
from llmrec.data.text import ItemText, render_item, render_user


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


class ItemEmbedder:
    """Ray Data actor UDF: loads a bundle's scorer once, embeds item texts batch by batch."""

    def __init__(self, bundle_path: str, threads: int = 1) -> None:
        import torch

        from llmrec.bundle import ModelBundle

        torch.set_num_threads(threads)
        self.scorer = ModelBundle(Path(bundle_path)).load_scorer()
        if torch.cuda.is_available():
            self.scorer.to("cuda")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        texts = [
            render_item(ItemText(t, tuple(c), x))
            for t, c, x in zip(batch["title"], batch["categories"], batch["text"], strict=True)
        ]
        emb = self.scorer.encode(texts, kind="item", batch_size=len(texts)).numpy()
        return {"item_id": batch["item_id"], "embedding": list(emb)}


def embed_catalogue(
    items: ray.data.Dataset,
    bundle_path: str | Path,
    actors: int,
    batch_size: int = 256,
    threads_per_actor: int = 1,
    use_gpu: bool = False,
) -> ray.data.Dataset:
    """Batch inference over a catalogue in the item contract: ``item_id, embedding`` rows.

    Args:
        items: Rows with ``item_id, title, text, categories``.
        bundle_path: A model bundle folder visible to every node.
        actors: Size of the actor pool (one model replica each).
        batch_size: Items per forward pass.
        threads_per_actor: Torch threads per actor (CPU).
        use_gpu: One GPU per actor.
    """
    # Enough blocks for every actor to have work (a small in-memory table is one block), not
    # so many that scheduling dominates; count() reads metadata only.
    blocks = min(max(actors * 4, -(-items.count() // batch_size)), actors * 64)
    return items.repartition(blocks).map_batches(
        ItemEmbedder,
        fn_constructor_kwargs={"bundle_path": str(bundle_path), "threads": threads_per_actor},
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=0 if use_gpu else threads_per_actor,
        num_gpus=1 if use_gpu else 0,
    )
