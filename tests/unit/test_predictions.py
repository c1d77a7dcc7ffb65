"""Comparing with what a team has: the split written out, another model's predictions read
and scored with the same protocol and masking as the baselines."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from llmrec.evaluation import offline, reports
from llmrec.evaluation.metrics import target_ranks, top_k_lists
from llmrec.evaluation.predictions import PredictionsError, read_predictions, score_predictions
from llmrec.evaluation.split_export import export_split
from llmrec.modeling.baselines import EASE, Popularity, interaction_matrix

from tests.unit.test_baseline_sizes import protocol_of


def popularity_scores(protocol: offline.Protocol, name: str) -> np.ndarray:
    """Our popularity baseline's scores of the part's scored users."""
    full = protocol.part(name)
    part = protocol.scored(full)
    n = len(protocol.catalogue)
    model = Popularity().fit(interaction_matrix(full.fit_histories, n))
    return model.score(interaction_matrix(part.histories, n))


def as_rows(protocol: offline.Protocol, name: str, scores: np.ndarray, split: bool = True):
    part = protocol.scored(protocol.part(name))
    ids = protocol.catalogue.ids
    frame = pd.DataFrame(
        {
            "user_id": np.repeat(part.rows["user_id"].to_numpy(), len(ids)),
            "item_id": np.tile(np.array(ids, dtype=object), len(part.targets)),
            "score": scores.ravel().astype(np.float64),
        }
    )
    return frame.assign(split=name) if split else frame


def test_a_file_of_our_popularity_ranking_scores_exactly_as_popularity(tmp_path):
    protocol = protocol_of()
    frames = [as_rows(protocol, p, popularity_scores(protocol, p)) for p in ("val", "test")]
    path = tmp_path / "pop.csv"
    pd.concat(frames).to_csv(path, index=False)
    found = score_predictions(protocol, read_predictions("pop-file", path))
    ours = offline.score_table(
        protocol, {"popularity": {p: popularity_scores(protocol, p) for p in ("val", "test")}}
    )
    for row in found.rows:
        (mine,) = ours[ours["split"] == row["split"]].to_dict("records")
        assert row["missing_users"] == 0
        assert {k: v for k, v in row.items() if k not in ("method", "missing_users")} == {
            k: v for k, v in mine.items() if k != "method"
        }  # every measure, exactly: accuracy and the list measures
    assert [r["split"] for r in found.rows] == ["val", "test"]
    assert "0 missing" in found.notes[0] and "masked" in found.notes[0]  # seen items listed


def test_top_lists_score_the_accuracy_at_10_and_20_exactly(tmp_path):
    """A top-20 list (history already filtered, as a library's recommend() gives) scores
    HR and NDCG at 10 and 20 exactly as the full ranking it came from; Parquet, rank."""
    protocol = protocol_of()
    n = len(protocol.catalogue)
    full = protocol.part("test")
    x = interaction_matrix(full.fit_histories, n)
    scores = EASE(10.0).fit(x).score(interaction_matrix(full.histories, n))
    top = top_k_lists(scores, full.histories, 20)
    ids = np.array(protocol.catalogue.ids, dtype=object)
    frame = pd.DataFrame(
        {
            "user_id": np.repeat(full.rows["user_id"].to_numpy(), 20),
            "item_id": ids[top.ravel()],
            "rank": np.tile(np.arange(1, 21), len(top)),
        }
    )
    frame.to_parquet(tmp_path / "ease.parquet")
    found = score_predictions(protocol, read_predictions("ease-top20", tmp_path / "ease.parquet"))
    (row,) = found.rows
    mine = offline.evaluate(protocol, full, scores)
    for k in ("hr_at_10", "ndcg_at_10", "hr_at_20", "ndcg_at_20"):
        assert row[k] == mine[k], k
    assert row["mrr"] <= mine["mrr"]  # beyond its list a target ranks last
    assert "validation: no rows (no split column" in found.notes[0]


def test_missing_users_count_as_misses_and_are_counted(tmp_path):
    protocol = protocol_of()
    scores = popularity_scores(protocol, "test")
    rows = as_rows(protocol, "test", scores, split=False)
    test = protocol.part("test")
    hits = [
        u
        for u, r in zip(
            test.rows["user_id"],
            target_ranks(scores, test.targets, test.histories),
            strict=True,
        )
        if r < 10
    ][:5]
    assert len(hits) == 5
    rows.to_csv(tmp_path / "all.csv", index=False)
    rows[~rows["user_id"].isin(hits)].to_csv(tmp_path / "some.csv", index=False)
    (whole,) = score_predictions(protocol, read_predictions("a", tmp_path / "all.csv")).rows
    found = score_predictions(protocol, read_predictions("b", tmp_path / "some.csv"))
    (part,) = found.rows
    users = len(test.targets)
    assert part["missing_users"] == 5 and whole["missing_users"] == 0
    assert part["hr_at_10"] == pytest.approx(whole["hr_at_10"] - 5 / users)
    assert part["ndcg_at_10"] < whole["ndcg_at_10"]
    assert f"{users - 5:,} of {users:,} users scored with a list, 5 missing" in found.notes[1]


def test_unknown_items_are_reported_and_seen_items_masked(tmp_path):
    protocol = protocol_of()
    rows = as_rows(protocol, "test", popularity_scores(protocol, "test"), split=False)
    test = protocol.part("test")
    user, seen = test.rows["user_id"][0], test.rows["history"][0][0]
    rows.loc[(rows["user_id"] == user) & (rows["item_id"] == seen), "score"] = 1e9
    extra = pd.DataFrame(
        {"user_id": [user, user], "item_id": ["gone", "gone2"], "score": [5e9, 4e9]}
    )
    pd.concat([rows, extra]).to_csv(tmp_path / "p.csv", index=False)
    found = score_predictions(protocol, read_predictions("p", tmp_path / "p.csv"))
    ours = offline.evaluate(protocol, test, popularity_scores(protocol, "test"))
    (row,) = found.rows
    assert row["hr_at_10"] == ours["hr_at_10"] and row["ndcg_at_10"] == ours["ndcg_at_10"]
    note = found.notes[1]
    assert "2 rows of 2 items outside the ranked catalogue dropped (e.g. 'gone', 'gone2')" in note
    assert "rows of items the user had seen masked" in note


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("user_id,item,score\nu1,i1,1\n", r"no column 'item_id' \(it has: user_id, item, score\)"),
        ("user_id,item_id\nu1,i1\n", r"no column 'score' or 'rank' \(it has: user_id, item_id\)"),
        ("user_id,item_id,score\nu1,i1,1\nu1,i2,abc\n", r"column 'score', line 3: 'abc' is not"),
        ("user_id,item_id,score\nu1,i1,1\nu1,i2,inf\n", r"column 'score', line 3: 'inf' is not"),
        ("user_id,item_id,score\nu1,,1\n", r"column 'item_id', line 2: empty value"),
        (
            "user_id,item_id,score,split\nu1,i1,1,val\nu1,i2,1,train\n",
            r"column 'split', line 3: 'train' is not one of val, validation, test",
        ),
        (
            "user_id,item_id,score\nu1,i1,1\nu2,i1,1\nu1,i1,2\n",
            r"line 4 repeats user 'u1' and item 'i1' of line 2",
        ),
        ("user_id,item_id,score\n", r"no rows"),
    ],
)
def test_a_bad_file_names_the_file_the_column_and_the_value(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(PredictionsError, match=message) as err:
        read_predictions("mine", path)
    assert str(err.value).startswith(str(path))


def test_unreadable_files_and_names_are_refused(tmp_path):
    with pytest.raises(PredictionsError, match="no such file"):
        read_predictions("mine", tmp_path / "none.csv")
    (tmp_path / "p.json").write_text("{}")
    with pytest.raises(PredictionsError, match="unknown file type"):
        read_predictions("mine", tmp_path / "p.json")
    (tmp_path / "p.parquet").write_text("not parquet")
    with pytest.raises(PredictionsError, match="cannot be read as Parquet"):
        read_predictions("mine", tmp_path / "p.parquet")
    with pytest.raises(PredictionsError, match="label of a method the table computes"):
        read_predictions("popularity", tmp_path / "p.parquet")
    # integer ids in Parquet read as their decimal string, as the data contract does
    pd.DataFrame({"user_id": [1], "item_id": [2], "rank": [1]}).to_parquet(tmp_path / "i.parquet")
    frame = read_predictions("ints", tmp_path / "i.parquet").parts["test"]
    assert frame[["user_id", "item_id", "value"]].values.tolist() == [["1", "2", -1.0]]


def test_exported_split_is_the_protocols_and_a_model_trained_on_it_scores_the_same(tmp_path):
    """Export, fit popularity from the exported parts with pandas alone (as a team would),
    score: the same as our popularity baseline. With --max-users only the sample is scored."""
    protocol = protocol_of(max_users=40, seed=3)
    out = export_split(protocol, tmp_path / "split", {"source": "synthetic"})
    train = pd.read_parquet(out / "train.parquet")
    val, test = (pd.read_parquet(out / f) for f in ("validation.parquet", "test.parquet"))
    assert list(train.columns) == ["user_id", "item_id", "timestamp", "value", "query"]
    seq = protocol.split.sequences
    assert len(train) == int((seq["items"].map(len) - 2).sum())
    assert len(val) == len(test) == protocol.split.num_users
    users = pd.read_parquet(out / "users.parquet")
    assert int(users["scored"].sum()) == 40
    items = pd.read_parquet(out / "items.parquet")
    assert list(items["item_id"]) == list(protocol.catalogue.ids) and not items["cold"].any()
    masked = pd.read_parquet(out / "masked.parquet")
    part = protocol.part("test")
    first = part.rows["user_id"][0]
    mine = masked[(masked["split"] == "test") & (masked["user_id"] == first)]["item_id"]
    assert set(mine) == set(part.rows["history"][0])
    meta = json.loads((out / "split.json").read_text())
    assert meta["scored_users"] == 40 and meta["source"] == "synthetic"
    lines = (out / "split.jsonl").read_text().splitlines()
    assert len(lines) == protocol.split.num_users and set(json.loads(lines[0])) == {
        "user_id",
        "history",
        "val",
        "test",
    }

    # a team's model: popularity over train + validation, scored for the sampled users
    seen = pd.concat([train, val])
    counts = seen.groupby("item_id")["user_id"].nunique()
    wanted = users.loc[users["scored"], "user_id"]
    preds = pd.DataFrame(
        [(u, i, float(counts.get(i, 0))) for u in wanted for i in items["item_id"]],
        columns=["user_id", "item_id", "score"],
    )
    preds.to_csv(tmp_path / "team.csv", index=False)
    (row,) = score_predictions(protocol, read_predictions("team", tmp_path / "team.csv")).rows
    ours = offline.evaluate(
        protocol, protocol.scored(protocol.part("test")), popularity_scores(protocol, "test")
    )
    assert {k: row[k] for k in ours} == ours


def test_the_job_exports_then_scores_a_file_beside_the_baselines(tmp_path, monkeypatch, capsys):
    sys.modules.pop("evaluate", None)
    import evaluate  # jobs/evaluate.py
    from llmrec.registry import store as registry

    monkeypatch.setattr(registry, "use_tracking", lambda cfg: "")  # --no-log: nothing to log
    data = ["--data", "demo", "--set", "data.demo_users=60", "--set", "data.demo_items=80"]
    out = tmp_path / "split"
    assert evaluate.main([*data, "--max-users", "25", "--export-split", str(out)]) == 0
    assert (
        "; scored: 25 of 60 users (a random sample, seed 0) (users.parquet)"
        in capsys.readouterr().out
    )
    train = pd.read_parquet(out / "train.parquet")
    test = pd.read_parquet(out / "test.parquet")
    users = pd.read_parquet(out / "users.parquet")
    counts = train.groupby("item_id").size()
    rows = [
        (u, i, s, part)
        for part in ("val", "test")
        for u in users.loc[users["scored"], "user_id"]
        for i, s in counts.nlargest(30).items()
    ]
    pd.DataFrame(rows, columns=["user_id", "item_id", "score", "split"]).to_csv(
        tmp_path / "top.csv", index=False
    )
    args = [*data, "--max-users", "25", "--ease-lambdas", "10", "--no-log"]
    assert evaluate.main([*args, "--predictions", f"top30={tmp_path / 'top.csv'}"]) == 0
    printed = capsys.readouterr().out
    assert "scored: 25 of 60 users (a random sample, seed 0) per split" in printed
    assert "| top30 | test |" in printed and "| top30 | val |" in printed
    assert "## Predictions read" in printed and "missing_users" in printed
    assert len(test) == 60
    (tmp_path / "bad.csv").write_text("user_id,item_id,score\nu1,i1,high\n")
    with pytest.raises(SystemExit) as code:
        evaluate.main([*args, "--predictions", f"bad={tmp_path / 'bad.csv'}"])
    assert code.value.code == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'bad.csv'}: column 'score', line 2: 'high' is not a finite" in err
    with pytest.raises(SystemExit):
        evaluate.main([*args, "--predictions", "no-path"])
    assert "--predictions takes NAME=PATH" in capsys.readouterr().err


def test_the_table_carries_the_predictions_row_and_its_missing_users(tmp_path):
    protocol = protocol_of()
    rows = as_rows(protocol, "test", popularity_scores(protocol, "test"), split=False)
    rows[rows["user_id"] != protocol.part("test").rows["user_id"][0]].to_csv(
        tmp_path / "p.csv", index=False
    )
    from llmrec.config import load_config

    result = reports.evaluate_all(
        load_config(None, []),
        protocol,
        reports.EvalOptions(lambdas=(10,), groups=True, method="popularity"),
        log=lambda _: None,
        predictions=[read_predictions("mine", tmp_path / "p.csv")],
    )
    table = result.table
    assert table.loc[table["method"] == "mine", "missing_users"].tolist() == [1]
    assert (table.loc[table["method"] != "mine", "missing_users"] == 0).all()
    assert "| mine |" in result.sections[0] and "evaluation/predictions.md" in result.texts
    assert any("| mine |" in s for s in result.sections if s.startswith("## Beside"))


def test_a_file_of_none_of_the_scored_users_scores_zero(tmp_path):
    protocol = protocol_of()
    pd.DataFrame({"user_id": ["nobody"], "item_id": ["i1"], "score": [1.0]}).to_csv(
        tmp_path / "p.csv", index=False
    )
    found = score_predictions(protocol, read_predictions("none", tmp_path / "p.csv"))
    (row,) = found.rows
    assert row["hr_at_20"] == 0.0 and row["missing_users"] == protocol.split.num_users
    assert "coverage" not in row  # no list to measure
    assert "rows of 1 user not in the split ignored" in found.notes[1]
