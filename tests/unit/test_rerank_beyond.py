"""Calibrated and exposure-aware re-ranking, the one Reranker interface, and the
beyond-accuracy measures, on small cases checked by hand."""

import math

import numpy as np
import pyarrow as pa
import pytest
from llmrec.data.catalogue import Catalogue
from llmrec.ranking import ItemFacts, Reranker, SlateSpec, calibrated, greedy, long_tail
from llmrec.ranking.measures import exposure_by_value, miscalibration, tail_share
from llmrec.ranking.rerank import Candidates, category_distribution, history_distribution

REL = np.linspace(1.0, 0.1, 10)  # candidate i is the (i+1)-th most relevant


def test_every_knob_at_zero_keeps_the_relevance_order():
    rng = np.random.default_rng(0)
    rel = rng.standard_normal((3, 12))
    cands = Candidates(
        rel,
        vectors=rng.standard_normal((3, 12, 4)),
        genres=np.full((3, 12, 2), 0.5),
        history=np.full((3, 2), 0.5),
        tail=rng.random((3, 12)) < 0.5,
        codes={"provider": rng.integers(0, 3, (3, 12, 1))},
    )
    want = np.argsort(-rel, axis=1, kind="stable")[:, :5]
    for method in ("mmr", "msd", "dpp"):
        spec = SlateSpec(method, diversity=0.0, calibration=0.0, tail_share=0.0, max_per={})
        assert not spec.reorders
        assert greedy(cands, 5, spec).tolist() == want.tolist()
    # a cap no list can reach changes nothing either
    assert greedy(cands, 5, SlateSpec(max_per={"provider": 5})).tolist() == want.tolist()


def test_calibration_moves_the_list_to_the_history_distribution():
    # two genres; the user's history is half A, half B; the three A items are the most
    # relevant. Relevance alone: [A1, A2] (KL 1.96). Steck at 0.5: step 2 weighs
    # A2: 0.5 * 0.8 - 0.5 * 1.96 = -0.58 against B1: 0.5 * 0.4 - 0.5 * 0 = 0.2 -> B1.
    rel = np.array([1.0, 0.9, 0.8, 0.7, 0.6, 0.5])
    genres = np.array([[1, 0]] * 3 + [[0, 1]] * 3, dtype=float)
    history = np.array([0.5, 0.5])
    assert calibrated(rel, genres, history, 2, 0.0).tolist() == [0, 1]
    assert calibrated(rel, genres, history, 2, 0.5).tolist() == [0, 3]
    plain = miscalibration(np.array([[0, 1]]), history[None], genres)
    calib = miscalibration(np.array([[0, 3]]), history[None], genres)
    assert plain == pytest.approx(0.5 * math.log(0.5 / 0.995) + 0.5 * math.log(0.5 / 0.005))
    assert calib == pytest.approx(0.0, abs=1e-12)
    # a small knob keeps the relevance order: 0.9 * 0.8 - 0.1 * 1.96 > 0.9 * 0.4
    assert calibrated(rel, genres, history, 2, 0.1).tolist() == [0, 1]


def test_calibration_follows_a_skewed_history_too():
    # history 2/3 A, 1/3 B and a list of 3: two A and one B is the calibrated mix
    rel = np.array([1.0, 0.95, 0.9, 0.85, 0.3, 0.2])
    genres = np.array([[1, 0]] * 4 + [[0, 1]] * 2, dtype=float)
    picked = calibrated(rel, genres, np.array([2 / 3, 1 / 3]), 3, 0.6)
    assert sorted(picked.tolist()) == [0, 1, 4]


def test_tail_share_is_met_exactly_when_the_pool_allows():
    tail = np.arange(10) >= 5  # the five least relevant candidates are long-tail
    cands = Candidates(REL[None], tail=tail[None])
    # k=4, 50%: two tail items owed; the best two head and the best two tail, best first
    assert greedy(cands, 4, SlateSpec(tail_share=0.5)).tolist() == [[0, 1, 5, 6]]
    # 0.25 of 4: one tail item; 0.3 of 4 = 1.2: at least two (rounded up)
    assert greedy(cands, 4, SlateSpec(tail_share=0.25)).tolist() == [[0, 1, 2, 5]]
    assert greedy(cands, 4, SlateSpec(tail_share=0.3)).tolist() == [[0, 1, 5, 6]]
    assert greedy(cands, 4, SlateSpec(tail_share=1.0)).tolist() == [[5, 6, 7, 8]]


def test_tail_share_is_best_effort_when_the_pool_has_too_few_tail_items():
    tail = np.zeros(10, dtype=bool)
    tail[9] = True  # one tail candidate, three asked for
    got = greedy(Candidates(REL[None], tail=tail[None]), 4, SlateSpec(tail_share=0.75))
    assert got.tolist() == [[0, 1, 2, 9]]  # a full list with every tail item there is


def test_caps_per_attribute_value_are_honoured_exactly_when_feasible():
    provider = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3])[:, None]
    cands = Candidates(REL[None], codes={"provider": provider[None]})
    got = greedy(cands, 5, SlateSpec(max_per={"provider": 2}))
    assert got.tolist() == [[0, 1, 3, 4, 5]]  # the third item of provider 0 skipped
    got = greedy(cands, 4, SlateSpec(max_per={"provider": 1}))
    assert got.tolist() == [[0, 3, 5, 8]]


