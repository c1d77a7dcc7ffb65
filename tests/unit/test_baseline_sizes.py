"""Baselines at catalogue scale: the size rules of ``rank.cf: auto`` in jobs/evaluate.py's
table (never a dense items x items fit above the dense limit), and ``--max-users``."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from llmrec.config import RankConfig, load_config
from llmrec.data.catalogue import Catalogue
from llmrec.data.splits import leave_one_out
from llmrec.evaluation import offline, references, reports
from llmrec.modeling import baselines, cf, neighbours

ITEMS = 100


def synthetic(users: int = 120, items: int = ITEMS, seed: int = 0) -> tuple:
    """A log where every item has at least two users (2-core keeps all ``items``), some
    items far more popular than others, and a catalogue with categories."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.sqrt(np.arange(1, items + 1))
    rows = []
    for u in range(users):
        picked = [u % items, (u + 37) % items]
        rest = list(rng.choice(items, 12, replace=False, p=weights / weights.sum()))
        seq = list(dict.fromkeys([*rest, *picked]))
        rows += [(f"u{u}", f"i{i}", t) for t, i in enumerate(seq)]
    log = pa.table(
        {
            "user_id": [r[0] for r in rows],
            "item_id": [r[1] for r in rows],
            "timestamp": [r[2] for r in rows],
            "value": [1.0] * len(rows),
            "query": [None] * len(rows),
        }
    )
    table = pa.table(
        {
            "item_id": [f"i{i}" for i in range(items)],
            "title": [f"Item {i}" for i in range(items)],
            "text": [None] * items,
            "categories": [[f"c{i % 4}"] for i in range(items)],
        }
    )
    return leave_one_out(log, 2), Catalogue.from_table(table)


def protocol_of(max_users: int = 0, seed: int = 0) -> offline.Protocol:
    split, catalogue = synthetic()
    protocol = offline.Protocol.create(split, catalogue, frozenset(), max_users, seed)
    assert len(protocol.catalogue) == ITEMS
    return protocol


def test_the_rules_are_those_of_rank_cf_auto():
    dense = references.size_rules(ITEMS, RankConfig())
    assert (dense.cf, dense.itemknn, dense.notes) == ("ease", "dense", ())
    small = RankConfig(ease_max_items=50, sparse_max_items=1000)
    rules = references.size_rules(ITEMS, small)
    assert (rules.cf, rules.itemknn) == ("sparse", "sparse")
    ease, knn = rules.notes
    assert ease.startswith("ease: dense EASE skipped: 100 items > rank.ease_max_items=50")
    assert "sparse EASE instead" in ease
    assert knn.startswith("itemknn: dense ItemKNN skipped: 100 items > rank.ease_max_items=50")
    tiny = references.size_rules(ITEMS, RankConfig(ease_max_items=50, sparse_max_items=80))
    assert (tiny.cf, tiny.itemknn) == ("als", None)
    assert "ALS instead" in tiny.notes[0]
    assert tiny.notes[1] == (
        "itemknn: skipped: 100 items > rank.sparse_max_items=80 (neither its dense nor its "
        "sparse similarity would fit)"
    )
    # a dense fit beyond the memory available takes the sparse form under the limit too
    starved = references.size_rules(ITEMS, RankConfig(), available=100_000)
    assert (starved.cf, starved.itemknn) == ("sparse", "sparse")
    assert "needs ~0.4 MB, 0.1 MB available" in starved.notes[0]
    assert references.dense_fit_bytes("ease", 300_000) == 40 * 300_000**2  # 3.6 TB: skip
    assert references.cf_problem("ease", ITEMS, RankConfig(ease_max_items=50)).startswith(
        "cf ease: skipped: 100 items > rank.ease_max_items=50"
    )
    assert references.cf_problem("sparse", ITEMS, RankConfig(ease_max_items=50)) == ""


def _no_dense(monkeypatch) -> dict[str, int]:
    """Make every dense items x items fit fail, and count the sparse ones."""

    def dense(self, x):
        raise AssertionError(f"dense {type(self).__name__} fitted on {x.shape[1]} items")

    monkeypatch.setattr(baselines.EASE, "fit", dense)
    monkeypatch.setattr(baselines.ItemKNN, "fit", dense)
    calls = {"neighbourhood_ease": 0, "cosine_knn": 0, "fit_als": 0}
    home = {"neighbourhood_ease": neighbours, "cosine_knn": neighbours, "fit_als": cf}
    for name in calls:
        real = getattr(home[name], name)

        def counted(*args, _name=name, _real=real, **kwargs):
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(home[name], name, counted)
    return calls


