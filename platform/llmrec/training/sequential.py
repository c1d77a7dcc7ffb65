"""What the sequential design trains: the loss of a batch of history windows, evaluation.

Plain PyTorch (the Ray Train loop in :mod:`llmrec.training.sequential_loop` drives it), so the
objective is tested without a cluster.

A training example is a window of one user's history (at most ``seq_len + 1`` items, oldest
first); the user tower's output at every position is scored against the next item, over the
whole catalogue (full softmax) or ``train.negatives`` sampled items. With a text encoder to
tune (``model.text_tuning: adapter``) the batch's texts are re-encoded with gradient, the rest
of the catalogue comes from a cache that those re-encodings keep up to date
(:class:`llmrec.training.text_table.TextTable`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llmrec.config import ModelConfig, TrainConfig
from llmrec.evaluation.metrics import ranking_metrics, target_ranks
from llmrec.modeling.scorer import LLMScorer
from llmrec.modeling.sequential import SequentialRecommender, joined_state, left_pad, split_state
from llmrec.modeling.towers import user_vectors
from llmrec.training.text_table import TextTable


@dataclass(frozen=True)
class SequenceInputs:
    """The driver's side of a run: the catalogue's texts and their embeddings.

    ``item_text`` and ``query_text`` are the embeddings of ``item_texts`` and ``query_texts``
    by the base model (rows in catalogue / query-vocabulary order; ``query_texts[0]`` is the
    empty "no request" entry). ``known``: which catalogue items occur in training.
    """

    item_texts: list[str]
    item_text: np.ndarray
    known: np.ndarray
    query_texts: list[str]
    query_text: np.ndarray


@dataclass(frozen=True)
class SequenceEvalSet:
    """Validation users over one candidate set.

    ``histories`` are catalogue rows (oldest first); ``candidates`` the catalogue rows ranked
    (the protocol's catalogue); ``targets`` and ``exclude`` positions in ``candidates``;
    ``queries`` the request typed with each target (None: none) and ``query_text`` their
    base-model embeddings (zeros where there is none).
    """

    histories: list[list[int]]
    candidates: np.ndarray
    targets: np.ndarray
    exclude: list[list[int]]
    queries: list[str | None]
    query_text: np.ndarray

    def __len__(self) -> int:
        return len(self.histories)

    def subset(self, rows: Sequence[int] | np.ndarray) -> SequenceEvalSet:
        """The users at positions ``rows``."""
        take = [int(r) for r in rows]
        return SequenceEvalSet(
            [self.histories[r] for r in take],
            self.candidates,
            self.targets[take],
            [self.exclude[r] for r in take],
            [self.queries[r] for r in take],
            self.query_text[take],
        )

    def head(self, n: int) -> SequenceEvalSet:
        """The first ``n`` users (all when n <= 0)."""
        if n <= 0 or n >= len(self):
            return self
        return SequenceEvalSet(
            self.histories[:n],
            self.candidates,
            self.targets[:n],
            self.exclude[:n],
            self.queries[:n],
            self.query_text[:n],
        )


@dataclass(frozen=True)
class Positions:
    """A group of windows padded together: item rows ``x`` ``[B, L]``, the padding mask,
    request ids ``q``, which positions are scored (``valid``) and their targets."""

    x: torch.Tensor
    pad: torch.Tensor
    q: torch.Tensor
    valid: torch.Tensor
    targets: torch.Tensor


def length_groups(lengths: Sequence[int], seq_len: int, smallest: int = 8) -> list[list[int]]:
    """Window indices grouped by length (up to 8, 16, 32, ... positions, then ``seq_len``),
    each group in batch order: windows padded together with others of about their length,
    not to the longest of the batch (on short histories most of a batch would be padding)."""
    groups: dict[int, list[int]] = {}
    for i, n in enumerate(lengths):
        width = smallest
        while width < min(n, seq_len):
            width *= 2
        groups.setdefault(min(width, seq_len), []).append(i)
    return [groups[w] for w in sorted(groups)]


class SequenceObjective(nn.Module):
    """The sequential recommender, its text tables and the training loss (DDP wraps this).

    Args:
        model_cfg: The model section.
        train_cfg: The train section (objective, negatives, ID dropout, alignment weight).
        inputs: Catalogue and request texts with their base-model embeddings.
        text: The language model to tune (``model.text_tuning: adapter``), else None.
    """

    known: torch.Tensor

    def __init__(
        self,
        model_cfg: ModelConfig,
        train_cfg: TrainConfig,
        inputs: SequenceInputs,
        text: LLMScorer | None = None,
    ) -> None:
        super().__init__()
        self.train_cfg = train_cfg
        budget = train_cfg.text_batch
        self.text = text
        self.items = TextTable(inputs.item_texts, inputs.item_text, text, "item", budget)
        self.queries = TextTable(inputs.query_texts, inputs.query_text, text, "query", budget)
        self.register_buffer("known", torch.tensor(np.asarray(inputs.known, dtype=bool)))
        self.model = SequentialRecommender(
            model_cfg,
            inputs.item_text.shape[1],
            len(inputs.item_texts),
            rating_head=train_cfg.objective != "contrastive",
        )

    @property
    def device(self) -> torch.device:
        return self.known.device

    def item_vectors(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.items(self.items(rows), self.known, self.train_cfg.id_dropout)

    def forward(
        self,
        windows: Sequence[Sequence[int]],
        queries: Sequence[Sequence[int]],
        values: Sequence[Sequence[float]] | None = None,
        first: Sequence[int] | None = None,
        negatives: Sequence[Sequence[int]] | None = None,
    ) -> torch.Tensor:
        """The loss of a batch of windows (item rows, request ids with 0 = none, values).

        ``first``: per window, the position of its first target (default 1: every item after
        the first); the items before it are context only (an update trains on the new
        interactions, read after the user's older ones). ``negatives``: per window, the item
        rows its user gave a negative event (``data.events``): at each scored position of
        the window each must score below the target (``train.negative_weight``).
        """
        cfg = self.train_cfg
        device = self.device
        length = self.model.cfg.seq_len
        starts = [int(f) for f in first] if first is not None else [1] * len(windows)
        groups = length_groups([len(w) - 1 for w in windows], length)
        parts = [
            self._positions(
                [windows[i] for i in g], [queries[i] for i in g], [starts[i] for i in g]
            )
            for g in groups
        ]
        targets = torch.cat([p.targets for p in parts])
        vectors = self.item_vectors(targets)
        users = torch.cat([self._users(p, vectors) for p in parts])
        loss = torch.zeros((), device=device)
        if cfg.objective != "rating":
            loss = loss + self._softmax(users, vectors, targets)
        if cfg.objective != "contrastive" and values is not None:
            # the values of the valid positions, in the order the groups select them
            rated = torch.tensor(
                [
                    float(v)
                    for g in groups
                    for i in g
                    for v in list(values[i][1:])[-length:][starts[i] - 1 :]
                ],
                device=device,
            )
            predicted = self.model.rating(users, vectors[targets])
            mse = F.mse_loss(predicted, rated.to(predicted.dtype))
            loss = loss + (mse if cfg.objective == "rating" else cfg.rating_weight * mse)
        if cfg.query_align_weight > 0:
            loss = loss + cfg.query_align_weight * self._align(targets, vectors)
        if negatives is not None and cfg.negative_weight > 0:
            order = [i for g in groups for i in g]
            counts = torch.cat([p.valid.sum(1) for p in parts]).tolist()
            term = self._negatives(users, vectors, targets, order, counts, negatives)
            if term is not None:
                loss = loss + cfg.negative_weight * term
        return loss

    def _negatives(
        self,
        users: torch.Tensor,
        vectors: torch.Tensor,
        targets: torch.Tensor,
        order: Sequence[int],
        counts: Sequence[int],
        negatives: Sequence[Sequence[int]],
    ) -> torch.Tensor | None:
        """Mean ``softplus(s_negative - s_target)`` over the scored positions of windows with
        explicit negatives and those negatives (None: there is none). The positions come in
        window ``order``, ``counts[k]`` of them for the k-th window of it."""
        at = 0
        pos_idx: list[int] = []
        neg_idx: list[int] = []
        for window, n in zip(order, counts, strict=True):
            for row in negatives[window] if window < len(negatives) else ():
                pos_idx += range(at, at + int(n))
                neg_idx += [int(row)] * int(n)
            at += int(n)
        if not pos_idx:
            return None
        device = users.device
        p = torch.tensor(pos_idx, dtype=torch.long, device=device)
        r = torch.tensor(neg_idx, dtype=torch.long, device=device)
        keep = r != targets[p]  # never a negative of the position that chose it
        if not bool(keep.any()):
            return None
        p, r = p[keep], r[keep]
        s_neg = (users[p] * vectors[r]).sum(-1)
        s_pos = (users[p] * vectors[targets[p]]).sum(-1)
        return F.softplus(s_neg - s_pos).mean()

    def _positions(
        self, windows: list[Sequence[int]], queries: list[Sequence[int]], starts: list[int]
    ) -> Positions:
        """The padded inputs of windows of similar length and their scored positions
        (``starts``: per window, the position of its first target)."""
        device = self.device
        length = self.model.cfg.seq_len
        x, pad = left_pad([list(w[:-1]) for w in windows], length, device)
        y, _ = left_pad([list(w[1:]) for w in windows], length, device)
        q, _ = left_pad([list(r[1:]) for r in queries], length, device)
        width = x.shape[1]  # the group's longest window (at most seq_len)
        # target j (item j + 1) sits at position width - (len - 1) + j - 1
        first = torch.tensor([width - len(w) + f for w, f in zip(windows, starts, strict=True)])
        valid = ~pad & (torch.arange(width).unsqueeze(0) >= first.unsqueeze(1)).to(device)
        return Positions(x, pad, q, valid, y[valid])

    def _users(self, part: Positions, vectors: torch.Tensor) -> torch.Tensor:
        """The user tower's output at the scored positions of one group."""
        users = self.model.sequence(vectors[part.x], part.pad)
        asked = part.q > 0
        if bool(asked.any()):
            request = self.queries(part.q[asked])[part.q]
            users = users + self.model.request(request, asked, users)
        return users[part.valid]

    def _softmax(
        self, users: torch.Tensor, vectors: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        """Cross-entropy of each position's next item over the catalogue or sampled items.

        Only items that occur in training are negatives: an item the logs never show (a cold
        or new item) is not evidence against itself, and pushing it down at every step would
        teach the text part to rank such items last."""
        n = self.train_cfg.negatives
        if n <= 0 or n >= len(vectors):
            logits = (users @ vectors.T).masked_fill(~self.known.unsqueeze(0), float("-inf"))
            return F.cross_entropy(logits, targets)
        pool = self.known.nonzero().squeeze(1)
        sampled = pool[torch.randint(0, len(pool), (n,), device=users.device)]
        pos = (users * vectors[targets]).sum(-1, keepdim=True)
        neg = users @ vectors[sampled].T
        neg = neg.masked_fill(sampled.unsqueeze(0) == targets.unsqueeze(1), float("-inf"))
        logits = torch.cat([pos, neg], dim=1)
        return F.cross_entropy(logits, torch.zeros_like(targets))

    def _align(self, targets: torch.Tensor, vectors: torch.Tensor) -> torch.Tensor:
        """An item's own text as the request of a user with no history ranks that item."""
        rows = targets.unique()
        if len(rows) > self.train_cfg.text_batch:
            rows = rows[torch.randperm(len(rows), device=rows.device)[: self.train_cfg.text_batch]]
        text = self.items(None)[rows]
        users = self.model.empty.unsqueeze(0) + self.model.query_text(text)
        return self._softmax(users, vectors, rows)


def trained_state(objective: SequenceObjective) -> dict[str, torch.Tensor]:
    """A CPU copy of what training changes: the model and, when tuned, the text adapter."""
    text = objective.text.state() if objective.text is not None else None
    return joined_state(objective.model.state_dict(), text)


def load_state(objective: SequenceObjective, state: dict[str, torch.Tensor]) -> None:
    """Load a :func:`trained_state` (or a registered version's ``sequential.safetensors``)."""
    model, text = split_state(state)
    objective.model.load_tensors(model)
    if objective.text is not None and text:
        objective.text.load_state(text)


def optimizer_for(objective: SequenceObjective, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over what trains: the sequential model at ``train.lr``, a tuned text adapter at
    ``train.text_lr``."""
    text = {id(p) for p in objective.text.parameters()} if objective.text is not None else set()
    own = [p for p in objective.parameters() if p.requires_grad and id(p) not in text]
    groups: list[dict[str, Any]] = [{"params": own, "lr": cfg.lr}]
    tuned = [p for p in objective.parameters() if p.requires_grad and id(p) in text]
    if tuned:
        groups.append({"params": tuned, "lr": cfg.text_lr})
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def evaluate_sequential(
    objective: SequenceObjective, data: SequenceEvalSet, ks: Sequence[int] = (10, 20)
) -> dict[str, float]:
    """HR@K, NDCG@K and MRR of the current model under full ranking, history masked."""
    was = objective.training
    objective.eval()
    with torch.no_grad():
        vectors = objective.item_vectors()
        # a copy: the rows of typed requests are overwritten below, and an array handed over
        # by Ray's object store is read-only
        query = torch.tensor(np.asarray(data.query_text, dtype=np.float32))
        has_query = torch.tensor([isinstance(q, str) and bool(q.strip()) for q in data.queries])
        if objective.text is not None and bool(has_query.any()):
            asked = [i for i, h in enumerate(has_query.tolist()) if h]
            query[asked] = objective.text.encode([str(data.queries[i]) for i in asked]).cpu()
        users = user_vectors(objective.model, vectors, data.histories, query, has_query)
        candidates = vectors[torch.tensor(np.asarray(data.candidates))].cpu()
        scores = (users @ candidates.T).numpy()
    objective.train(was)
    return ranking_metrics(target_ranks(scores, data.targets, data.exclude), ks)


__all__ = [
    "Positions",
    "SequenceEvalSet",
    "SequenceInputs",
    "SequenceObjective",
    "evaluate_sequential",
    "length_groups",
    "load_state",
    "optimizer_for",
    "trained_state",
]