def test_caps_are_best_effort_when_infeasible():
    # 3 providers, at most 1 each, 5 slots: 3 within the caps, then the best of the rest
    provider = np.array([0, 0, 1, 1, 2, 2, 0, 0, 1, 1])[:, None]
    got = greedy(
        Candidates(REL[None], codes={"provider": provider[None]}),
        5,
        SlateSpec(max_per={"provider": 1}),
    )
    assert got.tolist() == [[0, 1, 2, 3, 4]]
    assert len(set(got[0].tolist())) == 5


def test_a_multi_valued_attribute_counts_once_per_value():
    # categories: item 0 is A and B, so after it neither A nor B may come again (cap 1)
    cats = np.array([[0, 1], [0, -1], [1, -1], [2, -1], [2, 0]] + [[3, -1]] * 5)
    got = greedy(
        Candidates(REL[None], codes={"categories": cats[None]}),
        3,
        SlateSpec(max_per={"categories": 1}),
    )
    assert got.tolist() == [[0, 3, 5]]


def test_tail_share_and_caps_together():
    provider = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])[:, None]
    tail = np.arange(10) >= 6
    cands = Candidates(REL[None], tail=tail[None], codes={"provider": provider[None]})
    got = greedy(cands, 4, SlateSpec(tail_share=0.5, max_per={"provider": 2}))
    picked = got[0].tolist()
    assert picked == [0, 1, 6, 7]
    assert tail[picked].sum() == 2
    assert np.bincount(provider[picked, 0]).max() <= 2


@pytest.mark.parametrize("bad", [{"diversity": 1.5}, {"calibration": -0.1}, {"tail_share": 2.0}])
def test_out_of_range_knobs_are_refused_by_name(bad):
    with pytest.raises(ValueError, match=f"{next(iter(bad))} must be in"):
        greedy(Candidates(REL[None]), 3, SlateSpec(**bad))


def _catalogue() -> Catalogue:
    table = pa.table(
        {
            "item_id": [f"i{i}" for i in range(6)],
            "title": [f"t{i}" for i in range(6)],
            "text": [None] * 6,
            "categories": [["A"], ["A"], ["A", "B"], ["B"], ["C"], ["C"]],
            "provider": ["p", "p", "p", "q", "q", "r"],
        }
    )
    return Catalogue.from_table(table)


def test_reranker_reads_attributes_from_the_catalogue_and_names_unknown_ones():
    cat = _catalogue()
    assert cat.attribute_names == ("categories", "provider")
    facts = ItemFacts.build(cat, cat.category_vectors(), np.array([50, 40, 30, 5, 4, 3]))
    assert facts.tail.tolist() == [False, False, True, True, True, True]  # top 20% = 2 items
    ranker = Reranker(facts, chunk=1)
    rows = np.array([[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0]])
    rel = np.array([np.linspace(1, 0, 6)] * 2)
    got = ranker.rerank(rows, rel, 3, SlateSpec(max_per={"provider": 1}))
    assert got.tolist() == [[0, 3, 5], [0, 1, 3]]  # rows [0, 3, 5] and [5, 4, 2]
    with pytest.raises(ValueError, match=r"unknown attribute\(s\) in max_per: 'colour' \(known"):
        ranker.rerank(rows, rel, 3, SlateSpec(max_per={"colour": 1}))
    with pytest.raises(ValueError, match="calibration needs the users' histories"):
        ranker.rerank(rows, rel, 3, SlateSpec(calibration=0.5))
    # chunks of one user give what one batch gives
    spec = SlateSpec("msd", diversity=0.5, calibration=0.3, tail_share=0.4)
    hist = [[0, 1], [3]]
    assert (
        Reranker(facts, chunk=1).rerank(rows, rel, 4, spec, hist).tolist()
        == Reranker(facts).rerank(rows, rel, 4, spec, hist).tolist()
    )


def test_long_tail_is_outside_the_top_fifth_by_interactions():
    assert long_tail(np.array([1, 9, 3, 7, 5, 0, 2, 8, 4, 6])).tolist() == [
        True, False, True, True, True, True, True, False, True, True,
    ]  # fmt: skip


def test_tail_share_and_exposure_by_value_count_list_slots():
    tail = np.array([False, False, True, True])
    top = np.array([[0, 2], [3, 1]])
    assert tail_share(top, tail) == 0.5
    codes = np.array([[0, -1], [1, -1], [0, 1], [2, -1]])
    shares = exposure_by_value(top, codes, ("A", "B", "C"))
    assert shares == {"A": 0.5, "B": 0.5, "C": 0.25}  # item 2 is both A and B


def test_history_distribution_weights_each_item_and_its_categories_equally():
    dist = category_distribution(np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 1]]))
    got = history_distribution(dist, [[0, 1], [2], [], [3, 0, 2]])
    assert got.tolist() == [[0.75, 0.25, 0.0], [0, 0, 0], [0, 0, 0], [0.5, 0.0, 0.5]]
