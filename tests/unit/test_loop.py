"""The per-worker epoch: gradient accumulation and the data-wait measurement."""

import numpy as np
import torch
from llmrec.config import ModelConfig, TrainConfig
from llmrec.modeling.scorer import LLMScorer
from llmrec.training.loop import _train_epoch


class Shard:
    """What ray.train.get_dataset_shard returns, as far as the loop uses it."""

    def __init__(self, n: int):
        self.rows = {
            "query_text": np.array([f"user {i} likes topic {i % 3}" for i in range(n)]),
            "item_text": np.array([f"item about topic {i % 3} number {i}" for i in range(n)]),
            "item_index": np.arange(n),
        }

    def iter_batches(self, batch_size, batch_format, drop_last):
        n = len(self.rows["item_index"])
        for s in range(0, n - (n % batch_size if drop_last else 0), batch_size):
            yield {k: v[s : s + batch_size] for k, v in self.rows.items()}


def test_gradient_accumulation_steps_the_optimizer_once_per_group(tiny_base):
    torch.manual_seed(0)
    scorer = LLMScorer(ModelConfig(base=tiny_base, max_query_tokens=16, max_item_tokens=16))
    opt = torch.optim.AdamW([p for p in scorer.parameters() if p.requires_grad], lr=1e-2)
    steps = []
    original = opt.step
    opt.step = lambda *a, **k: (steps.append(1), original(*a, **k))[1]
    cfg = TrainConfig(batch_size=4, grad_accum_steps=2)
    stats = _train_epoch(scorer, scorer, opt, Shard(20), cfg)  # 5 batches -> 2 full groups + 1
    assert len(steps) == 3
    assert stats["samples"] == 20
    assert 0.0 <= stats["data_wait_share"] < 1.0
    assert stats["loss"] > 0
