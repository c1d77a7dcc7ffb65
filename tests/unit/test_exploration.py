"""Exploration (llmrec.experiments.exploration): which items of the model's wider list get
the exploration slots, over the evidence the impression log keeps; the log's marks and the
report's CTR of explored and exploited slots."""

import asyncio
from dataclasses import replace

import numpy as np
import pytest
from llmrec.api.schemas import RecommendRequest
from llmrec.experiments import analyse, markdown
from llmrec.experiments.attribution import Attributed, Impression
from llmrec.experiments.exploration import (
    EvidenceRows,
    ExploreSettings,
    ItemEvidence,
    explore,
    explore_key,
    look_weight,
)
from llmrec.experiments.impressions import ImpressionLog, read_log
from llmrec.serving import CandidateRanker, QueryBuilder, ServeSettings
from llmrec.serving.catalogue_state import CatalogueState, LiveItem, sync
from pydantic import ValidationError

from serve_deployments.exploring import Explorer
from tests.unit.test_live_catalogue import N, make_bundle

K, WIDE = 10, 40
SCORES = np.linspace(3.0, 0.0, WIDE)  # the model's wider list, best first
SETTINGS = ExploreSettings(pool=WIDE - K, max_impressions=1000, prior_strength=20.0)


def fresh(**rows: tuple[int, float, int]) -> EvidenceRows:
    """No evidence except ``rows``: row index (as ``r12``) -> (shown, looked, clicks)."""
    shown, looked, clicks = np.zeros(WIDE), np.zeros(WIDE), np.zeros(WIDE)
    for name, (s, lk, c) in rows.items():
        r = int(name[1:])
        shown[r], looked[r], clicks[r] = s, lk, c
    return EvidenceRows(shown, looked, clicks, total_looked=5000.0, total_clicks=250.0)


def picked(evidence: EvidenceRows, share: float = 0.1, keys: int = 300) -> dict[int, int]:
    """How often each wide-list row took an exploration slot over ``keys`` requests."""
    out: dict[int, int] = {}
    for n in range(keys):
        chosen = explore(SCORES, K, share, evidence, explore_key(f"u{n}", "h"), SETTINGS)
        for p in chosen.explored:
            row = chosen.order[p - 1]
            out[row] = out.get(row, 0) + 1
    return out


def test_the_same_request_draws_the_same_list_and_others_draw_differently():
    evidence = fresh()
    first = explore(SCORES, K, 0.2, evidence, explore_key("alice", "h1"), SETTINGS)
    again = explore(SCORES, K, 0.2, evidence, explore_key("alice", "h1"), SETTINGS)
    assert first == again  # a reload shows the same list
    others = {
        tuple(explore(SCORES, K, 0.2, evidence, explore_key(f"u{n}", "h1"), SETTINGS).order)
        for n in range(50)
    }
    assert len(others) > 20  # other users, other draws


