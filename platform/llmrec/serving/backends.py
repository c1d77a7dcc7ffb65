"""How the query tower runs at serving time: as trained (float32) or int8 on CPU.

``int8`` folds the LoRA adapter into the base weights and applies PyTorch's dynamic
quantization to every ``nn.Linear`` (weights stored as int8, activations quantized on the
fly per batch): the matrix products that dominate a transformer's CPU time run in int8.
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


def query_scorer(scorer: LLMScorer, backend: str, device: str = "cpu") -> LLMScorer:
    """The scorer to encode queries with on ``backend`` (``scorer`` itself for ``torch``,
    an int8 copy for ``int8``).

    Raises:
        ValueError: an unknown backend, or ``int8`` on a GPU (dynamic quantization runs on
            CPU only).
    """
    if backend == "torch":
        return scorer
    if backend != "int8":
        raise ValueError(f"encoder_backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if device != "cpu":
        raise ValueError(f"encoder_backend 'int8' runs on CPU only, got device {device!r}")
    quantized = copy.deepcopy(scorer).cpu().eval()
    merge = getattr(quantized.model, "merge_and_unload", None)
    if merge is not None:  # a peft model: the adapter folded into the base weights
        quantized.model = merge()
    with warnings.catch_warnings():  # torch.ao.quantization is deprecated for torchao
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        quantized.model = torch.ao.quantization.quantize_dynamic(
            quantized.model, {nn.Linear}, dtype=torch.qint8
        )
    return quantized


__all__ = ["BACKENDS", "EncoderBackend", "query_scorer"]