def test_above_the_dense_limit_no_dense_fit_happens(monkeypatch):
    calls = _no_dense(monkeypatch)
    cfg = load_config(None, ["rank.ease_max_items=50"])
    lines: list[str] = []
    opts = reports.EvalOptions(lambdas=(10, 100), cf=("ease", "sparse"), method="ease+popularity")
    result = reports.evaluate_all(cfg, protocol_of(), opts, log=lines.append)
    methods = set(result.table["method"])
    assert not any(m.startswith("ease (") for m in methods) and "itemknn" not in methods
    sparse = result.params["baseline_cf"]
    assert sparse.startswith("sparse ease (k=50, lambda=") and sparse in methods
    assert {"popularity", "markov-1", "itemknn (k=50)", f"{sparse} + popularity"} <= methods
    assert f"cf {sparse}" in methods  # --cf sparse ran, --cf ease was skipped
    assert calls["neighbourhood_ease"] > 0 and calls["cosine_knn"] == 2  # val and test
    skipped = [line for line in lines if "skipped" in line]
    assert skipped == [
        "ease: dense EASE skipped: 100 items > rank.ease_max_items=50 (its 100 x 100 fit needs "
        "~0.4 MB); sparse EASE instead, as rank.cf: auto",
        "itemknn: dense ItemKNN skipped: 100 items > rank.ease_max_items=50; the top-50 cosine "
        "(sparse) instead",
        "cf ease: skipped: 100 items > rank.ease_max_items=50 (its 100 x 100 fit needs ~0.4 MB)"
        "; --cf sparse or als fit here",
    ]
    section = next(s for s in result.sections if s.startswith("## Baselines at this catalogue"))
    assert all(f"- {line}" in section for line in skipped)


def test_above_the_sparse_limit_als_and_no_itemknn(monkeypatch):
    calls = _no_dense(monkeypatch)
    cfg = load_config(None, ["rank.ease_max_items=50", "rank.sparse_max_items=80"])
    lines: list[str] = []
    result = reports.evaluate_all(cfg, protocol_of(), reports.EvalOptions(), log=lines.append)
    methods = set(result.table["method"])
    assert any(m.startswith("als (f=32") for m in methods)
    assert not any(m.startswith(("itemknn", "ease", "sparse")) for m in methods)
    assert calls["fit_als"] > 0 and calls["cosine_knn"] == 0
    assert "itemknn: skipped: 100 items > rank.sparse_max_items=80" in lines[1]
    with pytest.raises(ValueError, match="--method itemknn: skipped on this catalogue"):
        reports.evaluate_all(
            cfg, protocol_of(), reports.EvalOptions(method="itemknn", rerank_sweep=True)
        )


def test_under_the_limit_the_dense_baselines_stay():
    cfg = load_config(None, [])
    lines: list[str] = []
    result = reports.evaluate_all(
        cfg, protocol_of(), reports.EvalOptions(lambdas=(10, 100)), log=lines.append
    )
    methods = set(result.table["method"])
    assert "itemknn" in methods and any(m.startswith("ease (lambda=") for m in methods)
    assert not any("skipped" in line for line in lines)
    assert not any(s.startswith("## Baselines at this") for s in result.sections)


def test_max_users_scores_a_reproducible_sample_of_that_many_users():
    a, b = protocol_of(max_users=30, seed=7), protocol_of(max_users=30, seed=7)
    val, test = (a.scored(a.part(p)) for p in ("val", "test"))
    assert len(val.targets) == len(test.targets) == 30
    assert list(val.rows["user_id"]) == list(test.rows["user_id"])  # the same users
    again = b.scored(b.part("val"))
    assert list(again.rows["user_id"]) == list(val.rows["user_id"])  # seeded
    other = protocol_of(max_users=30, seed=8)
    assert set(other.scored(other.part("val")).rows["user_id"]) != set(val.rows["user_id"])
    everyone = protocol_of()
    assert len(everyone.scored(everyone.part("val")).targets) == everyone.split.num_users
    cfg = load_config(None, [])
    result = reports.evaluate_all(cfg, a, reports.EvalOptions(lambdas=(10,)), log=lambda _: None)
    for hr in result.table["hr_at_10"]:  # every rate is a count over the 30 users
        assert hr * 30 == pytest.approx(round(hr * 30))
    assert result.params["scored_users"] == f"30 of {a.split.num_users}"
