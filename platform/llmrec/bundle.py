"""The model bundle: everything a registered version needs to serve, in one folder.

Layout::

    config.yaml          the full training config (base model reference included)
    scorer/              peft adapter (safetensors), temperature, pooling
    tokenizer/           the tokenizer files
    items.parquet        item_id, title, text, categories, embedding (catalogue order),
                         and the catalogue's attribute columns (provider, ...)
    histories.parquet    user_id, items (time order): what the user has seen
    hybrid/              hybrid weights (tuned on validation), CF item-item matrix, popularity
    model_card.md        what the model is, on what data, how well it does

Training writes it (:func:`write_bundle`); the registry logs it as the artifacts of an MLflow
pyfunc model; serving and the pyfunc model read it back (:class:`ModelBundle`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml
from transformers import AutoTokenizer

from llmrec.config import Config, config_from_dict
from llmrec.data.catalogue import Catalogue
from llmrec.modeling.scorer import LLMScorer
from llmrec.ranking.hybrid import WEIGHTS_FILE, HybridScorer

HYBRID_DIR = "hybrid"


def write_bundle(
    directory: str | Path,
    cfg: Config,
    scorer: LLMScorer,
    catalogue: Catalogue,
    item_embeddings: torch.Tensor,
    interactions: pa.Table,
    model_card: str,
    hybrid: HybridScorer | None = None,
    hybrid_meta: dict[str, object] | None = None,
) -> Path:
    """Write a bundle for ``scorer`` and the catalogue embedded with it (and the hybrid
    scorer over that catalogue, when there is one)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False))
    scorer.save(d / "scorer")
    scorer.tokenizer.save_pretrained(str(d / "tokenizer"))
    emb = item_embeddings.numpy().astype(np.float32)
    items = pa.table(
        {
            "item_id": list(catalogue.ids),
            "title": [catalogue.items[i].title for i in catalogue.ids],
            "text": [catalogue.items[i].text for i in catalogue.ids],
            "categories": [list(catalogue.items[i].categories) for i in catalogue.ids],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1]),
            # attribute columns (provider, ...): what per-request caps (max_per) read
            **{
                name: pa.array(
                    [list(by_item[i]) for i in catalogue.ids], type=pa.list_(pa.string())
                )
                for name, by_item in catalogue.attributes.items()
            },
        }
    )
    pq.write_table(items, d / "items.parquet")
    df = interactions.select(["user_id", "item_id", "timestamp"]).to_pandas()
    df = df.sort_values(["user_id", "timestamp"], kind="stable")
    histories = df.groupby("user_id", sort=True)["item_id"].agg(list).reset_index(name="items")
    histories.to_parquet(d / "histories.parquet", index=False)
    if hybrid is not None:
        hybrid.save(d / HYBRID_DIR, hybrid_meta)
    (d / "model_card.md").write_text(model_card)
    return d


@dataclass
class ModelBundle:
    """A bundle folder opened for reading; parts load lazily, each at most once."""

    path: Path

    @cached_property
    def config(self) -> Config:
        return config_from_dict(
            yaml.safe_load((self.path / "config.yaml").read_text()),
            source=str(self.path / "config.yaml"),
        )

    @cached_property
    def _items(self) -> pa.Table:
        return pq.read_table(self.path / "items.parquet")

    @cached_property
    def catalogue(self) -> Catalogue:
        return Catalogue.from_table(self._items)

    @cached_property
    def item_embeddings(self) -> np.ndarray:
        col = self._items.column("embedding").combine_chunks()
        dim = col.type.list_size
        return col.flatten().to_numpy().reshape(-1, dim).astype(np.float32)

    @cached_property
    def histories(self) -> dict[str, list[str]]:
        df = pd.read_parquet(self.path / "histories.parquet")
        return {u: list(items) for u, items in zip(df["user_id"], df["items"], strict=True)}

    @cached_property
    def hybrid(self) -> HybridScorer:
        """The version's hybrid scorer; the LLM score alone for bundles without one."""
        if (self.path / HYBRID_DIR / WEIGHTS_FILE).exists():
            return HybridScorer.load(self.path / HYBRID_DIR, self.item_embeddings)
        return HybridScorer(self.item_embeddings)

    def load_scorer(self) -> LLMScorer:
        """Base model (from the config's reference) + this bundle's adapter and tokenizer."""
        tokenizer = AutoTokenizer.from_pretrained(str(self.path / "tokenizer"))
        scorer = LLMScorer(self.config.model, tokenizer=tokenizer)
        scorer.load_trained(self.path / "scorer")
        return scorer.eval()


def _plain(value: object) -> object:
    """Tuples to lists, so that the YAML is plain and loads back into the same config."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


__all__ = ["ModelBundle", "write_bundle"]
