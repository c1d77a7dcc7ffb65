"""The experiment report's numbers on a small log checked by hand, the decision rule, the
simulated users and the in-process experiment's false-positive rate on a toy ranking."""

import numpy as np
import pandas as pd
import pytest
from llmrec.experiments import analyse, compare, markdown, metrics, ratio
from llmrec.experiments.analysis import units_frame
from llmrec.experiments.impressions import EVENTS_SCHEMA, IMPRESSIONS_SCHEMA
from llmrec.experiments.simulation import ClickModel, SimUser, request_body, run_session

ITEMS = ["a", "b", "c", "d", "e"]

# (unit, variant, latency ms, clicked positions) per answer of 5 items
ANSWERS = [
    ("A", "control", 10, [1]),
    ("A", "control", 20, []),
    ("B", "control", 30, []),
    ("C", "control", 40, [1, 3]),
    ("D", "challenger", 15, [1, 2]),
    ("E", "challenger", 25, [2]),
    ("E", "challenger", 35, [1, 4]),
    ("F", "challenger", 45, [5]),
]


def hand_log(copies: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    impressions, events = [], []
    for c in range(copies):
        for n, (unit, variant, ms, clicked) in enumerate(ANSWERS):
            rid = f"r{c}-{n}"
            version = "1" if variant == "control" else "2"
            impressions.append(
                {
                    "request_id": rid,
                    "timestamp": 1000.0 + 10 * c + n,
                    "experiment": "hand",
                    "variant": variant,
                    "model_uri": f"models:/m/{version}",
                    "model_version": version,
                    "unit": f"{unit}{c}",
                    "unit_kind": "user",
                    "user_id": f"{unit}{c}",
                    "session_id": None,
                    "items": ITEMS,
                    "latency_ms": float(ms),
                    "explored": [],
                }
            )
            for p in clicked:
                events.append((rid, f"{unit}{c}", ITEMS[p - 1], "click", 1.0, variant, p))
            if unit == "E":  # and a like that is not a click
                events.append((rid, f"{unit}{c}", "a", "like", 5.0, variant, 1))
    ev = pd.DataFrame(
        [
            {
                "request_id": r,
                "user_id": u,
                "item_id": i,
                "event": e,
                "value": v,
                "timestamp": 1,
                "experiment": "hand",
                "variant": var,
                "model_version": "1" if var == "control" else "2",
                "unit": u,
                "position": p,
            }
            for r, u, i, e, v, var, p in events
        ]
    )
    imp = pd.DataFrame(impressions)
    assert list(imp.columns) == IMPRESSIONS_SCHEMA.names and list(ev.columns) == EVENTS_SCHEMA.names
    return imp, ev


def test_the_report_numbers_on_a_hand_checked_log():
    imp, ev = hand_log()
    a = analyse(imp, ev, "hand", ["control", "challenger"], bootstrap=0)
    table = a.table.set_index("variant")
    # control: A 1 click / 10 shown, B 0 / 5, C 2 / 5 -> CTR 3/20; challenger: 6/20
    counts = ["users", "requests", "impressions", "click", "like"]
    assert table.loc["control", counts].tolist() == [3, 4, 20, 3, 0]
    assert table.loc["challenger", counts].tolist() == [3, 4, 20, 6, 2]
    assert table.loc["control", "ctr"] == 0.15 and table.loc["challenger", "ctr"] == 0.30
    assert table.loc["challenger", "value"] == 16.0  # 6 clicks + 2 likes of 5
    assert table.loc["challenger", "reward_per_user"] == 2.0  # clicks per user
    assert table.loc["control", "latency_p50_ms"] == 25.0  # of 10, 20, 30, 40
    assert table.loc["control", "latency_p95_ms"] == pytest.approx(38.5)
    assert table.loc["challenger", "versions"] == "2" and a.served["challenger"] == ["models:/m/2"]
    pos = a.positions.set_index(["variant", "position"])["ctr"]
    assert pos[("control", 1)] == 0.5 and pos[("control", 3)] == 0.25
    assert pos[("challenger", 1)] == 0.5 and pos[("challenger", 2)] == 0.5
    assert pos[("challenger", 5)] == 0.25 and pos[("control", 2)] == 0.0
    # delta method by hand: control x=[1,0,2], y=[10,5,5], R=0.15, mean y=20/3,
    # linearised (x - R y)/mean y = [-0.075, -0.1125, 0.1875], var 0.02671875, Var(R)
    # = 0.00890625; challenger x=[2,3,1], y=[5,10,5]: [0.075, 0, -0.075], var 0.005625,
    # Var(R) = 0.001875; se = sqrt(0.01078125) = 0.1038328
    (c,) = a.comparisons
    assert (c.control_value, c.challenger_value) == (0.15, 0.30)
    assert c.difference == pytest.approx(0.15)
    assert c.low == pytest.approx(0.15 - 1.959964 * 0.1038328, abs=1e-6)
    assert c.high == pytest.approx(0.15 + 1.959964 * 0.1038328, abs=1e-6)
    assert c.p_value == pytest.approx(0.14856, abs=1e-4)
    assert c.decision == "not yet distinguishable"
    # (1.96 + 0.8416)^2 (0.02671875 / 0.5 + 0.005625 / 0.5) / 0.15^2 = 22.57 -> 23 users
    assert c.users_needed == 23
    assert "NOT YET DISTINGUISHABLE; about 23 users in all" in c.sentence()
    text = markdown(a)
    assert "| control | 1 | 3 | 4 | 20 | 3 | 0 | 3.0 | 0.1500 |" in text
    assert metrics(a)["challenger_vs_control/users_needed"] == 23.0


def test_enough_users_decide_and_the_interval_says_since_when():
    imp, ev = hand_log(copies=8)  # 24 users an arm, the same behaviour
    a = analyse(imp, ev, "hand", ["control", "challenger"], bootstrap=500)
    (c,) = a.comparisons
    assert c.decision == "better" and c.low > 0
    assert c.decided_after is not None and c.decided_after <= sum(c.users)
    assert c.bootstrap[0] > 0 and abs(c.bootstrap[1] - c.high) < 0.05
    curve = a.cumulative["challenger"]
    width = (curve["high"] - curve["low"]).to_numpy()
    assert curve["users"].iloc[-1] == 48 and width[-1] < 0.7 * width[0]  # narrows with users
    flipped = analyse(imp, ev, "hand", ["challenger", "control"], bootstrap=0).comparisons[0]
    assert flipped.decision == "worse" and flipped.difference == pytest.approx(-0.15)
    per_user = compare(units_frame(_frame(a, imp, ev)), "control", "challenger", "reward_per_user")
    assert per_user.control_value == 1.0 and per_user.challenger_value == 2.0


def _frame(a, imp, ev):
    from llmrec.experiments.analysis import requests_frame

    return requests_frame(imp, ev)


def test_ratio_is_the_per_user_mean_when_each_user_counts_once():
    x = np.array([1.0, 0.0, 3.0, 2.0])
    r, var, s2 = ratio(x, np.ones(4))
    assert (
        r == 1.5 and var == pytest.approx(x.var(ddof=1) / 4) and s2 == pytest.approx(x.var(ddof=1))
    )


def test_users_served_by_two_variants_are_left_out_and_said():
    imp, ev = hand_log(copies=2)
    moved = imp.iloc[[0]].assign(request_id="extra", variant="challenger")
    a = analyse(pd.concat([imp, moved]), ev, "hand", ["control", "challenger"], bootstrap=0)
    assert any("1 users were served by more than one variant" in w for w in a.warnings)
    assert sum(a.comparisons[0].users) == 11  # 12 users, one left out


def test_a_session_clicks_its_future_and_sends_the_request_id():
    user = SimUser("u1", tuple(f"p{i}" for i in range(300)), ("f1", "f2"))
    body = request_body(user, 1, k=5, max_history=200)
    assert body["history"][-1] == "f1" and len(body["history"]) == 200
    assert body["exclude"] == [f"p{i}" for i in range(101)] and body["session_id"] == "u1"
    sent = []

    def recommend(u, step, b):
        return f"req-{step}", ["f2", "x", "f1"] if step == 0 else ["f2", "y"]

    result = run_session(user, recommend, sent.extend, ClickModel(), np.random.default_rng(0), k=3)
    assert sent[0] == {"user_id": "u1", "item_id": "f2", "event": "click", "request_id": "req-0"}
    assert result.requests == 2 and result.future_clicks == result.clicks == len(sent)
    assert "f2" not in {e["item_id"] for e in sent[1:]}  # clicked once
    looks = [ClickModel.looks(p) for p in (1, 2, 3, 10)]
    assert looks[:2] == [1.0, pytest.approx(0.6309, abs=1e-4)] and looks[3] < looks[2]


def test_the_futures_are_held_out_of_the_training_data(tmp_path):
    """Versions trained on the held-out copy never saw what the simulated users will do."""
    import pyarrow.parquet as pq
    from llmrec.config import DataConfig
    from llmrec.data.prepare import load_source
    from llmrec.experiments.simulation import hold_out_futures, load_users

    data = DataConfig(demo_users=40, demo_items=60)
    users = load_users("demo", data, future=2)
    n = hold_out_futures("demo", data, tmp_path / "past", future=2)
    assert n == 2 * len(users) > 0
    kept = pq.read_table(tmp_path / "past" / "interactions.parquet").to_pandas()
    seen = set(zip(kept["user_id"], kept["item_id"], strict=True))
    full = load_source("demo", data).interactions.num_rows
    assert len(kept) == full - n
    for u in users:
        assert all((u.user_id, i) not in seen for i in u.future)
        assert {i for i in u.past} <= {i for (v, i) in seen if v == u.user_id}
    raw = load_source(str(tmp_path / "past"), data)  # a folder in the data contract
    assert raw.interactions.num_rows == len(kept)
