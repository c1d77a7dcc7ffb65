import numpy as np
import pandas as pd
import pytest
from llmrec.evaluation.metrics import ranking_metrics, target_ranks
from llmrec.evaluation.references import best_baseline, comparison
from llmrec.modeling.transitions import Transitions, markov_scores, transition_counts
from llmrec.ranking.hybrid import HybridScorer
from llmrec.ranking.moments import standardize
from llmrec.ranking.weights import HybridWeights, tune_weights

# 5 items; item 2 follows item 0 three times, item 3 follows item 0 once
HISTORIES = [[0, 2, 1], [0, 2], [4, 0, 2], [0, 3], [1, 1, 4]]


def test_counts_are_consecutive_pairs_in_order_without_self_transitions():
    c = transition_counts(HISTORIES, 5).toarray()
    assert c[0, 2] == 3 and c[0, 3] == 1 and c[2, 1] == 1 and c[4, 0] == 1
    assert c[2, 0] == 0  # order matters: 0 -> 2, never 2 -> 0
    assert c[1, 1] == 0 and c[1, 4] == 1  # a repeat is no transition
    assert c.sum() == 7


def test_markov_ranks_by_what_followed_the_last_item_popularity_breaks_ties():
    scores = markov_scores(HISTORIES, [[1, 0], [3]], 5)
    # after item 0: item 2 (3 times), then item 3 (once), then the others by popularity
    assert list(np.argsort(-scores[0])[:2]) == [2, 3]
    # nothing ever followed item 3: popularity alone (0: 5 users, 2: 3, 1: 3, 4: 2, 3: 1)
    assert int(np.argmax(scores[1])) == 0
    # the tie-break never outranks one transition
    assert scores[0, 3] > scores[0].max() - 3 and scores[0, 3] > scores[0, 0]


def test_part_is_the_standardised_row_also_on_candidate_rows():
    t = Transitions.fit(HISTORIES, 5)
    hist = [[4, 0], [2], [3], []]
    full = t.part(hist)
    assert np.allclose(full, standardize(t.raw(hist)), atol=1e-5)
    assert np.allclose(full[2], 0.0) and np.allclose(full[3], 0.0)  # no successor, no history
    rows = np.array([3, 0, 2])
    assert np.allclose(t.part(hist, rows), full[:, rows], atol=1e-6)
    assert [r.tolist() for r in t.top(hist, 1)] == [[2], [1], [], []]


def test_the_hybrid_adds_the_transition_term_saves_it_and_offers_its_candidates(tmp_path):
    rng = np.random.default_rng(0)
    items = rng.normal(size=(5, 4)).astype(np.float32)
    t = Transitions.fit(HISTORIES, 5)
    w = HybridWeights(1.0, 0.0, 0.0, 0.5)
    scorer = HybridScorer(items, w, transitions=t)
    q = rng.normal(size=(2, 4)).astype(np.float32)
    hist = [[0], [4]]
    expected = scorer.llm_part(q) + 0.5 * t.part(hist)
    assert np.allclose(scorer.scores(q, hist), expected, atol=1e-5)
    assert scorer.uses_history
    assert [c.tolist() for c in scorer.history_candidates(hist, 2)] == [[2, 3], [0]]
    scorer.save(tmp_path)
    back = HybridScorer.load(tmp_path, items)
    assert back.weights == w
    assert np.allclose(back.scores(q, hist), scorer.scores(q, hist), atol=1e-6)
    # live items appended after training have no transition part (0, the mean)
    scorer.extend(rng.normal(size=(1, 4)).astype(np.float32))
    assert scorer.transition_part(hist).shape == (2, 6)
    assert np.allclose(scorer.transition_part(hist)[:, 5], 0.0)


def test_tuning_finds_the_chain_where_it_ranks_the_target_and_the_model_does_not():
    rng = np.random.default_rng(1)
    users, n = 50, 30
    histories = [[int(rng.integers(n))] for _ in range(users)]
    targets = np.array([(h[-1] + 1) % n for h in histories])  # always the "next" item
    fit = [[a, (a + 1) % n] for a in range(n)]
    chain = Transitions.fit(fit, n).part(histories)
    llm = rng.normal(size=(users, n)).astype(np.float32)  # a model that knows nothing

    def ndcg(scores: np.ndarray) -> float:
        return ranking_metrics(target_ranks(scores, targets, histories))["ndcg_at_10"]

    plain = tune_weights(llm, np.zeros_like(llm), np.zeros(n), ndcg)
    tuned = tune_weights(llm, np.zeros_like(llm), np.zeros(n), ndcg, transition=chain)
    assert plain.weights.transition == 0.0 and plain.value < 0.6
    assert tuned.weights.transition > 0 and tuned.value == pytest.approx(1.0)


def test_the_comparison_states_each_model_row_against_the_strongest_baseline():
    rows = []
    for method, val, test in (
        ("llm", 0.10, 0.09),
        ("hybrid", 0.11, 0.10),
        ("markov-1", 0.09, 0.08),
        ("popularity", 0.03, 0.02),
    ):
        for split, v in (("val", val), ("test", test)):
            rows.append({"method": method, "split": split, "ndcg_at_10": v, "hr_at_10": 2 * v})
    models = {"llm": "model alone", "hybrid": "served hybrid"}
    table = comparison(pd.DataFrame(rows), models)
    assert table["method"].tolist() == ["served hybrid", "model alone", "markov-1", "popularity"]
    assert table["x best baseline"].iloc[0] == pytest.approx(0.10 / 0.08)
    assert table["x best baseline"].iloc[1] == pytest.approx(0.09 / 0.08)
    assert table["x best baseline"].iloc[2] == ""  # a baseline has no ratio
    assert best_baseline(pd.DataFrame(rows), models) == ("markov-1", 0.08)
