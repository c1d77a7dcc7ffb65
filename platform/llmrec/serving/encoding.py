"""What the query encoder (:class:`~llmrec.serving.recommender.QueryEncoder`) computes
beside the towers' own vectors: the device it runs on, the vector of a live update to an
item the version was trained on (it keeps what training learned), and the frozen base
model's embeddings of typed requests behind the hybrid's text-match term
(:mod:`llmrec.ranking.text_match`), laid out as columns after the user vectors.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from llmrec.modeling.scorer import LLMScorer
from llmrec.modeling.towers import Towers
from llmrec.registry.bundle import ModelBundle
from llmrec.serving.catalogue_state import LiveItem


def pick_device(device: str) -> str:
    """``auto``: CUDA when there is a GPU, else CPU."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def keep_learned(
    vectors: np.ndarray, items: Sequence[LiveItem], towers: Towers, bundle: ModelBundle
) -> np.ndarray:
    """``vectors`` (the item tower's, of ``items``' text) where an item the version was
    trained on keeps what training learned beyond its text: its trained vector minus the
    tower's vector of its old text (the sequential design's ID embedding) is added."""
    rows = bundle.catalogue.index
    trained = [k for k, i in enumerate(items) if i.item_id in rows]
    if trained:
        old = [bundle.catalogue.items[items[k].item_id] for k in trained]
        learned = bundle.item_embeddings[[rows[items[k].item_id] for k in trained]]
        vectors[trained] += learned - towers.encode_new_items(old)
    return vectors


def request_embeddings(base: LLMScorer, requests: Sequence[str | None]) -> dict[str, np.ndarray]:
    """The ``base`` model's embedding of each distinct typed request (blank ones and None
    are not embedded)."""
    texts = list(dict.fromkeys(r for r in requests if isinstance(r, str) and r.strip()))
    encoded = base.encode(texts, kind="query").numpy() if texts else None
    return {} if encoded is None else dict(zip(texts, encoded, strict=True))


def request_columns(
    by_text: dict[str, np.ndarray], requests: Sequence[str | None], dim: int
) -> np.ndarray:
    """``[len(requests), dim]`` the embedding of each row's request (``by_text``), zeros for
    a row without one."""
    text = np.zeros((len(requests), dim), dtype=np.float32)
    for row, request in enumerate(requests):
        if request in by_text:
            text[row] = by_text[request]
    return text
