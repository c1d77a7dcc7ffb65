"""The sequential design: the user tower, item vectors, the objective, windows, towers."""

import numpy as np
import pytest
import torch
from llmrec.config import ModelConfig, TrainConfig
from llmrec.data.pipeline import user_windows
from llmrec.data.text import ItemText
from llmrec.modeling.scorer import LLMScorer
from llmrec.modeling.sequential import (
    SequentialRecommender,
    joined_state,
    left_pad,
    split_state,
)
from llmrec.modeling.towers import SequentialTowers, user_vectors
from llmrec.training.sequential import (
    SequenceEvalSet,
    SequenceInputs,
    SequenceObjective,
    evaluate_sequential,
)
from llmrec.training.text_table import TextTable

CFG = ModelConfig(dim=16, seq_len=8, layers=1, heads=2, dropout=0.0)


def test_left_pad_keeps_the_most_recent_items_on_the_right():
    idx, pad = left_pad([[1, 2, 3], [], [4, 5, 6, 7, 8, 9]], 4)
    assert idx.tolist() == [[0, 1, 2, 3], [0, 0, 0, 0], [6, 7, 8, 9]]
    assert pad.tolist() == [
        [True, False, False, False],
        [True, True, True, True],
        [False, False, False, False],
    ]


def test_the_user_tower_is_causal_and_ignores_padding():
    torch.manual_seed(0)
    model = SequentialRecommender(CFG, text_dim=8, num_items=10).eval()
    vectors = model.items(torch.randn(10, 8), torch.ones(10, dtype=torch.bool))
    idx, pad = left_pad([[1, 2, 3, 4], [1, 2, 3, 9]], 8)
    assert idx.shape == (2, 4)  # padded to the longest history only
    out = model.sequence(vectors[idx], pad)
    # positions up to the third item see the same history: same output
    assert torch.allclose(out[0, :3], out[1, :3], atol=1e-5)
    assert not torch.allclose(out[0, 3], out[1, 3])
    # padded to the full seq_len, the same users get the same vectors
    full = torch.cat([torch.zeros(2, 4, dtype=torch.long), idx], dim=1)
    full_pad = torch.cat([torch.ones(2, 4, dtype=torch.bool), pad], dim=1)
    assert torch.allclose(model.sequence(vectors[full], full_pad)[:, -4:], out, atol=1e-5)
    # whatever sits under the padding is never read
    other = idx.clone()
    other[pad] = 7
    assert torch.allclose(model.sequence(vectors[other], pad)[:, -4:], out[:, -4:], atol=1e-5)
    # positions count back from the most recent item: alone or beside others, same user
    alone, alone_pad = left_pad([[1, 2, 3, 4]], 8)
    assert torch.allclose(model.sequence(vectors[alone], alone_pad)[0, -1], out[0, -1], atol=1e-5)


def test_items_without_a_trained_id_keep_their_text_vector():
    torch.manual_seed(0)
    model = SequentialRecommender(CFG, text_dim=8, num_items=4).eval()
    with torch.no_grad():
        model.item_ids.weight.fill_(1.0)
    text = torch.randn(4, 8)
    known = torch.tensor([True, False, True, False])
    fused = model.items(text, known)
    alone = model.items(text)  # items from outside the training catalogue
    assert torch.allclose(fused[1], alone[1]) and torch.allclose(fused[3], alone[3])
    assert torch.allclose(fused[0], alone[0] + 1.0)


def _inputs(n: int, texts: list[str] | None = None, dim: int = 8) -> SequenceInputs:
    rng = np.random.default_rng(0)
    return SequenceInputs(
        item_texts=texts or [f"item {i}" for i in range(n)],
        item_text=rng.normal(size=(n, dim)).astype(np.float32),
        known=np.ones(n, dtype=bool),
        query_texts=[""],
        query_text=np.zeros((1, dim), dtype=np.float32),
    )


def _eval_set(n: int, users: int) -> SequenceEvalSet:
    histories = [[(u + t) % n for t in range(5)] for u in range(users)]
    return SequenceEvalSet(
        histories=histories,
        candidates=np.arange(n),
        targets=np.array([(h[-1] + 1) % n for h in histories]),
        exclude=[[] for _ in histories],
        queries=[None] * users,
        query_text=np.zeros((users, 8), dtype=np.float32),
    )


