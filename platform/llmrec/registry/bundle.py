"""The model bundle: everything a registered version needs to serve, in one folder.

Layout::

    config.yaml          the full training config (base model reference included)
    scorer/              text design: peft adapter (safetensors) and temperature;
                         sequential design: sequential.safetensors (the user tower, the item
                         projection and ID embeddings, and a tuned text adapter if any)
    tokenizer/           the tokenizer files
    items.parquet        item_id, title, text, categories, embedding (the item tower's
                         vectors, catalogue order), and the catalogue's attribute columns
                         (provider, ...)
    histories.parquet    user_id, items (time order): what the user has seen
    hybrid/              hybrid weights (tuned on validation), the CF model in compact form
                         (dense/sparse item-item matrix or item factors), popularity,
                         transitions, and text_vectors.npy: the frozen base model's
                         embeddings of the items' texts (the text-match term; versions
                         written before it have none and serve without it)
    index/               optional: a prebuilt FAISS item index (index.faiss, index.json)
    model_card.md        what the model is, on what data, how well it does

Training writes it (:func:`write_bundle`); the registry logs it as the artifacts of an MLflow
pyfunc model; serving and the pyfunc model read it back (:class:`ModelBundle`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
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
from llmrec.modeling.sequential import SequentialRecommender, load_trained, split_state
from llmrec.modeling.towers import SequentialTowers, TextTowers, Towers
from llmrec.ranking.hybrid import TEXT_FILE, WEIGHTS_FILE, HybridScorer
from llmrec.ranking.index import INDEX_FILE, FaissIndex
from llmrec.ranking.weights import weights_json

HYBRID_DIR = "hybrid"
INDEX_DIR = "index"
EMB = "embedding"
ROW_GROUP = 16_384
"""Items per row group of ``items.parquet`` (a million-item catalogue's float32 embeddings
decoded whole would take gigabytes while the ranker loads them)."""


def write_bundle(
    directory: str | Path,
    cfg: Config,
    towers: Towers,
    catalogue: Catalogue,
    item_embeddings: torch.Tensor,
    interactions: pa.Table,
    model_card: str,
    hybrid: HybridScorer | None = None,
    hybrid_meta: dict[str, object] | None = None,
    text_vectors: np.ndarray | None = None,
) -> Path:
    """Write a bundle for the trained ``towers`` and the catalogue embedded with them (and the
    hybrid scorer over that catalogue, when there is one).

    With a hybrid, the frozen base model's embeddings of the items' texts are stored with it
    (its text-match term, :meth:`HybridScorer.with_text`): ``text_vectors`` when given
    (catalogue order), else computed here (one pass of the base over the catalogue)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yaml").write_text(yaml.safe_dump(_plain(cfg.to_dict()), sort_keys=False))
    towers.save(d / "scorer")
    towers.scorer.tokenizer.save_pretrained(str(d / "tokenizer"))
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
    # row groups of ROW_GROUP items: a reader of the embeddings decodes one group at a time
    pq.write_table(items, d / "items.parquet", row_group_size=ROW_GROUP)
    df = interactions.select(["user_id", "item_id", "timestamp"]).to_pandas()
    df = df.sort_values(["user_id", "timestamp"], kind="stable")
    histories = df.groupby("user_id", sort=True)["item_id"].agg(list).reset_index(name="items")
    histories.to_parquet(d / "histories.parquet", index=False)
    if hybrid is not None:
        if text_vectors is None:
            base = towers.scorer if towers.text_is_base else fresh_base(towers.scorer)
            text_vectors = item_text_vectors(base, catalogue.texts())
        hybrid = hybrid.with_text(text_vectors)
        hybrid.save(d / HYBRID_DIR, hybrid_meta)
    (d / "model_card.md").write_text(model_card)
    return d


def fresh_base(scorer: LLMScorer) -> LLMScorer:
    """The base model of ``scorer`` as shipped (a fresh adapter is the identity), with its
    tokenizer, on its device."""
    return LLMScorer(scorer.cfg, tokenizer=scorer.tokenizer).to(scorer.device).eval()


