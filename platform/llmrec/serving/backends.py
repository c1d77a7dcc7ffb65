"""How the query tower runs at serving time: as trained (float32, ``torch``) or int8 on CPU.
Both fold the LoRA adapter into the base weights first (:func:`merged_copy`).

``int8`` folds the LoRA adapter into the base weights and applies PyTorch's dynamic
quantization, with one scale per output channel, to the feed-forward ``nn.Linear`` layers
(weights stored as int8, activations quantized on the fly per batch): the largest matrix
products of each block run in int8. The attention projections stay float32: on MiniLM,
quantizing them too (and with one scale per tensor) lowered the cosine to float32's query
vectors from 0.98 to 0.93 and was no faster for these small matrices.
Item embeddings are not touched (they were computed in float32 when the version was
trained), so only the query side changes; ``benchmarks/encoder_backends.py`` measures speed
and the cosine to float32, ``jobs/evaluate.py --encoder-backend int8`` the ranking quality.
"""

from __future__ import annotations

import copy
import warnings
from typing import Literal

import torch
from torch import nn

from llmrec.modeling.scorer import LLMScorer

EncoderBackend = Literal["torch", "int8"]
BACKENDS: tuple[str, ...] = ("torch", "int8")
FLOAT_KEPT = ("attention", "attn")
"""Linear layers whose module name holds one of these stay float32."""


def query_scorer(scorer: LLMScorer, backend: str, device: str = "cpu") -> LLMScorer:
    """The scorer to encode queries with on ``backend``: a float32 copy with the adapter
    merged for ``torch``, an int8 one for ``int8`` (``scorer`` is left as it was).

    Raises:
        ValueError: an unknown backend, or ``int8`` on a GPU (dynamic quantization runs on
            CPU only).
    """
    if backend not in BACKENDS:
        raise ValueError(f"encoder_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "int8" and device != "cpu":
        raise ValueError(f"encoder_backend 'int8' runs on CPU only, got device {device!r}")
    merged = merged_copy(scorer)
    if backend == "torch":
        return merged
    quantized = merged.cpu()
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated for torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized.model = torch.ao.quantization.quantize_dynamic(
            quantized.model, _int8_layers(quantized.model), dtype=torch.qint8
        )
    return quantized


def merged_copy(scorer: LLMScorer, keep_original: bool = True) -> LLMScorer:
    """An inference copy of ``scorer`` in eval mode with its peft adapter folded into the
    base weights: the same vectors (to float rounding) without the adapter's two extra
    matrix products and wrapper per layer, a fifth to a third of a short query's time on
    MiniLM (``benchmarks/encoder_backends.py``). ``keep_original=False`` folds ``scorer``
    itself (no copy: for a scorer nobody else holds)."""
    out = (copy.deepcopy(scorer) if keep_original else scorer).eval()
    if getattr(out.model, "merge_and_unload", None) is not None:  # a peft model
        with warnings.catch_warnings():  # peft warns when an adapter is already an identity
            warnings.simplefilter("ignore", UserWarning)
            out.model = out.model.merge_and_unload()
    return out


def _int8_layers(model: nn.Module) -> dict[str, object]:
    """``qconfig_spec`` for the feed-forward Linear layers, one scale per output channel."""
    qconfig = torch.ao.quantization.per_channel_dynamic_qconfig
    return {
        name: qconfig
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and not any(k in name for k in FLOAT_KEPT)
    }


__all__ = ["BACKENDS", "EncoderBackend", "merged_copy", "query_scorer"]
