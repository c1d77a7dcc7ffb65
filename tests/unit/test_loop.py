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


def _rated_shard(n: int) -> Shard:
    shard = Shard(n)
    shard.rows["value"] = np.array([1.0 + (i % 5) for i in range(n)], dtype=np.float32)
    return shard


def test_rating_objective_fits_the_score_head_to_the_ratings(tiny_base):
    torch.manual_seed(0)
    cfg = ModelConfig(base=tiny_base, max_query_tokens=16, max_item_tokens=16)
    scorer = LLMScorer(cfg, rating_head=True)
    opt = torch.optim.AdamW([p for p in scorer.parameters() if p.requires_grad], lr=5e-2)
    train = TrainConfig(batch_size=4, objective="rating")
    first = _train_epoch(scorer, scorer, opt, _rated_shard(20), train)["loss"]
    for _ in range(4):
        last = _train_epoch(scorer, scorer, opt, _rated_shard(20), train)["loss"]
    assert last < first / 2  # ratings 1..5: the head learns their mean and more
    both = TrainConfig(batch_size=4, objective="both", rating_weight=0.5)
    assert _train_epoch(scorer, scorer, opt, _rated_shard(20), both)["loss"] > 0
    # the head is saved with the adapter and comes back on load
    state = scorer.state()
    assert {"rating_head.weight", "rating_head.bias"} <= set(state)
    fresh = LLMScorer(cfg)
    fresh.load_state(state)
    assert fresh.rating_head is not None
    assert torch.equal(fresh.rating_head.bias, scorer.rating_head.bias)


def test_ia3_and_adalora_adapters_train_and_reload(tiny_base, tmp_path):
    for adapter in ("ia3", "adalora"):
        torch.manual_seed(0)
        cfg = ModelConfig(base=tiny_base, adapter=adapter, max_query_tokens=16, max_item_tokens=16)
        scorer = LLMScorer(cfg, total_steps=10)
        trainable = {n for n, p in scorer.named_parameters() if p.requires_grad}
        marker = "ia3_l" if adapter == "ia3" else "lora_E"
        assert any(marker in n for n in trainable), adapter
        assert not any("pooler" in n for n in trainable)
        opt = torch.optim.AdamW([p for p in scorer.parameters() if p.requires_grad], lr=1e-2)
        progress = {"step": 0}
        _train_epoch(scorer, scorer, opt, Shard(16), TrainConfig(batch_size=4), None, progress)
        assert progress["step"] == 4
        scorer.save(tmp_path / adapter)
        back = LLMScorer(cfg, total_steps=10)
        back.load_trained(tmp_path / adapter)
        texts = ["a user who reads", "a book"]
        assert torch.allclose(back.eval().encode(texts), scorer.eval().encode(texts), atol=1e-5)
