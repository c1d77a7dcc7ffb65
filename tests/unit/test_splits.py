import numpy as np
import pandas as pd
import pyarrow as pa
from llmrec.data.catalogue import Catalogue
from llmrec.data.prepare import load_source, prepare
from llmrec.data.splits import drop_items, hold_out_items, k_core, leave_one_out
from llmrec.evaluation.offline import Protocol


def _log(rows):
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).assign(
        value=1.0, query=None
    )


def test_k_core_is_iterative():
    # With k=2: item c has 1 interaction -> dropped; then user z has 1 -> dropped;
    # then item d (only z and y) has 1 -> dropped; y is left with a, b.
    rows = [
        ("x", "a", 1),
        ("x", "b", 2),
        ("y", "a", 1),
        ("y", "b", 2),
        ("y", "d", 3),
        ("z", "d", 1),
        ("z", "c", 2),
    ]
    out = k_core(_log(rows), 2)
    assert sorted(map(tuple, out[["user_id", "item_id"]].to_numpy())) == [
        ("x", "a"),
        ("x", "b"),
        ("y", "a"),
        ("y", "b"),
    ]


def test_leave_one_out_by_time_then_numeric_item_id():
    rows = [("u", "10", 5), ("u", "9", 5), ("u", "3", 1), ("u", "7", 9), ("u", "8", 7)]
    split = leave_one_out(_log(rows), min_core=1)
    assert split.sequences.loc[0, "items"] == ["3", "9", "10", "8", "7"]  # 9 < 10 numerically
    val, test = split.part("val").iloc[0], split.part("test").iloc[0]
    assert (val["history"], val["target"]) == (["3", "9", "10"], "8")
    assert (test["history"], test["target"]) == (["3", "9", "10", "8"], "7")
    assert split.train_sequences().loc[0, "items"] == ["3", "9", "10"]


def test_ml100k_5core_matches_the_protocol(ml100k, tmp_path):
    prepared = prepare(load_source(str(ml100k)), tmp_path)
    split = leave_one_out(prepared.interactions, 5)
    seq = split.sequences
    assert split.num_users == 943
    assert len({i for items in seq["items"] for i in items}) == 1349
    assert int(seq["items"].map(len).sum()) == 99_287


def test_cold_items_are_held_out_of_training_and_found_in_the_protocol():
    rows = [(u, i, t) for u in "uvwxyz" for t, i in enumerate("abcdefgh") if (ord(u) + t) % 5]
    split = leave_one_out(_log(rows), 2)
    cold = hold_out_items(split, 0.25, seed=1)
    assert len(cold) == 2 and cold <= split.item_ids()
    assert hold_out_items(split, 0.25, seed=1) == cold  # seeded
    train = drop_items(split.train_sequences(), cold)
    assert not {i for s in train["items"] for i in s} & cold
    assert all(len(s) == len(v) for s, v in zip(train["items"], train["values"], strict=True))
    items = pa.table(
        {
            "item_id": list("abcdefgh"),
            "title": list("ABCDEFGH"),
            "text": [None] * 8,
            "categories": [["x"]] * 8,
        }
    )
    protocol = Protocol.create(split, Catalogue.from_table(items), cold)
    test = protocol.part("test")
    index = protocol.catalogue.index
    expected = [u for u, t in enumerate(test.rows["target"]) if t in cold]
    assert test.cold_rows.tolist() == expected
    for full, fit in zip(test.histories, test.fit_histories, strict=True):
        assert [i for i in full if protocol.catalogue.ids[i] not in cold] == fit
    assert {index[c] for c in cold} & {i for h in test.histories for i in h}  # still masked


def test_item_log_frequency_is_the_smoothed_share_of_training_interactions(tmp_path):
    from llmrec.data.pipeline import item_log_frequency

    sequences = pd.DataFrame({"user_id": ["u", "v"], "items": [["a", "b", "a"], ["a", "zz"]]})
    sequences.to_parquet(tmp_path / "seq.parquet", index=False)
    items = pa.table(
        {
            "item_id": ["a", "b", "c"],
            "title": ["A", "B", "C"],
            "text": [None] * 3,
            "categories": [["x"]] * 3,
        }
    )
    log_q = item_log_frequency(tmp_path / "seq.parquet", Catalogue.from_table(items))
    # counts a 3, b 1, c 0 (not in the catalogue: zz), each plus one: 4 / 2 / 1 of 7
    assert log_q.dtype.name == "float32"
    assert [round(float(x), 4) for x in log_q] == [
        round(float(np.log(n / 7)), 4) for n in (4, 2, 1)
    ]


def test_protocol_without_categories_measures_diversity_on_item_vectors_or_not_at_all():
    import math

    from llmrec.evaluation.offline import evaluate

    rng = np.random.default_rng(0)
    rows = [
        (f"u{u}", f"i{i}", t)
        for u in range(30)
        for t, i in enumerate(rng.choice(12, 6, replace=False))
    ]
    log = pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "value": [1.0] * len(rows),
            "query": [None] * len(rows),
        }
    )
    items = pa.table(
        {
            "item_id": [f"i{i}" for i in range(12)],
            "title": [f"Item {i}" for i in range(12)],
            "text": [None] * 12,
            "categories": [[] for _ in range(12)],
        }
    )
    protocol = Protocol.create(leave_one_out(log, 2), Catalogue.from_table(items))
    assert protocol.diversity_vectors is None
    assert protocol.diversity_basis == "undefined: the items have no categories"
    part = protocol.part("test")
    scores = rng.random((len(part.targets), len(protocol.catalogue)))
    assert math.isnan(evaluate(protocol, part, scores)["diversity"])
    embedded = protocol.with_item_vectors(rng.normal(size=(len(protocol.catalogue), 8)), "m/1")
    assert embedded.diversity_basis == "item embeddings of m/1"
    assert 0.0 < evaluate(embedded, part, scores)["diversity"] < 2.0
