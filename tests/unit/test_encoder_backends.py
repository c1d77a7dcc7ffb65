"""The int8 query tower: LoRA merged, feed-forward Linear layers quantized (attention kept
float32), vectors close to float32; the float32 scorer it was made from is left as it was."""

import numpy as np
import pytest
import torch
from llmrec.config import ModelConfig
from llmrec.modeling.scorer import LLMScorer
from llmrec.serving.backends import query_scorer

TEXTS = ["Recently: Stellar Drift (Science Fiction)", "a quiet book about the sea", "noodles"]


def _trained_like(base: str) -> LLMScorer:
    torch.manual_seed(0)
    scorer = LLMScorer(ModelConfig(base=base, max_query_tokens=32, max_item_tokens=16))
    with torch.no_grad():  # a non-zero adapter, as after training
        for name, p in scorer.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return scorer.eval()


def test_int8_query_tower_is_quantized_and_close_to_float32(tiny_base):
    scorer = _trained_like(tiny_base)
    before = scorer.encode(TEXTS).numpy()
    float32 = query_scorer(scorer, "torch")
    assert not any("lora" in n for n, _ in float32.model.named_modules())  # merged
    np.testing.assert_allclose(float32.encode(TEXTS).numpy(), before, atol=1e-5)
    int8 = query_scorer(scorer, "int8")
    kinds = {n: type(m) for n, m in int8.model.named_modules()}
    ffn = [n for n in kinds if n.endswith(("intermediate.dense", "output.dense"))]
    quantized = [n for n in ffn if "attention" not in n]
    assert quantized and all("quantized.dynamic" in kinds[n].__module__ for n in quantized)
    assert kinds["encoder.layer.0.attention.self.query"] is torch.nn.Linear  # kept float32
    assert not any("lora" in n for n, _ in int8.model.named_modules())  # merged
    after = int8.encode(TEXTS).numpy()
    assert after.shape == before.shape
    cosine = (
        (after * before).sum(1) / np.linalg.norm(after, axis=1) / np.linalg.norm(before, axis=1)
    )
    assert cosine.min() > 0.98, cosine
    assert np.array_equal(scorer.encode(TEXTS).numpy(), before)  # the original is untouched


def test_bad_backends_are_refused(tiny_base):
    scorer = _trained_like(tiny_base)
    with pytest.raises(ValueError, match="got 'onnx'"):
        query_scorer(scorer, "onnx")
    with pytest.raises(ValueError, match="CPU only, got device 'cuda'"):
        query_scorer(scorer, "int8", "cuda")