def test_the_objective_learns_an_order_that_text_cannot_show():
    """Items with unrelated text vectors, users who always take the next item id: after a
    few hundred steps the next item ranks first for most users."""
    torch.manual_seed(0)
    n = 20
    objective = SequenceObjective(CFG, TrainConfig(query_align_weight=0.0), _inputs(n))
    data = _eval_set(n, 40)
    before = evaluate_sequential(objective, data)["hr_at_10"]
    opt = torch.optim.AdamW(objective.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(150):
        starts = rng.integers(0, n, size=16)
        windows = [[(s + t) % n for t in range(9)] for s in starts]
        loss = objective(windows, [[0] * 9 for _ in windows])
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = evaluate_sequential(objective, data)
    assert after["hr_at_10"] > 0.9 > before
    assert after["mrr"] > 0.5


def test_rating_objective_fits_the_rating_head():
    torch.manual_seed(0)
    cfg = TrainConfig(objective="rating", query_align_weight=0.0)
    objective = SequenceObjective(CFG, cfg, _inputs(6))
    windows = [[0, 1, 2, 3], [2, 3, 4, 5]]
    values = [[1.0, 5.0, 1.0, 5.0], [1.0, 5.0, 1.0, 5.0]]
    opt = torch.optim.AdamW(objective.parameters(), lr=5e-2)
    first = float(objective(windows, [[0] * 4] * 2, values))
    for _ in range(200):
        loss = objective(windows, [[0] * 4] * 2, values)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss) < first / 4


def test_sampled_negatives_give_a_finite_loss_that_trains():
    torch.manual_seed(0)
    objective = SequenceObjective(CFG, TrainConfig(negatives=5), _inputs(30))
    loss = objective([[1, 2, 3, 4], [5, 6, 7]], [[0] * 4, [0] * 3])
    assert torch.isfinite(loss)
    loss.backward()
    assert objective.model.item_ids.weight.grad is not None


def test_a_tuned_text_table_reencodes_asked_rows_with_gradient(tiny_base):
    torch.manual_seed(0)
    cfg = ModelConfig(
        base=tiny_base, text_tuning="adapter", adapter_layers=1, max_item_tokens=8, dim=16
    )
    text = LLMScorer(cfg)
    texts = [f"item number {i}" for i in range(6)]
    table = TextTable(texts, np.zeros((6, 32), dtype=np.float32), text, "item", budget=2).train()
    out = table(torch.tensor([1, 1, 4]))
    refreshed = [r for r in range(6) if out[r].abs().sum() > 0]
    assert refreshed == [1, 4]
    assert out.requires_grad
    out.sum().backward()
    trained = [n for n, p in text.named_parameters() if p.grad is not None]
    assert trained and all(".layer.1." in n for n in trained)  # top layer only
    assert torch.allclose(table.cache[1], out[1].detach())


@pytest.mark.parametrize("adapter", ["lora", "adalora", "ia3"])
def test_every_adapter_trains_in_the_sequential_design(tiny_base, adapter):
    """One training step with a tuned text encoder changes the adapter (and only it, among
    the language model's tensors), and the tuned state loads back into a fresh model."""
    from llmrec.training.sequential_loop import _train_epoch, load_state, trained_state

    torch.manual_seed(0)
    cfg = ModelConfig(
        base=tiny_base,
        adapter=adapter,
        text_tuning="adapter",
        adapter_layers=1,
        max_item_tokens=8,
        max_query_tokens=8,
        dim=16,
        seq_len=4,
        layers=1,
    )
    texts = [f"item number {i}" for i in range(6)]
    inputs = SequenceInputs(
        texts, np.zeros((6, 32), np.float32), np.ones(6, bool), [""], np.zeros((1, 32), np.float32)
    )
    train = TrainConfig(batch_size=2, text_batch=4, lr=5e-2)
    objective = SequenceObjective(cfg, train, inputs, LLMScorer(cfg, total_steps=4))
    before = {k: v.clone() for k, v in objective.text.state().items()}
    frozen = {n: p.clone() for n, p in objective.text.named_parameters() if not p.requires_grad}

    class Shard:
        def iter_batches(self, **_):
            yield {
                "items": [np.array([0, 1, 2]), np.array([3, 4, 5])],
                "queries": [np.zeros(3, int), np.zeros(3, int)],
                "values": [np.ones(3), np.ones(3)],
            }

    opt = torch.optim.AdamW([p for p in objective.parameters() if p.requires_grad], lr=5e-2)
    _train_epoch(objective, objective, opt, Shard(), train)
    after = objective.text.state()
    assert any(not torch.equal(before[k], after[k]) for k in before if k in after)
    assert all(
        torch.equal(p, frozen[n]) for n, p in objective.text.named_parameters() if n in frozen
    )
    fresh = SequenceObjective(cfg, train, inputs, LLMScorer(cfg, total_steps=4))
    load_state(fresh, trained_state(objective))
    probe = ["item number 3"]
    assert torch.allclose(
        fresh.text.eval().encode(probe), objective.text.eval().encode(probe), atol=1e-5
    )


