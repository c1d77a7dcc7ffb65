"""The incremental pieces without Ray: one timeline, windows of a time range (new targets
read after older context), replay, the users of a period, the protocol's table; what an
update reads (sources, the newest catalogue row of an item, feedback naming unknown
items set aside)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import torch.nn.functional as F
from llmrec.config import DataConfig, TrainConfig, load_config
from llmrec.data.catalogue import Catalogue
from llmrec.data.demo import generate_demo
from llmrec.data.incoming import Sources, as_raw, gather
from llmrec.data.prepare import prepare
from llmrec.evaluation.incremental import (
    Timeline,
    period_metrics,
    period_users,
    replay,
    windows,
)
from llmrec.modeling.sequential import left_pad
from llmrec.serving.history import Event, FeedbackLog
from llmrec.training.sequential import SequenceInputs, SequenceObjective
from llmrec.workflows.incremental import STRATEGIES, run


def _timeline() -> Timeline:
    # u1: a b c d e at t=1..5; u2: b c at 3, 6; u3: e at 7 (new user); ties: by user
    rows = [
        ("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "b", 3), ("u1", "d", 4),
        ("u1", "e", 5), ("u2", "c", 6), ("u3", "e", 7),
    ]  # fmt: skip
    return Timeline.build(pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]))


ROWS = {i: k for k, i in enumerate("abcde")}


def test_the_timeline_orders_by_time_then_user():
    tl = _timeline()
    assert list(tl.frame["user_id"])[2:4] == ["u1", "u2"]  # both at t=3
    assert tl.after(3) == 4 and tl.after(0) == 0 and tl.after(7) == 8
    assert tl.share(0.5) == 4 and tl.timestamp(99) == 7
    assert tl.first_seen()["e"] == 5 and tl.items_before(2) == {"a", "b"}


def test_windows_of_a_range_train_only_its_interactions_after_their_context():
    tl = _timeline()
    new = windows(tl, ROWS, {}, 3, 4, 8)  # positions 4..7: u1 d, u1 e, u2 c, u3 e
    by_first = {tuple(w["items"].tolist()): int(w["first"]) for w in new}
    # u1: window a b c d e cut at length 3 -> [b c d e] with targets d, e (first = 2)
    assert by_first == {(1, 2, 3, 4): 2, (1, 2): 1}  # u2: b -> c; u3 has no context
    targets = [w["items"][w["first"] :].tolist() for w in new]
    assert sorted(t for ts in targets for t in ts) == [2, 3, 4]  # c (u2), d, e (u1)
    everything = windows(tl, ROWS, {}, 3, 0, 8)
    assert sum(len(w["items"]) - int(w["first"]) for w in everything) == 5
    assert len(replay(tl, ROWS, {}, 3, 4, 1, seed=0)) == 1
    assert len(replay(tl, ROWS, {}, 3, 4, 10)) == len(windows(tl, ROWS, {}, 3, 0, 4))


def test_a_window_trains_only_from_its_first_target():
    inputs = SequenceInputs(
        [f"item {k}" for k in range(6)],
        np.random.default_rng(0).normal(size=(6, 8)).astype(np.float32),
        np.ones(6, dtype=bool),
        [""],
        np.zeros((1, 8), dtype=np.float32),
    )
    cfg = load_config(None, ["model.dim=16", "model.seq_len=6", "model.heads=2"]).model
    train = TrainConfig(query_align_weight=0.0, id_dropout=0.0)
    torch.manual_seed(0)
    objective = SequenceObjective(cfg, train, inputs).eval()
    window, queries = [0, 1, 2, 3, 4], [0] * 5
    with torch.no_grad():
        last_only = float(objective([window], [queries], None, [4]))
        every = float(objective([window], [queries]))
        vectors = objective.item_vectors()  # the loss of the last target alone, by hand
        x, pad = left_pad([window[:4]], 6)
        user = objective.model.sequence(vectors[x], pad)[:, -1]
        by_hand = float(F.cross_entropy(user @ vectors.T, torch.tensor([4])))
    assert last_only == pytest.approx(by_hand, rel=1e-5)
    assert every != pytest.approx(last_only)


def test_period_users_score_their_first_interaction_in_the_period():
    tl = _timeline()
    users = period_users(tl, ROWS, 5, 8, seen_before=4)  # u1 e (5), u2 c (6), u3 e (7)
    assert users.user_ids == ["u1", "u2", "u3"]
    assert users.history_ids == [["a", "b", "c", "d"], ["b"], []]
    assert users.targets.tolist() == [4, 2, 4]
    assert users.returning.tolist() == [True, True, False]
    scores = np.tile(np.array([5.0, 4.0, 3.0, 2.0, 1.0]), (3, 1))
    m = period_metrics(scores, users, np.arange(5))
    # u1: e is the only item left (rank 0); u2: a ranks above c (rank 1); u3: rank 4
    assert m["hr_at_10"] == 1.0 and m["users"] == 3.0
    assert m["returning_ndcg_at_10"] == pytest.approx((1.0 + 1 / np.log2(3)) / 2)
    assert m["new_ndcg_at_10"] == pytest.approx(1 / np.log2(6))


def test_the_protocol_table_on_small_demo_data(tiny_base):
    demo = generate_demo(40, 60, seed=3, min_events=8, max_events=12)
    frame = demo.interactions.to_pandas()
    cfg = load_config(
        None,
        [
            f"model.base={tiny_base}", "model.dim=16", "model.seq_len=8", "model.layers=1",
            "model.max_item_tokens=16", "train.epochs=2", "train.batch_size=16",
            "train.num_workers=1", "update.epochs=1",
        ],
    )  # fmt: skip
    table = run(cfg, Timeline.build(frame), Catalogue.from_table(demo.items), periods=2,
                log=lambda _: None)  # fmt: skip
    assert list(table["split"].unique()) == ["period_1", "period_2", "mean", "mean_updated"]
    assert set(table["method"]) == set(STRATEGIES)
    first = table[table["split"] == "period_1"]
    assert first["ndcg_at_10"].nunique() == 1  # no data between the base and period 1
    assert (first["train_seconds"] == 0).all()
    second = table[table["split"] == "period_2"].set_index("method")
    assert second.loc["stale", "train_seconds"] == 0
    assert (second.drop(index="stale")["train_seconds"] > 0).all()
    assert second["users"].nunique() == 1 and second["users"].iloc[0] > 0
    assert table[["ndcg_at_10", "hr_at_10"]].to_numpy().max() <= 1.0


def test_what_an_update_reads(tmp_path):
    base = tmp_path / "base"
    base.mkdir()
    demo = generate_demo(20, 30, seed=1)
    pq.write_table(demo.interactions, base / "interactions.parquet")
    pq.write_table(demo.items, base / "items.parquet")
    log = FeedbackLog(tmp_path / "feedback")
    log.append([Event("u0001", "i0003", timestamp=2_000_000_000),
                Event("u0001", "ghost", timestamp=2_000_000_001),
                Event("u0002", "live-1", timestamp=2_000_000_002)])  # fmt: skip
    changed = pa.table({"item_id": ["i0003"], "title": ["Renamed"], "categories": [["X"]]})
    pq.write_table(changed, tmp_path / "items.parquet")
    live = pa.table({"item_id": ["live-1"], "title": ["Brand new"], "text": [None],
                     "categories": [["Cooking"]]})  # fmt: skip
    sources = Sources(
        str(base), [], [str(tmp_path / "feedback")], [str(tmp_path / "items.parquet")]
    )
    incoming = gather(sources, DataConfig(), [("live items", live)])
    prepared = prepare(as_raw(incoming), tmp_path / "out")
    assert prepared.rejected["interactions"] == {"unknown_item": 1}
    rejected = pd.read_parquet(tmp_path / "out" / "rejected" / "interactions.parquet")
    assert rejected["item_id"].tolist() == ["ghost"]
    assert rejected["rejected_source"].iloc[0].endswith(".parquet")  # traced to its file
    cat = prepared.catalogue
    assert cat.items["i0003"].title == "Renamed" and "live-1" in cat
    assert prepared.interactions.num_rows == demo.interactions.num_rows + 2
    assert any("replaced by newer catalogue rows" in n for n in prepared.notes)
    merged = Sources("demo", ["a"]).with_(Sources("demo", ["a", "b"], ["f"]))
    assert merged.as_dict() == {"base": "demo", "logs": ["a", "b"], "feedback": ["f"]}
    assert Sources.from_dict(merged.as_dict()) == merged


def test_an_update_keeps_the_champions_model_and_takes_its_own_runtime():
    from llmrec.workflows.update import sized, version_strategy
    from llmrec.workflows.update_plan import run_config

    champion = load_config(None, ["model.dim=32", "train.lr=0.004", "train.batch_size=16"])
    ours = load_config(
        None,
        ["model.dim=64", "train.num_workers=3", "update.epochs=2", "registry.model_name=x"],
    )
    cfg = run_config(ours, champion, "models:/m/4")
    assert cfg.model.dim == 32 and cfg.train.batch_size == 16  # the champion's
    assert cfg.train.num_workers == 3 and cfg.registry.model_name == "x"  # this run's
    assert (cfg.train.epochs, cfg.train.lr, cfg.train.init_from) == (2, 0.004, "models:/m/4")
    assert sized(cfg, 20).train.num_workers == 1 and sized(cfg, 1000).train.num_workers == 3
    assert version_strategy(ours) == "fine-tune with replay (ratio 1), 2 epochs"
    new_only = load_config(None, ["update.replay_ratio=0", "update.max_steps=50"])
    assert version_strategy(new_only) == "fine-tune on new data only, 3 epochs, at most 50 steps"
