import pandas as pd
from llmrec.data.prepare import load_source, prepare
from llmrec.data.splits import k_core, leave_one_out


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
