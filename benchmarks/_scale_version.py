"""``scale.py``'s version of a size: the synthetic catalogue and log written as a servable
bundle in either design, item vectors as noisy copies of encoded item texts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from _synthetic import Synthetic


def noisy_copies(
    base: np.ndarray, genre_of_base: np.ndarray, genre: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """For every item, the row of ``base`` it copies: an encoded item of the same genre."""
    src = np.empty(len(genre), dtype=np.int64)
    for g in np.unique(genre):
        pool = np.flatnonzero(genre_of_base == g)
        at = np.flatnonzero(genre == g)
        src[at] = pool[rng.integers(0, len(pool), len(at))]
    return src


def with_noise(vectors: np.ndarray, rng: np.random.Generator, unit: bool) -> np.ndarray:
    """``vectors`` plus Gaussian noise as large as the vector (the text vectors: 0.05 a
    coordinate of a unit 384-d vector, ~0.98 of its length), re-normalised when ``unit``."""
    per_coordinate = 0.05 * np.sqrt(384 / vectors.shape[1])
    scale = np.linalg.norm(vectors, axis=1, keepdims=True) if not unit else 1.0
    out = vectors + per_coordinate * scale * rng.standard_normal(vectors.shape).astype(np.float32)
    if unit:
        out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)


def write_version(
    data: Synthetic, cf: Any, encoded: int, out: Path, scorer: Any, source: Path | None
) -> Path:
    """A servable bundle: the synthetic catalogue, embeddings, 200 users' logs, the hybrid.

    ``source`` (a sequential version's bundle) gives the design and its trained towers: the
    items' vectors are its item tower's (no ID part: items it never saw) and users its
    self-attention tower over their history; None writes the text design (the language
    model's own embeddings as item vectors, users' histories written as text)."""
    from dataclasses import replace

    import pyarrow as pa
    import torch
    from llmrec.config import Config
    from llmrec.data.catalogue import Catalogue
    from llmrec.modeling.towers import SequentialTowers, TextTowers, Towers
    from llmrec.ranking.hybrid import HybridScorer
    from llmrec.ranking.weights import HybridWeights
    from llmrec.registry.bundle import ModelBundle, write_bundle

    n = data.x.shape[1]
    catalogue = Catalogue.from_table(data.items)
    rng = np.random.default_rng(1)
    base_rows = rng.choice(n, min(encoded, n), replace=False)
    texts = catalogue.texts()  # once: rendering 1M items per encoded row took most of a 1M run
    base = scorer.encode([texts[i] for i in base_rows], kind="item").numpy()
    src = noisy_copies(base, data.genre[base_rows], data.genre, rng)
    text_emb = with_noise(base[src], rng, unit=True)  # the text-match term's vectors
    text_emb[base_rows] = base
    towers: Towers
    if source is None:  # the text design: its item vectors are the language model's own
        cfg = Config()
        cfg = replace(cfg, model=replace(cfg.model, architecture="text"))
        towers = TextTowers(scorer, catalogue.items, cfg.data.max_history)
        emb = text_emb
    else:
        version = ModelBundle(source)
        cfg = version.config
        trained = version.load_towers()
        assert isinstance(trained, SequentialTowers), "--model must be a sequential version"
        with torch.no_grad():  # the item tower of items it never saw: text alone
            own = trained.model.items(torch.from_numpy(base)).numpy()
        emb = with_noise(own[src], rng, unit=False)
        emb[base_rows] = own
        towers = SequentialTowers(trained.text, trained.model, catalogue.ids, emb)
    pop = np.asarray(data.x.sum(axis=0)).ravel()
    hybrid = HybridScorer(emb, HybridWeights(1.0, 1.0, 0.1), cf, pop)
    users = rng.choice(len(data.histories), 200, replace=False)
    ids = data.items.column("item_id").to_numpy(zero_copy_only=False)
    log = pa.table(
        {
            "user_id": [f"user{u}" for u in users for _ in data.histories[u][-50:]],
            "item_id": [ids[i] for u in users for i in data.histories[u][-50:]],
            "timestamp": [t for u in users for t in range(len(data.histories[u][-50:]))],
        }
    )
    # the text-match term's vectors: text_emb stands in for the base's embeddings of the texts
    write_bundle(
        out, cfg, towers, catalogue, torch.from_numpy(emb), log, "scale", hybrid,
        text_vectors=text_emb,
    )  # fmt: skip
    return out
