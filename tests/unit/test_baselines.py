import numpy as np
import pytest
from llmrec.evaluation.metrics import top_k_lists
from llmrec.modeling.baselines import EASE, ItemKNN, Popularity, interaction_matrix
from llmrec.ranking.measures import beyond_accuracy, gini

# 4 users x 4 items, hand-built: items 0 and 1 always go together, item 3 is rare.
HISTORIES = [[0, 1], [0, 1, 2], [1, 2], [0, 3]]


def test_interaction_matrix_is_binary():
    x = interaction_matrix([[0, 0, 2]], 3)
    assert x.toarray().tolist() == [[1.0, 0.0, 1.0]]


def test_popularity_counts_users_per_item():
    x = interaction_matrix(HISTORIES, 4)
    assert Popularity().fit(x).score(x)[0].tolist() == [3.0, 3.0, 2.0, 1.0]


def test_itemknn_cosine_by_hand():
    x = interaction_matrix(HISTORIES, 4)
    knn = ItemKNN().fit(x)
    # cos(0, 1) = |{u0, u1}| / sqrt(3 * 3) = 2/3; cos(0, 3) = 1 / sqrt(3 * 1)
    assert knn.similarity[0, 1] == pytest.approx(2 / 3)
    assert knn.similarity[0, 3] == pytest.approx(1 / np.sqrt(3))
    assert knn.similarity[0, 0] == 0.0
    # a user who has only item 2 is scored by item 2's neighbours: 1 and 0 before 3
    scores = knn.score(interaction_matrix([[2]], 4))[0]
    assert scores[1] > scores[0] > scores[3] == 0.0


def test_ease_closed_form_matches_its_definition():
    x = interaction_matrix(HISTORIES, 4)
    lam = 0.5
    b = EASE(lam).fit(x).weights
    g = (x.T @ x).toarray() + lam * np.eye(4)
    p = np.linalg.inv(g)
    expected = np.eye(4) - p / np.diag(p)
    assert np.allclose(b, expected, atol=1e-5)
    assert np.allclose(np.diag(b), 0.0)


def test_top_k_masks_history_and_orders_by_score():
    scores = np.array([[0.1, 0.9, 0.5, 0.7]])
    assert top_k_lists(scores, [[1]], 2).tolist() == [[3, 2]]


def test_beyond_accuracy_by_hand():
    top = np.array([[0, 1], [0, 2]])
    features = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=float)
    counts = np.array([4, 2, 1, 1])
    m = beyond_accuracy(top, 4, features, counts, num_users=4)
    assert m["coverage"] == pytest.approx(3 / 4)
    assert m["diversity"] == pytest.approx(0.5)  # list 1 same genre (0), list 2 different (1)
    # novelty: mean of -log2(share) over the 4 slots: shares 1, 1/2, 1, 1/4
    assert m["novelty"] == pytest.approx((0 + 1 + 0 + 2) / 4)
    assert m["gini"] == pytest.approx(gini(np.array([2, 1, 1, 0])))


def test_gini_extremes():
    assert gini(np.array([1, 1, 1, 1])) == pytest.approx(0.0)
    assert gini(np.array([0, 0, 0, 5])) == pytest.approx(0.75)  # (n-1)/n for one item
