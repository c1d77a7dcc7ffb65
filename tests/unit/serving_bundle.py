"""A tiny but real model version for serving tests without Ray: a random 2-layer BERT, a
small sequential user tower, MovieLens-style titles with years and genres, and a hybrid
with an EASE term, popularity and transitions, other weights for typed requests and the
text-match term (written by ``write_bundle``, read back by ``ModelBundle``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from llmrec.config import load_config
from llmrec.data.catalogue import Catalogue
from llmrec.modeling.baselines import interaction_matrix
from llmrec.modeling.cf import CFParams, fit_cf
from llmrec.modeling.scorer import LLMScorer
from llmrec.modeling.sequential import SequentialRecommender
from llmrec.modeling.towers import SequentialTowers
from llmrec.modeling.transitions import Transitions
from llmrec.ranking.hybrid import HybridScorer
from llmrec.ranking.weights import HybridWeights
from llmrec.registry.bundle import ModelBundle, write_bundle

GENRES = ["Mystery", "Romance", "Comedy", "Horror", "Sci-Fi"]
NAMES = [
    "Toy Story",
    "Heat",
    "Usual Suspects, The",
    "Hidden Clue",
    "Summer Letters",
    "Laughing Matters",
    "Night Terror",
    "Star Drift",
    "Crimson Alibi",
    "Moonlit Waltz",
]
N = 40


def item_table() -> pa.Table:
    """40 items: genre ``i % 5`` (and Romance too for every 7th), year 1975 + i."""
    titles, cats = [], []
    for i in range(N):
        name = NAMES[i] if i < len(NAMES) else f"Film Number {i}"
        titles.append(f"{name} ({1975 + i})")
        genres = [GENRES[i % 5]]
        if i % 7 == 3 and "Romance" not in genres:
            genres.append("Romance")
        cats.append(genres)
    return pa.table(
        {
            "item_id": [f"m{i:02d}" for i in range(N)],
            "title": titles,
            "text": [f"A {c[0].lower()} film." for c in cats],
            "categories": cats,
        }
    )


def histories() -> dict[str, list[str]]:
    """Users who mostly watch one genre (so EASE has structure)."""
    rng = np.random.default_rng(0)
    out = {}
    for u in range(30):
        genre = u % 5
        liked = [i for i in range(N) if i % 5 == genre]
        picks = list(rng.choice(liked, size=5, replace=False))
        picks += list(rng.choice(N, size=2, replace=False))
        out[f"u{u:02d}"] = [f"m{i:02d}" for i in dict.fromkeys(int(p) for p in picks)]
    return out


def make_bundle(
    root: Path, tiny_base: str, cf_kind: str = "ease", tuned_text: bool = False
) -> ModelBundle:
    """Write and open the version (``cf_kind``: ``ease``, ``sparse`` or ``als``;
    ``tuned_text``: its language model's adapter was trained, so that it no longer encodes
    as the base does). ``write_bundle`` gives it the text-match term."""
    torch.manual_seed(0)
    cfg = load_config(
        None,
        [
            f"model.base={tiny_base}",
            "model.dim=16",
            "model.seq_len=6",
            "model.layers=1",
            "model.heads=2",
            "model.max_query_tokens=16",
            "model.max_item_tokens=16",
        ],
    )
    catalogue = Catalogue.from_table(item_table())
    text = LLMScorer(cfg.model).eval()
    if tuned_text:  # a trained adapter: LoRA's B matrices away from their zero start
        with torch.no_grad():
            for name, weight in text.model.named_parameters():
                if "lora_B" in name:
                    weight.normal_(0, 0.5)
    model = SequentialRecommender(cfg.model, text_dim=32, num_items=N).eval()
    with torch.no_grad():
        vectors = model.items(
            text.encode(catalogue.texts(), kind="item"), torch.ones(N, dtype=torch.bool)
        )
    towers = SequentialTowers(text, model, catalogue.ids, vectors.numpy(), tuned_text)
    logs = histories()
    rows = [(u, i, t) for u, items in logs.items() for t, i in enumerate(items)]
    interactions = pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": pa.array([r[2] for r in rows], pa.int64()),
        }
    )
    index = catalogue.index
    x = interaction_matrix([[index[i] for i in h] for h in logs.values()], N)
    cf = fit_cf(cf_kind, x, CFParams(ease_lambda=5.0, neighbours=10, factors=4, iterations=3))
    counts = np.asarray(x.sum(axis=0)).ravel() + 1.0
    # typed requests get other weights than history alone (as ``request_weights`` may)
    request = HybridWeights(1.5, 0.25, 0.25, 0.1)
    chain = Transitions.fit([[index[i] for i in h] for h in logs.values()], N)
    weights = HybridWeights(1.0, 0.5, 0.25, 0.2)
    hybrid = HybridScorer(vectors.numpy(), weights, cf, counts, request, chain)
    path = write_bundle(
        root, cfg, towers, catalogue, vectors, interactions, "test card", hybrid, {}
    )
    return ModelBundle(path)
