import numpy as np
import pytest
from llmrec.evaluation.metrics import ranking_metrics, target_ranks


def test_ranks_count_ties_against_the_target_and_skip_masked_items():
    scores = np.array(
        [
            [0.9, 0.5, 0.5, 0.1],  # target 1 ties with item 2 -> rank 2 (0.9 higher, 1 tie)
            [0.9, 0.8, 0.7, 0.6],  # target 3, items 0 and 1 masked -> only item 2 is higher
            [0.1, 0.2, 0.3, 0.4],  # target 3 is best -> rank 0
        ]
    )
    ranks = target_ranks(scores, np.array([1, 3, 3]), [[], [0, 1], []])
    assert ranks.tolist() == [2, 1, 0]


def test_target_in_history_is_not_masked():
    ranks = target_ranks(np.array([[0.2, 0.9]]), np.array([1]), [[1, 0]])
    assert ranks.tolist() == [0]


def test_metrics_against_hand_computed_values():
    m = ranking_metrics(np.array([0, 1, 9, 10, 25]), ks=(10, 20))
    assert m["hr_at_10"] == pytest.approx(3 / 5)
    assert m["hr_at_20"] == pytest.approx(4 / 5)
    ndcg10 = (1 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(11)) / 5
    assert m["ndcg_at_10"] == pytest.approx(ndcg10)
    assert m["ndcg_at_20"] == pytest.approx(ndcg10 + 1 / np.log2(12) / 5)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 10 + 1 / 11 + 1 / 26) / 5)


def test_intra_list_diversity_is_undefined_without_item_vectors():
    import math

    from llmrec.ranking.measures import beyond_accuracy

    top = np.array([[0, 1, 2], [1, 2, 3]])
    no_categories = np.zeros((4, 1))  # what a catalogue without categories gives
    for features in (no_categories, None):
        m = beyond_accuracy(top, 4, features, np.ones(4), num_users=2)
        assert math.isnan(m["diversity"])  # not 1.1111: undefined is not a number
        assert m["coverage"] == 1.0


def test_intra_list_diversity_skips_items_without_a_vector_and_stays_within_one():
    from llmrec.ranking.measures import beyond_accuracy

    features = np.array([[1, 0], [0, 1], [0, 0], [1, 0]], dtype=float)
    top = np.array([[0, 1, 2], [0, 3, 2]])
    m = beyond_accuracy(top, 4, features, np.ones(4), num_users=2)
    # list 1: only the pair (0, 1) is defined -> 1; list 2: (0, 3) -> 0
    assert m["diversity"] == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    multi_hot = (rng.random((30, 5)) < 0.3).astype(float)
    lists = np.stack([rng.choice(30, 10, replace=False) for _ in range(20)])
    assert 0.0 <= beyond_accuracy(lists, 30, multi_hot, np.ones(30), 20)["diversity"] <= 1.0