def test_share_is_respected_and_explored_items_fill_the_lower_half():
    evidence = fresh()
    for share, low, high in ((0.0, 0, 0), (0.1, 1, 1), (0.2, 2, 2), (0.5, 5, 5)):
        for n in range(40):
            chosen = explore(SCORES, K, share, evidence, explore_key(f"u{n}", ""), SETTINGS)
            assert low <= len(chosen.explored) <= high
            assert len(chosen.order) == K and len(set(chosen.order)) == K
            assert all(p > K // 2 for p in chosen.explored)
            exploited = [r for p, r in enumerate(chosen.order, 1) if p not in chosen.explored]
            assert exploited == list(range(len(exploited)))  # the model's order, unchanged
            assert all(chosen.order[p - 1] >= len(exploited) for p in chosen.explored)
    counts = [
        len(explore(SCORES, K, 0.15, evidence, explore_key(f"u{n}", ""), SETTINGS).explored)
        for n in range(400)
    ]
    assert set(counts) == {1, 2} and 0.4 < np.mean(counts) - 1 < 0.6  # 1.5 slots on average


def test_an_item_shown_often_and_never_clicked_stops_being_explored():
    before = picked(fresh())
    assert before.get(12, 0) > 0  # fresh, it gets its turns
    ignored = picked(fresh(r12=(600, 400.0, 0)))
    assert ignored.get(12, 0) == 0
    capped = picked(fresh(r12=(1000, 600.0, 200)))  # clicked, but shown max_impressions times
    assert capped.get(12, 0) == 0


def test_an_item_that_earns_clicks_keeps_its_place():
    liked = picked(fresh(r30=(200, 120.0, 36)))  # 0.3 clicks per look; the base is 0.05
    assert liked.get(30, 0) >= 0.8 * 300  # fresh, that row had about 1 in 30
    # and the model's prior alone favours what it ranks higher
    alone = picked(fresh())
    assert alone.get(K, 0) > alone.get(WIDE - 1, 0)


def test_a_short_list_and_no_candidates_left_are_fine():
    none = EvidenceRows(np.zeros(5), np.zeros(5), np.zeros(5), 0.0, 0.0)
    chosen = explore(SCORES[:5], K, 0.2, none, explore_key("u", ""), SETTINGS)
    assert sorted(chosen.order) == list(range(5))
    every = fresh(**{f"r{r}": (2000, 1000.0, 0) for r in range(WIDE)})
    chosen = explore(SCORES, K, 0.2, every, explore_key("u", ""), SETTINGS)
    assert chosen.explored == () and chosen.order == list(range(K))


def test_a_negative_or_too_large_share_is_refused_naming_the_field():
    for bad in (-0.1, 0.6):
        with pytest.raises(ValidationError) as err:
            RecommendRequest.model_validate({"history": ["1"], "explore": bad})
        assert err.value.errors()[0]["loc"] == ("explore",)
    assert RecommendRequest.model_validate({"history": ["1"], "explore": 0}).explore == 0.0


def _answer(rid: str, items: tuple[str, ...], explored: tuple[int, ...]) -> Impression:
    return Impression(
        rid, 1e9, "x", "control", "models:/m/1", "1", "u", "user", "u", None, items, 5.0, explored
    )


def _click(rid: str, item: str, position: int) -> Attributed:
    return Attributed(rid, "u", item, "click", 1.0, 1, "x", "control", "1", "u", position)


def test_the_log_marks_explored_slots_and_keeps_the_same_evidence_as_memory(tmp_path):
    log = ImpressionLog(tmp_path / "log.sqlite", tmp_path / "segments")
    memory = ItemEvidence()
    answers = [
        _answer("r1", ("a", "b", "c", "d"), (4,)),
        _answer("r2", ("a", "c", "b", "e"), (3, 4)),
        _answer("r3", ("b", "a", "c", "d"), ()),
    ]
    clicks = [_click("r1", "d", 4), _click("r2", "a", 1), _click("r3", "b", 1)]
    for sink in (log, memory):
        sink.record(answers)
        sink.record_events(clicks)
    ids = ["a", "b", "c", "d", "e", "never"]
    on_disk, in_memory = log.evidence(ids), memory.evidence(ids)
    for field in ("shown", "looked", "clicks"):
        assert np.allclose(getattr(on_disk, field), getattr(in_memory, field))
    assert list(on_disk.shown) == [3, 3, 3, 2, 1, 0] and list(on_disk.clicks) == [1, 1, 0, 1, 0, 0]
    assert on_disk.looked[3] == pytest.approx(2 * look_weight(4))
    assert on_disk.total_clicks == 3 and on_disk.total_looked == pytest.approx(
        3 * sum(look_weight(p) for p in range(1, 5))
    )
    assert log.lookup(["r2"])["r2"].explored == (3, 4)
    log.export()
    impressions, events = read_log(tmp_path / "segments", "x")
    assert impressions["explored"].to_pylist() == [[4], [3, 4], []]
    report = analyse(impressions, events, "x", bootstrap=0)
    slots = report.slots.set_index("slot")
    # 3 explored slots, 1 click (r1's d); 9 others, 2 clicks
    assert slots.loc["explored", ["shown", "clicks"]].tolist() == [3, 1]
    assert slots.loc["exploited", ["shown", "clicks"]].tolist() == [9, 2]
    assert "CTR of exploration slots" in markdown(report)


def test_a_log_from_before_exploration_gains_the_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE impressions (seq INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT "
            "NOT NULL UNIQUE, timestamp REAL NOT NULL, experiment TEXT NOT NULL, variant TEXT "
            "NOT NULL, model_uri TEXT NOT NULL, model_version TEXT NOT NULL, unit TEXT NOT "
            "NULL, unit_kind TEXT NOT NULL, user_id TEXT, session_id TEXT, items TEXT NOT "
            "NULL, shown INTEGER NOT NULL, latency_ms REAL NOT NULL)"
        )
        conn.execute(
            "INSERT INTO impressions (request_id, timestamp, experiment, variant, model_uri, "
            "model_version, unit, unit_kind, items, shown, latency_ms) VALUES "
            "('old', 1, '', '', 'models:/m/1', '1', 'u', 'user', '[\"a\"]', 1, 2.0)"
        )
    log = ImpressionLog(path, tmp_path / "segments")
    assert log.lookup(["old"])["old"].explored == ()
    log.record([_answer("new", ("a",), (1,))])
    assert log.lookup(["new"])["new"].explored == (1,)


def test_an_unproven_new_item_is_explored_and_a_trained_popular_one_is_not():
    """Training interactions count as evidence: rows the version was trained on 50 times
    (50 * 100 impressions > max_impressions) never explore, however high the model ranks
    them; the new row the model ranks near the bottom (an unproven candidate) does."""
    trained = np.full(WIDE, 50.0)
    trained[[20, WIDE - 1]] = [60.0, 0.0]  # row 20: 6,000 impressions' worth
    trained[15] = 0.0  # a row of the pool the version never saw used
    evidence = replace(fresh(), trained=trained)
    slots = picked(evidence)
    assert set(slots) == {15, WIDE - 1} and sum(slots.values()) == 300  # one slot per list
    assert slots[WIDE - 1] >= 30  # ranked last, still about 1 list in 4 or more
    alone = picked(fresh())  # without the training counts, row 12 gets its turns
    assert alone.get(12, 0) > 0 and alone.get(WIDE - 1, 0) < slots[WIDE - 1]
    # the prior is surer for an item trained on: a few interactions narrow its draws
    memory = ItemEvidence(trained={"a": 4})
    rows = memory.evidence(["a", "new"])
    assert list(rows.trained) == [4.0, 0.0] and list(rows.seen(SETTINGS)) == [400.0, 0.0]


def test_a_bad_new_items_share_of_the_slots_falls_as_the_log_learns():
    """Ten unproven rows at the bottom of the list (the rest trained on): one nobody clicks,
    one users click half the times they look at it. Served 900 times, with the log's
    evidence growing: the bad row's share of the exploration slots falls to none and the good row
    takes over (seeded: the numbers are those of this draw)."""
    settings = ExploreSettings(pool=WIDE - K, max_impressions=5000)
    ids = [f"i{r}" for r in range(WIDE)]
    trained = {i: 100.0 for i in ids[: WIDE - 10]}
    memory, rng = ItemEvidence(trained), np.random.default_rng(0)
    bad, good = ids[WIDE - 4], ids[WIDE - 7]
    share = {bad: [], good: []}
    for n in range(900):
        chosen = explore(SCORES, K, 0.1, memory.evidence(ids), f"u{n}", settings)
        items = tuple(ids[r] for r in chosen.order)
        answer = _answer(f"r{n}", items, chosen.explored)
        clicks = []
        for p, item in enumerate(items, 1):
            chance = {bad: 0.0, good: 0.5}.get(item, 0.05) * look_weight(p)
            if rng.random() < chance:
                clicks.append(_click(f"r{n}", item, p))
        memory.record([answer])
        memory.record_events(clicks)
        on = {items[p - 1] for p in chosen.explored}
        for item in share:
            share[item].append(item in on)
    first, last = slice(0, 300), slice(600, 900)
    assert np.mean(share[bad][first]) >= 5 / 300 and np.mean(share[bad][last]) == 0.0
    assert np.mean(share[good][last]) == 1.0 > 0.9 > np.mean(share[good][first])


def test_the_ranker_adds_the_best_unproven_items_after_the_wide_list(tmp_path):
    """A query with ``unproven`` gets, after its k items, the best-scored of the items with
    fewer than max_impressions / trained_worth (300 / 20 = 15) training interactions, and of
    the items added live (none), over an exact index and over an approximate one alike."""
    bundle = make_bundle(tmp_path / "b")  # item i has N - i interactions: i16-i29 < 15
    state = CatalogueState(tmp_path / "catalogue.sqlite")
    state.upsert([LiveItem("new", "New arrival", None, ("Drama",))], "models:/m/1", [[-1.0, 0.0]])
    query = np.array([0.0, 1.0])  # points at item 15: the live item (angle pi) is far
    answers = []
    worth = {"explore_trained_worth": 20.0}  # the default is 100: 3 interactions
    for settings in (ServeSettings(**worth), ServeSettings(index="hnsw", candidates=5, **worth)):
        ranker, builder = CandidateRanker(bundle, settings), QueryBuilder(bundle)
        for target in (ranker, builder):
            sync(state, "models:/m/1", target)
        q = replace(builder.build(RecommendRequest(query="x", k=3)), unproven=N)
        got = [i.item_id for i in ranker.rank(query, q)]
        top, extra = got[:3], got[3:]
        assert top == [i.item_id for i in ranker.rank(query, replace(q, unproven=0))]
        unproven = {f"i{i:02d}" for i in range(16, N)} | {"new"}
        assert set(extra) == unproven - set(top) and "new" in extra  # nothing popular
        assert [i.item_id for i in ranker.rank(query, replace(q, unproven=2))][3:] == extra[:2]
        answers.append(got)
    assert answers[0] == answers[1]
    counts = ranker.trained()  # what the ingress adds to the evidence: the rows' own counts
    assert counts["i00"] == N and counts["i29"] == 1 and "new" not in counts


class RankerHandle:
    """The ranker deployment's handle, in this process (``handle.trained.remote(uri)``)."""

    def __init__(self, ranker: CandidateRanker) -> None:
        self.ranker, self.asked = ranker, []
        self.trained = self  # handle.trained.remote

    async def remote(self, uri: str) -> dict[str, int]:
        self.asked.append(uri)
        return self.ranker.trained()


def test_the_explorer_counts_the_training_evidence_the_ranker_counts(tmp_path):
    """The bundle ships 3 users' logs (item i00 twice, i03 never) while its hybrid holds
    N - i interactions for item i (every user it was trained on): the ingress's explorer
    asks the ranker for the counts, once per version, and explores only what the ranker
    offers as unproven (fewer than 300 / 100 = 3 interactions: i28 and i29). Counted from
    the shipped logs, every item but i00 and i10 (2 each: 200 impressions' worth) would be
    unproven and explored."""
    bundle = make_bundle(tmp_path / "b")
    settings = ServeSettings()  # explore_max_impressions 300, explore_trained_worth 100
    ranker, builder = CandidateRanker(bundle, settings), QueryBuilder(bundle)
    handle = RankerHandle(ranker)
    log = ImpressionLog(tmp_path / "log.sqlite", tmp_path / "segments")
    explorer = Explorer(settings, log, handle)  # type: ignore[arg-type]
    q = builder.build(RecommendRequest(query="x", k=K))
    wide = ranker.rank(np.array([1.0, 0.0]), explorer.widen(q))  # i00 first, i29 last
    assert len(wide) == N

    async def serve() -> tuple[dict[str, int], set[str]]:
        trained = await explorer.trained("models:/m/1")
        explored = set()
        for n in range(40):
            items, _ = await explorer.choose(wide, q, 0.2, f"u{n}", trained)
            explored |= {i.item_id for i in items if i.explore}
        assert await explorer.trained("models:/m/1") is trained  # asked once
        return trained, explored

    trained, explored = asyncio.run(serve())
    assert handle.asked == ["models:/m/1"]
    assert trained == ranker.trained() and trained["i00"] == N and trained["i03"] == N - 3
    shipped = [i for h in bundle.histories.values() for i in h]
    assert shipped.count("i00") == 2 and "i03" not in shipped  # what the logs alone say
    assert explored == {"i28", "i29"}
