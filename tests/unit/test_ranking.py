import numpy as np
import pytest
import torch
from llmrec.modeling.losses import in_batch_softmax
from llmrec.ranking.hybrid import HybridScorer
from llmrec.ranking.measures import beyond_accuracy
from llmrec.ranking.moments import standardize
from llmrec.ranking.rerank import dpp, mmr, msd, rerank
from llmrec.ranking.weights import HybridWeights, tune_weights

RNG = np.random.default_rng(0)
ITEMS = RNG.standard_normal((40, 8)).astype(np.float32)
ITEMS /= np.linalg.norm(ITEMS, axis=1, keepdims=True)


def test_standardize_gives_zero_mean_unit_spread_per_row():
    z = standardize(np.array([[1.0, 2.0, 3.0], [5.0, 5.0, 5.0]]))
    assert z[0].tolist() == pytest.approx([-1.2247449, 0.0, 1.2247449])
    assert z[1].tolist() == [0.0, 0.0, 0.0]  # no spread: no information


def test_llm_part_on_candidates_equals_the_full_computation():
    scorer = HybridScorer(ITEMS)
    q = RNG.standard_normal((3, 8)).astype(np.float32)
    full = scorer.llm_part(q)
    assert np.allclose(full, standardize(q @ ITEMS.T), atol=1e-4)
    rows = np.array([5, 0, 17])
    assert np.allclose(scorer.llm_part(q, rows), full[:, rows], atol=1e-5)


def test_hybrid_adds_the_weighted_parts():
    cf = RNG.random((40, 40)).astype(np.float32)
    pop = np.arange(40, dtype=np.float32)
    w = HybridWeights(llm=1.0, cf=0.5, popularity=0.25)
    scorer = HybridScorer(ITEMS, w, cf, pop)
    q = RNG.standard_normal((2, 8)).astype(np.float32)
    hist = [[1, 2], [3]]
    expected = (
        scorer.llm_part(q) + 0.5 * scorer.cf_part(hist) + 0.25 * scorer.popularity_part()[None]
    )
    assert np.allclose(scorer.scores(q, hist), expected, atol=1e-5)
    rows = np.array([7, 3, 9])
    assert np.allclose(scorer.scores(q, hist, rows), expected[:, rows], atol=1e-5)
    # the most popular item gets the largest popularity part
    assert int(np.argmax(scorer.popularity_part())) == 39


def test_hybrid_saves_and_loads(tmp_path):
    cf = RNG.random((40, 40)).astype(np.float32)
    scorer = HybridScorer(ITEMS, HybridWeights(1.0, 2.0, 0.1), cf, np.ones(40))
    scorer.save(tmp_path, {"ease_lambda": 200.0})
    back = HybridScorer.load(tmp_path, ITEMS)
    assert back.weights == HybridWeights(1.0, 2.0, 0.1)
    q = RNG.standard_normal((1, 8)).astype(np.float32)
    assert np.allclose(back.scores(q, [[0]]), scorer.scores(q, [[0]]))


def test_tuning_picks_the_weights_that_rank_the_target_first():
    # 2 users x 3 items: the LLM part alone ranks the target last, the CF part first
    llm = np.array([[1.0, 0.0, -1.0], [1.0, 0.0, -1.0]])
    cf = np.array([[-1.0, 0.0, 1.0], [-1.0, 0.0, 1.0]])
    pop = np.zeros(3)
    tuned = tune_weights(llm, cf, pop, lambda s: float((s.argmax(1) == 2).mean()))
    assert tuned.weights.cf > tuned.weights.llm or tuned.weights.llm == 0.0
    assert len(tuned.tried) > 10


# 20 candidates in 5 tight groups of 4 (a group = one genre), relevance falling with the index
GROUPS = np.repeat(np.eye(5), 4, axis=0) + 0.01 * RNG.standard_normal((20, 5))
RELEVANCE = np.linspace(1.0, 0.0, 20)


def _ild(picked: np.ndarray) -> float:
    top = picked[None, :]
    return beyond_accuracy(top, 20, GROUPS, np.ones(20), 1)["diversity"]


