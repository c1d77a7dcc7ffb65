"""The sequential scorer: a self-attention user tower over language-model item vectors.

Item tower: the language model's embedding of an item's text, projected into the scoring
space, plus a learned item-ID embedding for the items seen in training. Items never trained
on (new or cold items) keep the text part alone, and ID dropout during training makes that
part rank on its own.

User tower: a small causal Transformer (SASRec-style) reads the user's history as the item
tower's vectors, newest last; its output at the last position, plus the projected embedding
of the free-text request when there is one, is the user vector. A request with no history
starts from a learned "empty history" vector. The score of (user, item) is their dot product,
so the catalogue's item vectors can be indexed ahead of time exactly as in the text design.

Every position of every training sequence is an example (the output at position t is scored
against the item at t + 1), against the whole catalogue (full softmax) or sampled negatives.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from llmrec.config import ModelConfig

SEQUENTIAL_FILE = "sequential.safetensors"


class SequentialRecommender(nn.Module):
    """The trainable part on top of the language model's text embeddings.

    Args:
        cfg: The model section (``dim``, ``layers``, ``heads``, ``seq_len``, ``dropout``,
            ``item_ids``).
        text_dim: Width of the language model's text embeddings.
        num_items: Size of the item-ID table (the training catalogue).
        rating_head: Add the score head of the rating objective (``a * cos(u, v) + b``).
    """

    def __init__(
        self, cfg: ModelConfig, text_dim: int, num_items: int, rating_head: bool = False
    ) -> None:
        super().__init__()
        d = cfg.dim
        self.cfg = cfg
        self.item_text = nn.Linear(text_dim, d)
        self.item_ids = nn.Embedding(num_items, d) if cfg.item_ids else None
        if self.item_ids is not None:
            nn.init.normal_(self.item_ids.weight, std=0.02)
        self.query_text = nn.Linear(text_dim, d)
        self.position = nn.Embedding(cfg.seq_len, d)
        self.empty = nn.Parameter(torch.zeros(d))
        layer = nn.TransformerEncoderLayer(
            d,
            cfg.heads,
            4 * d,
            cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.dropout = nn.Dropout(cfg.dropout)
        self.rating_head: nn.Linear | None = None
        if rating_head:
            self.enable_rating_head()

    @property
    def num_items(self) -> int:
        return 0 if self.item_ids is None else self.item_ids.num_embeddings

    def enable_rating_head(self) -> None:
        """Add the score head of the rating objective: ``a * cos(user, item) + b``."""
        if self.rating_head is None:
            self.rating_head = nn.Linear(1, 1).to(self.empty.device)
            with torch.no_grad():
                self.rating_head.weight.fill_(1.0)
                self.rating_head.bias.zero_()

    def items(
        self, text: torch.Tensor, known: torch.Tensor | None = None, id_dropout: float = 0.0
    ) -> torch.Tensor:
        """``[N, dim]`` item vectors from ``[N, text_dim]`` text embeddings.

        Args:
            text: Text embeddings of the items; row i is item-ID row i where ``known`` says so.
            known: ``[N]`` which rows have a trained ID embedding; None: none of them (items
                from outside the training catalogue get their text vector alone).
            id_dropout: Share of items whose ID part is dropped (training only), so that the
                text part learns to rank items alone.
        """
        out = self.item_text(text)
        if not self.cfg.item_text:  # IDs only: the text never reaches the item vector
            out = torch.zeros_like(out)
            id_dropout = 0.0
        if self.item_ids is None or known is None:
            return out
        n = min(len(text), self.num_items)
        keep = known[:n].unsqueeze(1).to(out.dtype)
        if id_dropout > 0 and self.training:
            keep = keep * (torch.rand(n, 1, device=text.device) >= id_dropout).to(out.dtype)
        ids = self.item_ids.weight[:n] * keep
        if n == len(text):
            return out + ids
        return torch.cat([out[:n] + ids, out[n:]])

    def sequence(self, vectors: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Causal self-attention over left-padded histories.

        ``L`` may be shorter than ``seq_len`` (a batch of short histories is padded to its
        longest only): positions count back from the newest item, which always takes the
        last position embedding, so the outputs do not depend on how much padding there is.

        Args:
            vectors: ``[B, L, dim]`` item vectors, oldest first, padding on the left.
            pad: ``[B, L]`` True where a position is padding.

        Returns:
            ``[B, L, dim]``: at position t, the user after the items up to t.
        """
        length = vectors.shape[1]
        pos = torch.arange(length, device=vectors.device)
        embedded = self.position(pos + (self.cfg.seq_len - length))
        x = self.dropout(vectors + embedded.unsqueeze(0))
        x = x.masked_fill(pad.unsqueeze(-1), 0.0)
        future = pos.unsqueeze(0) > pos.unsqueeze(1)  # [L, L] True = not allowed
        blocked = future.unsqueeze(0) | pad.unsqueeze(1)  # padding keys are never attended
        blocked = blocked & ~torch.eye(length, dtype=torch.bool, device=vectors.device)
        heads = self.cfg.heads
        mask = blocked.repeat_interleave(heads, dim=0)  # [B * heads, L, L]
        return self.norm(self.encoder(x, mask=mask))

    def users(
        self,
        vectors: torch.Tensor,
        pad: torch.Tensor,
        query: torch.Tensor | None = None,
        has_query: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``[B, dim]`` user vectors: the last position of the history (the empty-history
        vector when there is none) plus the projected request embedding, if any."""
        out = self.sequence(vectors, pad)[:, -1]
        empty = pad.all(dim=1, keepdim=True)
        out = torch.where(empty, self.empty.to(out.dtype).expand_as(out), out)
        return out + self.request(query, has_query, out)

    def request(
        self, query: torch.Tensor | None, has_query: torch.Tensor | None, like: torch.Tensor
    ) -> torch.Tensor:
        """The projected request embeddings (zeros where a row has no request)."""
        if query is None:
            return torch.zeros_like(like)
        part = self.query_text(query.to(like.dtype))
        if has_query is not None:
            part = part * has_query.unsqueeze(-1).to(part.dtype)
        return part

    def rating(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Predicted ratings of ``[B, dim]`` users for ``[B, dim]`` items (rating head)."""
        assert self.rating_head is not None, "the rating objective needs the rating head"
        cos = F.cosine_similarity(users, items, dim=-1).unsqueeze(-1)
        return self.rating_head(cos).squeeze(-1)

    def load_tensors(self, state: dict[str, torch.Tensor]) -> None:
        """Load a state dict (adding the rating head first when it has one)."""
        if any(k.startswith("rating_head.") for k in state):
            self.enable_rating_head()
        self.load_state_dict(state)


def left_pad(
    histories: list[list[int]], length: int, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The last ``length`` items of each history as a ``[B, L]`` index tensor, padded on the
    left, and the ``[B, L]`` padding mask (padding indexes row 0). ``L`` is ``length`` or the
    longest history if shorter (at least 1): self-attention over padding is wasted work,
    most of it on data with short histories."""
    length = max(1, min(length, max((len(h) for h in histories), default=0)))
    out = torch.zeros(len(histories), length, dtype=torch.long)
    pad = torch.ones(len(histories), length, dtype=torch.bool)
    for row, history in enumerate(histories):
        recent = history[-length:] if length else []
        if recent:
            out[row, length - len(recent) :] = torch.as_tensor(recent, dtype=torch.long)
            pad[row, length - len(recent) :] = False
    return out.to(device), pad.to(device)


def save_trained(
    directory: str | Path,
    model: SequentialRecommender,
    text_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the trained tensors as one ``sequential.safetensors``: the model's under
    ``sequential.``, a tuned text adapter's (``LLMScorer.state()``) under ``text.``."""
    path = Path(directory) / SEQUENTIAL_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(joined_state(model.state_dict(), text_state), str(path))
    return path


def joined_state(
    model_state: dict[str, torch.Tensor], text_state: dict[str, torch.Tensor] | None = None
) -> dict[str, torch.Tensor]:
    """One flat CPU copy of the model's and the text adapter's tensors."""
    out = {f"sequential.{k}": v.detach().cpu().clone().contiguous() for k, v in model_state.items()}
    for k, v in (text_state or {}).items():
        out[f"text.{k}"] = v.detach().cpu().clone().contiguous()
    return out


def split_state(
    state: dict[str, torch.Tensor],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The model's and the text adapter's tensors of a :func:`joined_state` dict."""
    model = {
        k.removeprefix("sequential."): v for k, v in state.items() if k.startswith("sequential.")
    }
    text = {k.removeprefix("text."): v for k, v in state.items() if k.startswith("text.")}
    return model, text


def load_trained(directory: str | Path) -> dict[str, torch.Tensor]:
    """The tensors written by :func:`save_trained`."""
    return load_file(str(Path(directory) / SEQUENTIAL_FILE))


__all__ = [
    "SEQUENTIAL_FILE",
    "SequentialRecommender",
    "joined_state",
    "left_pad",
    "load_trained",
    "save_trained",
    "split_state",
]