def test_state_round_trip_and_towers_answer_the_same(tiny_base):
    torch.manual_seed(0)
    cfg = ModelConfig(base=tiny_base, dim=16, seq_len=8, layers=1, heads=2, max_query_tokens=16)
    model = SequentialRecommender(cfg, text_dim=32, num_items=5).eval()
    text = LLMScorer(cfg).eval()
    vectors = model.items(torch.randn(5, 32), torch.ones(5, dtype=torch.bool)).detach().numpy()
    ids = ["a", "b", "c", "d", "e"]
    towers = SequentialTowers(text, model, ids, vectors)
    users = towers.encode_users([["a", "b"], ["a", "b", "zzz"], []], [None, None, "space"])
    assert np.allclose(users[0], users[1], atol=1e-6)  # unknown ids are skipped
    assert not np.allclose(users[2], 0)  # a request alone is a user
    back = SequentialRecommender(cfg, text_dim=32, num_items=5)
    model_state, text_state = split_state(joined_state(model.state_dict()))
    assert text_state == {}
    back.load_tensors(model_state)
    again = SequentialTowers(text, back, ids, vectors)
    assert np.allclose(again.encode_users([["a", "b"]], [None])[0], users[0], atol=1e-6)
    new = towers.encode_new_items([ItemText("A new film", ("Drama",))])
    assert new.shape == (1, 16)


def test_user_vectors_of_an_empty_history_are_the_learned_empty_vector():
    model = SequentialRecommender(CFG, text_dim=8, num_items=3)
    with torch.no_grad():
        model.empty.fill_(0.5)
    vectors = model.items(torch.randn(3, 8), torch.ones(3, dtype=torch.bool)).detach()
    out = user_vectors(model, vectors, [[]])
    assert torch.allclose(out, torch.full((1, 16), 0.5))


@pytest.mark.parametrize("length", [2, 3, 50])
def test_windows_score_every_position_once(length):
    rows = {f"i{k}": k for k in range(10)}
    row = {
        "items": [f"i{k}" for k in range(10)] + ["unknown"],
        "queries": [None] * 4 + ["funny", None, None, None, None, None, None],
        "values": [float(k) for k in range(11)],
    }
    windows = user_windows(row, rows, {"funny": 1}, length)
    targets = [t for w in windows for t in w["items"][1:].tolist()]
    assert sorted(targets) == list(range(1, 10))  # the unknown item is skipped
    assert all(len(w["items"]) <= length + 1 for w in windows)
    with_query = [w for w in windows if 1 in w["queries"].tolist()]
    assert with_query and all(w["items"][w["queries"].tolist().index(1)] == 4 for w in with_query)


def test_items_never_seen_in_training_are_not_negatives():
    """A cold item is no evidence against itself: whatever its text, the loss is the same."""
    rng = np.random.default_rng(0)
    known = np.ones(6, dtype=bool)
    known[5] = False
    base = _inputs(6)
    for negatives in (0, 3):
        losses = []
        for scale in (1.0, 50.0):
            text = base.item_text.copy()
            text[5] = rng.normal(size=text.shape[1]) * scale
            inputs = SequenceInputs(base.item_texts, text, known, base.query_texts, base.query_text)
            cfg = TrainConfig(query_align_weight=0.1, id_dropout=0.0, negatives=negatives)
            torch.manual_seed(0)
            objective = SequenceObjective(CFG, cfg, inputs).eval()
            torch.manual_seed(1)
            losses.append(float(objective([[0, 1, 2, 3], [1, 2, 3, 4]], [[0] * 4, [0] * 4])))
        assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def test_windows_are_grouped_by_length_and_the_loss_is_that_of_each_window():
    from llmrec.training.sequential import length_groups

    assert length_groups([3, 20, 7, 60, 9], 50) == [[0, 2], [4], [1], [3]]
    n = 30
    rng = np.random.default_rng(0)
    inputs = SequenceInputs(
        [f"item {k}" for k in range(n)],
        rng.normal(size=(n, 8)).astype(np.float32),
        np.ones(n, dtype=bool),
        [""],
        np.zeros((1, 8), dtype=np.float32),
    )
    cfg = ModelConfig(dim=16, seq_len=20, layers=1, heads=2, dropout=0.0)
    train = TrainConfig(query_align_weight=0.0, id_dropout=0.0)
    torch.manual_seed(0)
    objective = SequenceObjective(cfg, train, inputs).eval()
    short, long = [1, 2, 3], list(range(5, 21))  # 2 and 15 scored positions, two groups
    with torch.no_grad():
        both = float(objective([short, long], [[0] * 3, [0] * 16]))
        alone = [float(objective([w], [[0] * len(w)])) for w in (short, long)]
    assert both == pytest.approx((2 * alone[0] + 15 * alone[1]) / 17, rel=1e-5)


def test_a_step_takes_more_windows_when_histories_are_short(tmp_path):
    import pandas as pd
    from llmrec.training.designs import batch_windows

    path = tmp_path / "train_sequences.parquet"
    # 4 users of 11 items (10 positions each, one window of seq_len 50): 5x the windows
    pd.DataFrame({"items": [[f"i{k}" for k in range(11)]] * 4}).to_parquet(path)
    assert batch_windows(path, 32, 50) == 160
    # full windows: batch_size itself (never fewer)
    pd.DataFrame({"items": [[f"i{k}" for k in range(101)]] * 2}).to_parquet(path)
    assert batch_windows(path, 32, 50) == 32