# MSD's penalty is the mean similarity to the list so far: with 4 groups in the list, a
# 5th item from the first group costs 0.25 of a duplicate, so spreading needs a larger knob
# (at 0.7 item 1 wins: 0.3 * 0.947 - 0.7 * 0.25 = 0.11 > 0.3 * 0.158 for item 16)
@pytest.mark.parametrize(("method", "strength"), [(mmr, 0.7), (msd, 0.9), (dpp, 0.7)])
def test_rerankers_raise_diversity_on_a_constructed_case(method, strength):
    plain = method(RELEVANCE, GROUPS, 5, 0.0)
    assert plain.tolist() == [0, 1, 2, 3, 4]  # strength 0 keeps relevance order
    diverse = method(RELEVANCE, GROUPS, 5, strength)
    assert diverse[0] == 0  # the most relevant item still comes first
    assert len(set(diverse.tolist())) == 5
    assert sorted(d // 4 for d in diverse) == [0, 1, 2, 3, 4]  # one item per group
    assert _ild(diverse) > 2 * _ild(plain)


def test_msd_at_0_7_takes_a_second_item_of_the_first_group_last():
    assert msd(RELEVANCE, GROUPS, 5, 0.7).tolist() == [0, 4, 8, 12, 1]


def test_dpp_fills_the_list_when_the_kernel_runs_out_of_rank():
    # 3 distinct directions, 6 picks asked for: the rest comes in relevance order
    vectors = np.repeat(np.eye(3), 3, axis=0)
    picked = dpp(np.linspace(1, 0, 9), vectors, 6, 0.9)
    assert len(picked) == 6 and len(set(picked.tolist())) == 6
    assert sorted(p // 3 for p in picked[:3]) == [0, 1, 2]


def test_rerank_rejects_a_knob_outside_0_1():
    with pytest.raises(ValueError, match=r"must be in \[0, 1\], got 1.5"):
        rerank("mmr", RELEVANCE, GROUPS, 5, 1.5)


def test_catalogue_negatives_raise_the_loss_and_skip_the_own_item():
    torch.manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(4, 8), dim=1)
    i = q.clone()  # each query's positive is itself: in-batch loss is small
    ids = torch.tensor([0, 1, 2, 3])
    scale = torch.tensor(20.0)
    plain = in_batch_softmax(q, i, ids, scale)
    # the catalogue holds the 4 positives (masked for their own query) + 6 random items
    catalogue = torch.cat([i, torch.nn.functional.normalize(torch.randn(6, 8), dim=1)])
    mixed = in_batch_softmax(q, i, ids, scale, catalogue)
    assert mixed > plain
    # a catalogue of only the positives adds the other rows' items again, never the own one
    only_own = in_batch_softmax(q, i, ids, scale, i)
    assert torch.isfinite(only_own)


def test_a_typed_request_counts_even_where_validation_chose_the_cf_model_alone(tmp_path):
    """Weights that drop the model's term would ignore what a user typed: requests are
    scored with request_weights (by default the model's weight raised to 1), saved and
    loaded with the version."""
    from llmrec.ranking.hybrid import HybridScorer
    from llmrec.ranking.weights import HybridWeights

    rng = np.random.default_rng(0)
    items = rng.normal(size=(30, 8)).astype(np.float32)
    cf = rng.normal(size=(30, 30)).astype(np.float32)
    scorer = HybridScorer(items, HybridWeights(0.0, 1.0, 0.0), cf)
    assert scorer.request_weights == HybridWeights(1.0, 1.0, 0.0)
    queries = rng.normal(size=(2, 8)).astype(np.float32)
    other = rng.normal(size=(2, 8)).astype(np.float32)
    history = [[1, 2], [1, 2]]
    plain = scorer.scores(queries, history)
    assert np.allclose(plain, scorer.scores(other, history))  # the request is ignored...
    asked = scorer.scores(queries, history, requests=[True, False])
    assert not np.allclose(asked[0], plain[0]) and np.allclose(asked[1], plain[1])  # ...unless
    scorer.save(tmp_path)
    back = HybridScorer.load(tmp_path, items)
    assert back.request_weights == scorer.request_weights
    assert np.allclose(
        back.scores(queries, history, requests=[True, True]),
        scorer.scores(queries, history, requests=[True, True]),
        atol=1e-5,
    )