def item_text_vectors(base: LLMScorer, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
    """``[len(texts), hidden]`` the base model's normalised embeddings of item texts (as
    the item tower reads them: ``kind="item"``), float32."""
    out = base.encode(list(texts), kind="item", batch_size=batch_size)
    return out.numpy().astype(np.float32)


def has_text_match(directory: str | Path) -> bool:
    """Whether the bundle in ``directory`` holds the text-match term's item vectors."""
    return (Path(directory) / HYBRID_DIR / TEXT_FILE).exists()


def add_text_match(directory: str | Path) -> Path:
    """Give a bundle written before the text-match term what :func:`write_bundle` now
    writes: its items' base text vectors, and the term's weight in its request weights
    (:data:`~llmrec.ranking.text_match.TEXT_WEIGHT`). For a copy of a registered version
    (registered versions are immutable); returns the vectors' file."""
    bundle = ModelBundle(Path(directory))
    vectors = item_text_vectors(bundle.load_base_scorer(), bundle.catalogue.texts())
    hybrid = bundle.hybrid.with_text(vectors)
    d = bundle.path / HYBRID_DIR
    if not (d / WEIGHTS_FILE).exists():  # the LLM score alone: a hybrid of that one part
        hybrid.save(d)
        return d / TEXT_FILE
    np.save(d / TEXT_FILE, vectors)
    meta = json.loads((d / WEIGHTS_FILE).read_text())
    meta.update(weights_json(hybrid.weights, hybrid.request_weights))
    (d / WEIGHTS_FILE).write_text(json.dumps(meta, indent=2))
    return d / TEXT_FILE


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
        """The catalogue columns, without the embeddings (read apart, so that a large
        catalogue's vectors are not held twice)."""
        names = pq.read_schema(self.path / "items.parquet").names
        return pq.read_table(self.path / "items.parquet", columns=[c for c in names if c != EMB])

    @cached_property
    def catalogue(self) -> Catalogue:
        return Catalogue.from_table(self._items)

    @cached_property
    def item_embeddings(self) -> np.ndarray:
        return self.read_embeddings(np.float32)

    def read_embeddings(self, dtype: type = np.float32) -> np.ndarray:
        """``[items, dim]`` item embeddings as ``dtype`` (float16 halves a large catalogue);
        read anew on each call."""
        # batch by batch into the result, in this thread and without pre-buffering: a 1M-item
        # catalogue's float32 column is never held whole, and decoding threads' heaps do not
        # keep what they freed (1.6 GB more resident at 1M items when they did)
        items = pq.ParquetFile(self.path / "items.parquet", pre_buffer=False)
        dim = items.schema_arrow.field(EMB).type.list_size
        out = np.empty((items.metadata.num_rows, dim), dtype=dtype)
        at = 0
        for batch in items.iter_batches(batch_size=ROW_GROUP, columns=[EMB], use_threads=False):
            n = batch.num_rows
            out[at : at + n] = batch.column(0).flatten().to_numpy().reshape(n, dim)
            at += n
        pa.default_memory_pool().release_unused()
        return out

    @cached_property
    def histories(self) -> dict[str, list[str]]:
        df = pd.read_parquet(self.path / "histories.parquet")
        return {u: list(items) for u, items in zip(df["user_id"], df["items"], strict=True)}

    @cached_property
    def hybrid(self) -> HybridScorer:
        """The version's hybrid scorer; the LLM score alone for bundles without one."""
        return self.load_hybrid(self.item_embeddings)

    @property
    def has_text_match(self) -> bool:
        """Whether the version has the text-match term (written since it exists)."""
        return has_text_match(self.path)

    @cached_property
    def text_match_dim(self) -> int:
        """Width of the text-match vectors (0: none)."""
        if not self.has_text_match:
            return 0
        return int(np.load(self.path / HYBRID_DIR / TEXT_FILE, mmap_mode="r").shape[1])

    def load_hybrid(self, item_embeddings: np.ndarray) -> HybridScorer:
        """The hybrid scorer over ``item_embeddings`` (e.g. a float16 copy), not cached."""
        if (self.path / HYBRID_DIR / WEIGHTS_FILE).exists():
            return HybridScorer.load(self.path / HYBRID_DIR, item_embeddings)
        return HybridScorer(item_embeddings)

    def prebuilt_index(self, kind: str, ef_search: int = 128) -> FaissIndex | None:
        """The ``kind`` item index shipped in ``index/`` (``jobs/build_index.py --index``),
        when it holds every item; None otherwise (the ranker builds one)."""
        meta_path = self.path / INDEX_DIR / "index.json"
        if kind == "exact" or not meta_path.exists():
            return None
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") != kind or meta.get("items") != len(self.catalogue):
            return None
        return FaissIndex.load(self.path / INDEX_DIR / INDEX_FILE, kind, ef_search)

    def load_scorer(self) -> LLMScorer:
        """Base model (from the config's reference) + this bundle's adapter and tokenizer."""
        tokenizer = AutoTokenizer.from_pretrained(str(self.path / "tokenizer"))
        scorer = LLMScorer(self.config.model, tokenizer=tokenizer)
        if self.config.model.architecture == "text":
            scorer.load_trained(self.path / "scorer")
        else:
            _, text = split_state(load_trained(self.path / "scorer"))
            if text:
                scorer.load_state(text)
        return scorer.eval()

    def load_base_scorer(self) -> LLMScorer:
        """The frozen base model with this bundle's tokenizer, no trained adapter (a fresh
        one is the identity): what the text-match term embeds texts with."""
        tokenizer = AutoTokenizer.from_pretrained(str(self.path / "tokenizer"))
        return LLMScorer(self.config.model, tokenizer=tokenizer).eval()

    def load_towers(self) -> Towers:
        """The version's user and item towers (whatever its design), ready to encode."""
        cfg = self.config
        scorer = self.load_scorer()
        if cfg.model.architecture == "text":
            return TextTowers(scorer, self.catalogue.items, cfg.data.max_history)
        model_state, text = split_state(load_trained(self.path / "scorer"))
        model = SequentialRecommender(
            cfg.model,
            int(model_state["item_text.weight"].shape[1]),
            int(model_state["item_ids.weight"].shape[0]) if "item_ids.weight" in model_state else 0,
        )
        model.load_tensors(model_state)
        return SequentialTowers(
            scorer, model, self.catalogue.ids, self.item_embeddings, tuned_text=bool(text)
        )


def _plain(value: object) -> object:
    """Tuples to lists, so that the YAML is plain and loads back into the same config."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


__all__ = [
    "ModelBundle",
    "add_text_match",
    "fresh_base",
    "has_text_match",
    "item_text_vectors",
    "write_bundle",
]
