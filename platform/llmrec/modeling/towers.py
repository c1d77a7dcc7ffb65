"""What every scorer design offers evaluation and serving: user vectors and item vectors.

A trained version scores ``user . item``. How a user becomes a vector differs by design (the
``text`` design writes the user as text for the language model; the ``sequential`` design runs
a self-attention model over the history's item vectors and adds the encoded request), so
offline evaluation, the serving encoder and the pyfunc model all go through :class:`Towers`
and never need to know which design a version uses.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from llmrec.data.text import ItemText, render_item, render_user
from llmrec.modeling.scorer import LLMScorer
from llmrec.modeling.sequential import SequentialRecommender, left_pad, save_trained


class Towers(Protocol):
    """A trained version's two towers over its own catalogue."""

    def encode_users(
        self,
        histories: Sequence[Sequence[str]],
        queries: Sequence[str | None],
        encoded: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """``[B, dim]`` user vectors from item-id histories (oldest first; ids the version
        does not know are skipped) and free-text requests (None: no request). ``encoded``:
        request texts this design's language model has embedded already (``kind="query"``),
        which it may use instead of encoding them again."""
        ...

    @property
    def text_is_base(self) -> bool:
        """Whether the language model encodes text as its base does (no trained adapter),
        so that its embeddings of requests are the base model's."""
        ...

    def encode_new_items(self, items: Sequence[ItemText]) -> np.ndarray:
        """``[N, dim]`` vectors of items from their text alone (items added after training)."""
        ...

    def add_items(
        self, item_ids: Sequence[str], items: Sequence[ItemText], vectors: np.ndarray
    ) -> None:
        """Items added or updated while serving: histories that hold them are read through
        ``vectors`` (or ``items``' text) from now on."""
        ...

    @property
    def scorer(self) -> LLMScorer:
        """The language model with its adapter (and tokenizer)."""
        ...

    def save(self, directory: str | Path) -> None:
        """Write the trained tensors (a bundle's ``scorer/`` folder)."""
        ...

    def to(self, device: str | torch.device) -> Towers:
        """Move the models to ``device`` (answers stay NumPy on the CPU)."""
        ...

    def use_scorer(self, scorer: LLMScorer) -> None:
        """Encode text with ``scorer`` from now on (e.g. an int8 copy of the trained one)."""
        ...


class TextTowers:
    """The ``text`` design: one language-model tower reads users and items written as text.

    Args:
        scorer: The language model with its trained adapter.
        items: The catalogue by item id (to write histories as text).
        max_history: How many recent items write the user's text.
    """

    def __init__(self, scorer: LLMScorer, items: Mapping[str, ItemText], max_history: int) -> None:
        self.scorer = scorer
        self.items = items
        self.max_history = max_history

    @property
    def text_is_base(self) -> bool:
        return False  # the adapter is what this design trains

    def encode_users(
        self,
        histories: Sequence[Sequence[str]],
        queries: Sequence[str | None],
        encoded: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """(``encoded`` is not used: a user's text holds the history too.)"""
        texts = [
            render_user(list(h), self.items, q, self.max_history)
            for h, q in zip(histories, queries, strict=True)
        ]
        batch = max(min(len(texts), 64), 1)
        return self.scorer.encode(texts, kind="query", batch_size=batch).numpy()

    def encode_new_items(self, items: Sequence[ItemText]) -> np.ndarray:
        return self.scorer.encode([render_item(i) for i in items], kind="item").numpy()

    def add_items(
        self, item_ids: Sequence[str], items: Sequence[ItemText], vectors: np.ndarray
    ) -> None:
        """The user's text names these items from now on (a copy: the catalogue stays)."""
        self.items = {**self.items, **dict(zip(item_ids, items, strict=True))}

    def save(self, directory: str | Path) -> None:
        """The adapter and temperature (``scorer/`` of a bundle)."""
        self.scorer.save(directory)

    def to(self, device: str | torch.device) -> TextTowers:
        self.scorer.to(device)
        return self

    def use_scorer(self, scorer: LLMScorer) -> None:
        self.scorer = scorer


class SequentialTowers:
    """The ``sequential`` design: item vectors (text + ID) and a self-attention user tower.

    Args:
        text: The language model (encodes requests and the text of new items).
        model: The trained sequential recommender.
        item_ids: The version's catalogue, in the order of ``item_vectors``.
        item_vectors: ``[N, dim]`` the trained item vectors (the bundle's embeddings).
        tuned_text: Whether the language model's adapter was trained (and must be saved).
    """

    def __init__(
        self,
        text: LLMScorer,
        model: SequentialRecommender,
        item_ids: Sequence[str],
        item_vectors: np.ndarray,
        tuned_text: bool = False,
    ) -> None:
        self.text = text
        self.model = model.eval()
        self.rows = {item_id: row for row, item_id in enumerate(item_ids)}
        self.vectors = torch.as_tensor(np.asarray(item_vectors, dtype=np.float32))
        self.tuned_text = tuned_text

    @property
    def scorer(self) -> LLMScorer:
        """The language model (what the text design calls its scorer)."""
        return self.text

    @property
    def text_is_base(self) -> bool:
        return not self.tuned_text

    def save(self, directory: str | Path) -> None:
        """``sequential.safetensors``: the model, and the text adapter when it was tuned."""
        save_trained(directory, self.model, self.text.state() if self.tuned_text else None)

    def to(self, device: str | torch.device) -> SequentialTowers:
        self.text.to(device)
        self.model.to(device)
        self.vectors = self.vectors.to(device)
        return self

    def use_scorer(self, scorer: LLMScorer) -> None:
        self.text = scorer

    @torch.no_grad()
    def encode_users(
        self,
        histories: Sequence[Sequence[str]],
        queries: Sequence[str | None],
        encoded: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        rows = [[self.rows[i] for i in h if i in self.rows] for h in histories]
        asked = [i for i, q in enumerate(queries) if isinstance(q, str) and q.strip()]
        query = None
        has_query = torch.zeros(len(rows), dtype=torch.bool)
        if asked:  # each distinct text once (explanations repeat a request per variant)
            texts = list(dict.fromkeys(str(queries[i]) for i in asked))
            known = encoded or {}
            todo = [t for t in texts if t not in known]
            fresh = self.text.encode(todo, kind="query") if todo else None
            by_text = {t: torch.as_tensor(np.asarray(known[t])) for t in texts if t in known}
            if fresh is not None:
                by_text.update(zip(todo, fresh, strict=True))
            vectors = torch.stack([by_text[t] for t in texts]).float()
            where = {t: n for n, t in enumerate(texts)}
            query = torch.zeros(len(rows), vectors.shape[1])
            query[asked] = vectors[[where[str(queries[i])] for i in asked]]
            has_query[asked] = True
        return user_vectors(self.model, self.vectors, rows, query, has_query).numpy()

    @torch.no_grad()
    def encode_new_items(self, items: Sequence[ItemText]) -> np.ndarray:
        text = self.text.encode([render_item(i) for i in items], kind="item")
        return self.model.items(text.to(self.vectors.device)).cpu().numpy()

    def add_items(
        self, item_ids: Sequence[str], items: Sequence[ItemText], vectors: np.ndarray
    ) -> None:
        """Histories read these items through ``vectors`` (known ids: replaced)."""
        vecs = torch.as_tensor(np.asarray(vectors, dtype=np.float32)).to(self.vectors.device)
        new = [i for i, item_id in enumerate(item_ids) if item_id not in self.rows]
        old = [i for i, item_id in enumerate(item_ids) if item_id in self.rows]
        if old:  # a copy: the array may be the bundle's own
            self.vectors = self.vectors.clone()
            self.vectors[[self.rows[item_ids[i]] for i in old]] = vecs[old]
        if new:  # the vectors first: a thread reading rows never finds a row not there
            start = len(self.vectors)
            self.vectors = torch.cat([self.vectors, vecs[new]])
            self.rows.update({item_ids[i]: start + k for k, i in enumerate(new)})


def user_vectors(
    model: SequentialRecommender,
    item_vectors: torch.Tensor,
    histories: Sequence[Sequence[int]],
    query: torch.Tensor | None = None,
    has_query: torch.Tensor | None = None,
    batch_size: int = 512,
) -> torch.Tensor:
    """``[B, dim]`` user vectors from histories given as rows of ``item_vectors``.

    Users are batched by history length (each batch padded to its own longest history, not
    to ``seq_len``), the output in the order given."""
    model.eval()
    length = model.cfg.seq_len
    device = item_vectors.device
    order = np.argsort([min(len(h), length) for h in histories], kind="stable")
    out = torch.empty(len(histories), model.cfg.dim)
    with torch.no_grad():
        for start in range(0, len(histories), batch_size):
            rows = torch.as_tensor(order[start : start + batch_size], dtype=torch.long)
            idx, pad = left_pad([list(histories[int(r)]) for r in rows], length, device)
            q = None if query is None else query[rows].to(device)
            hq = None if has_query is None else has_query[rows].to(device)
            out[rows] = model.users(item_vectors[idx], pad, q, hq).float().cpu()
    return out


__all__ = ["SequentialTowers", "TextTowers", "Towers", "user_vectors"]
