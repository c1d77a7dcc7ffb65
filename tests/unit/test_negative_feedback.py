"""Negative feedback never trains as positive: the event policy (``data.events``), what
``prepare`` keeps, the hybrid's parts after dislikes, explicit negatives in the sequential
design (windows, objective, training loop) and the update's policy."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from llmrec.config import ConfigError, ModelConfig, TrainConfig, load_config
from llmrec.data.contract import INTERACTIONS_SCHEMA, DataError
from llmrec.data.events import negative_rows, policy_of, split_events
from llmrec.data.pipeline import owned_windows
from llmrec.data.prepare import load_source, prepare
from llmrec.evaluation.incremental import Timeline, windows
from llmrec.modeling.sequential import left_pad
from llmrec.training.sequential import SequenceInputs, SequenceObjective

SERVED = ("view", "click", "like", "purchase", "rating", "dislike", "skip")
"""The events ``POST /feedback`` accepts."""


def _table(rows: list[tuple[str, str, int, str]]) -> pa.Table:
    return pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "event": [r[3] for r in rows],
            "value": [1.0] * len(rows),
            "query": [None] * len(rows),
        },
        schema=INTERACTIONS_SCHEMA,
    )


def _pairs(table: pa.Table) -> list[tuple[str, str]]:
    return list(zip(table["user_id"].to_pylist(), table["item_id"].to_pylist(), strict=True))


def test_by_default_dislikes_are_negatives_and_skips_are_ignored():
    rows = [("u", f"i{k}", k, event) for k, event in enumerate(SERVED)]
    rows += [("u", "i9", 9, "interaction"), ("u", "i10", 10, "share")]  # unlisted: positive
    split = split_events(_table(rows))
    assert split.positives["event"].to_pylist() == [
        "view", "click", "like", "purchase", "rating", "interaction", "share",
    ]  # fmt: skip
    assert _pairs(split.negatives) == [("u", "i5")]
    assert split.negatives["event"].to_pylist() == ["dislike"]
    assert split.counts["dislike"] == ("negative", 1) and split.counts["skip"] == ("ignore", 1)
    assert split.describe() == (
        "events: 1 x click, 1 x interaction, 1 x like, 1 x purchase, 1 x rating, 1 x share, "
        "1 x view -> positive; 1 x dislike -> negative; 1 x skip -> ignore"
    )


def test_the_latest_word_on_an_item_decides():
    rows = [
        ("u1", "a", 1, "click"), ("u1", "a", 5, "dislike"),  # withdrawn by the dislike
        ("u2", "b", 1, "dislike"), ("u2", "b", 6, "purchase"),  # the purchase wins
        ("u3", "c", 7, "like"), ("u3", "c", 7, " Dislike "),  # same second: negative
        ("u4", "a", 2, "click"),  # another user's click stays
    ]  # fmt: skip
    split = split_events(_table(rows))
    assert _pairs(split.positives) == [("u2", "b"), ("u4", "a")]
    assert _pairs(split.negatives) == [("u1", "a"), ("u3", "c")]
    assert split.withdrawn == 2
    assert "(2 earlier positive rows withdrawn)" in split.describe()


def test_all_positive_data_is_passed_through_untouched():
    table = _table([("u", "a", 1, "rating"), ("u", "b", 2, "click")])
    split = split_events(table)
    assert split.positives is table  # same buffers: the data fingerprint does not move
    assert split.negatives.num_rows == 0
    assert split.describe() == "events: 1 x click, 1 x rating -> positive"


def test_the_policy_is_configurable_and_bad_actions_name_the_key():
    cfg = load_config(None, ["data.events={skip: negative, Share: ignore}"])
    policy = policy_of(cfg.data.events)
    assert policy["skip"] == "negative" and policy["share"] == "ignore"
    assert policy["dislike"] == "negative" and policy["click"] == "positive"  # defaults kept
    split = split_events(_table([("u", "a", 1, "skip"), ("u", "b", 2, "share")]), cfg.data.events)
    assert _pairs(split.negatives) == [("u", "a")] and split.counts["share"] == ("ignore", 1)
    with pytest.raises(ConfigError) as err:
        load_config(None, ["data.events={dislike: neutral}", "train.negative_weight=-1"])
    message = str(err.value)
    assert (
        "data.events.dislike must be one of 'positive', 'negative', 'ignore', got 'neutral'"
        in message
    )
    assert "train.negative_weight must be >= 0, got -1.0" in message


def _contract(folder, rows, items="abcdefgh"):
    folder.mkdir()
    pq.write_table(_table(rows), folder / "interactions.parquet")
    catalogue = pa.table({"item_id": list(items), "title": [f"Item {i}" for i in items]})
    pq.write_table(catalogue, folder / "items.parquet")
    return str(folder)


def test_prepare_keeps_every_row_on_disk_and_trains_on_positives(tmp_path):
    rows = [
        ("u", "a", 1, "click"), ("u", "b", 2, "dislike"), ("u", "c", 3, "skip"),
        ("v", "b", 4, "purchase"),
    ]  # fmt: skip
    source = _contract(tmp_path / "src", rows)
    prepared = prepare(load_source(source), tmp_path / "out")
    assert _pairs(prepared.interactions) == [("u", "a"), ("v", "b")]
    assert _pairs(prepared.negatives) == [("u", "b")]
    on_disk = pq.read_table(tmp_path / "out" / "interactions.parquet")
    assert on_disk["event"].to_pylist() == ["click", "dislike", "skip", "purchase"]  # nothing lost
    summary = prepared.summary()
    assert "interactions: 4 kept of 4 read" in summary
    assert (
        "events: 1 x click, 1 x purchase -> positive; 1 x dislike -> negative; 1 x skip -> ignore"
        in summary
    )
    as_positive = prepare(load_source(source), tmp_path / "old", {"dislike": "positive"})
    assert ("u", "b") in _pairs(as_positive.interactions)
    only_dislikes = _contract(tmp_path / "neg", [("u", "a", 1, "dislike")])
    with pytest.raises(DataError, match="no interaction to train on"):
        prepare(load_source(only_dislikes), tmp_path / "out2")


def test_dislikes_give_an_item_no_popularity_co_occurrence_or_transition(tmp_path):
    """The served hybrid's parts (refitted on the interactions as an update does) for one
    user and a disliked item: the same as without the dislikes, and higher when dislikes
    are read as positives (the old behaviour)."""
    from llmrec.modeling.cf import CFParams
    from llmrec.ranking.weights import HybridWeights
    from llmrec.workflows.steps import serving_hybrid

    base = [
        (u, item, 10 * k + t, "click")
        for k, u in enumerate(["u1", "u2", "u3", "u4", "u5"])
        for t, item in enumerate(["a", "b", "c", "d"][: 2 + k % 3])
    ] + [("u6", "e", 100, "click"), ("u6", "f", 101, "click"), ("u7", "g", 102, "click")]
    dislikes = [(u, "e", 200 + k, "dislike") for k, u in enumerate(["u1", "u2", "u3", "u4"])]
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(8, 4)).astype(np.float32)

    def fitted(name, rows, events=None):
        prepared = prepare(load_source(_contract(tmp_path / name, rows)), tmp_path / f"o-{name}",
                           events)  # fmt: skip
        weights = HybridWeights(1.0, 1.0, 1.0, 1.0)
        hybrid = serving_hybrid(
            weights, "ease", CFParams(ease_lambda=1.0), prepared.catalogue, vectors,
            prepared.interactions,
        )  # fmt: skip
        return hybrid, prepared.catalogue.index

    before, rows = fitted("before", base)
    after, _ = fitted("after", base + dislikes)
    old, _ = fitted("old", base + dislikes, {"dislike": "positive"})
    history = [[rows["a"], rows["b"]]]  # u1's positives, the last one b
    e = rows["e"]
    pop = [h.popularity_counts[e] for h in (before, after, old)]
    assert pop[1] == pop[0] < pop[2]
    co = [h.cf.part(history)[0, e] for h in (before, after, old)]
    assert co[1] == pytest.approx(co[0]) and co[2] > co[0]
    chain = [h.transitions.counts[rows["b"], e] for h in (before, after, old)]
    assert chain[1] == chain[0] == 0 < chain[2]
    query = rng.normal(size=(1, 4)).astype(np.float32)
    scores = [h.scores(query, history)[0, e] for h in (before, after, old)]
    assert scores[1] <= scores[0] + 1e-6 < scores[2]


def test_negative_rows_by_user_time_and_held_out_items():
    negatives = split_events(
        _table([("u", "a", 5, "dislike"), ("u", "b", 9, "dislike"), ("v", "c", 1, "dislike")])
    ).negatives
    rows = {"a": 0, "b": 1, "c": 2}
    assert negative_rows(negatives, rows) == ({"u": 0, "v": 1}, [[0, 1], [2]])
    assert negative_rows(negatives, rows, until=5) == ({"u": 0, "v": 1}, [[0], [2]])
    assert negative_rows(negatives, rows, until={"u": 9}) == ({"u": 0}, [[0, 1]])
    assert negative_rows(negatives, rows, skip=frozenset({"a", "c"})) == ({"u": 0}, [[1]])


def test_windows_name_their_users_place_among_the_negatives():
    frame = pd.DataFrame(
        [("u1", "a", 1), ("u1", "b", 2), ("u1", "c", 3), ("u2", "a", 4), ("u2", "c", 5)],
        columns=["user_id", "item_id", "timestamp"],
    )
    tl = Timeline.build(frame)
    rows = {i: k for k, i in enumerate("abcd")}
    owned = windows(tl, rows, {}, 3, 0, 5, users={"u2": 0})
    assert sorted(int(w["user"]) for w in owned) == [-1, 0]
    assert all("user" not in w for w in windows(tl, rows, {}, 3, 0, 5))
    row = {"user_id": "u2", "items": ["a", "b", "c"], "queries": [None] * 3, "values": None}
    assert [w["user"] for w in owned_windows(row, rows, {}, 3, {"u2": 4})] == [4]
    assert [w["user"] for w in owned_windows(row, rows, {}, 3, {"u1": 0})] == [-1]


def _objective(weight: float = 1.0) -> SequenceObjective:
    inputs = SequenceInputs(
        [f"item {k}" for k in range(8)],
        np.random.default_rng(0).normal(size=(8, 8)).astype(np.float32),
        np.ones(8, dtype=bool),
        [""],
        np.zeros((1, 8), dtype=np.float32),
    )
    model = ModelConfig(dim=16, seq_len=6, layers=1, heads=2, dropout=0.0)
    train = TrainConfig(query_align_weight=0.0, id_dropout=0.0, negative_weight=weight)
    torch.manual_seed(0)
    return SequenceObjective(model, train, inputs)


def test_the_objective_pushes_a_users_negatives_below_their_targets():
    window, queries = [[0, 1, 2, 3]], [[0] * 4]
    with torch.no_grad():
        plain = float(_objective()(window, queries))
        negated = float(_objective()(window, queries, None, None, [[5]]))
        unweighted = float(_objective(0.0)(window, queries, None, None, [[5]]))
        empty = float(_objective()(window, queries, None, None, [[]]))
    assert negated > plain == pytest.approx(unweighted)
    assert empty == pytest.approx(plain)

    def score_of_5(objective):
        with torch.no_grad():
            vectors = objective.item_vectors()
            x, pad = left_pad([window[0]], 6)
            user = objective.model.sequence(vectors[x], pad)[:, -1]
            return float(user @ vectors[5] - user @ vectors[4])

    trained = {}
    for name, negatives in (("without", None), ("with", [[5]])):
        objective = _objective()
        opt = torch.optim.SGD(objective.parameters(), lr=0.05)
        for _ in range(20):
            loss = objective([[0, 1, 2, 3, 4]], [[0] * 5], None, None, negatives)
            opt.zero_grad()
            loss.backward()
            opt.step()
        trained[name] = score_of_5(objective)
    assert trained["with"] < trained["without"]


def test_the_training_loop_hands_each_window_its_users_negatives():
    from llmrec.training.sequential_loop import _train_epoch

    class Shard:
        def iter_batches(self, **_):
            yield {
                "items": [np.array([0, 1, 2, 3]), np.array([4, 5, 6])],
                "queries": [np.zeros(4, int), np.zeros(3, int)],
                "values": [np.ones(4), np.ones(3)],
                "first": np.array([1, 1]),
                "user": np.array([-1, 0]),
            }

    losses = []
    for negatives in (None, [[7]]):
        objective = _objective()
        opt = torch.optim.SGD(objective.parameters(), lr=0.0)
        train = objective.train_cfg
        losses.append(_train_epoch(objective, objective, opt, Shard(), train, negatives=negatives))
    assert losses[1]["loss"] > losses[0]["loss"]


def test_an_update_takes_the_champions_policy_with_its_own_over_it():
    from llmrec.workflows.update_plan import event_overrides, run_config

    champion = load_config(None, ["data.events={skip: negative, view: ignore}"])
    ours = load_config(None, ["data.events={view: positive}"])
    assert event_overrides(ours, champion) == {"skip": "negative", "view": "positive"}
    assert run_config(ours, champion, "models:/m/1").data.events == {
        "skip": "negative",
        "view": "positive",
    }
