"""Ray Data: a catalogue embedded by a registered version's item tower, for the item index
(``jobs/build_index.py``). Ray is imported where the dataset is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmrec.data.text import ItemText
from llmrec.registry.bundle import ModelBundle

if TYPE_CHECKING:
    import ray.data


class ItemEmbedder:
    """Ray Data actor UDF: loads a bundle's towers once, embeds items batch by batch.

    Items the version was trained on keep their trained vectors (the sequential design adds
    an ID embedding the text alone cannot give); other items are embedded from their text.
    """

    def __init__(self, bundle_path: str, threads: int = 1) -> None:
        import torch

        torch.set_num_threads(threads)
        bundle = ModelBundle(Path(bundle_path))
        self.towers = bundle.load_towers()
        if torch.cuda.is_available():
            self.towers.to("cuda")
        self.known = {item_id: row for row, item_id in enumerate(bundle.catalogue.ids)}
        self.vectors = bundle.item_embeddings

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        ids = list(batch["item_id"])
        out = np.zeros((len(ids), self.vectors.shape[1]), dtype=np.float32)
        new = [i for i, item_id in enumerate(ids) if item_id not in self.known]
        for i, item_id in enumerate(ids):
            if item_id in self.known:
                out[i] = self.vectors[self.known[item_id]]
        if new:
            texts = [
                ItemText(batch["title"][i], tuple(batch["categories"][i]), batch["text"][i])
                for i in new
            ]
            out[new] = self.towers.encode_new_items(texts)
        return {"item_id": batch["item_id"], "embedding": list(out)}


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
    import ray.data

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
