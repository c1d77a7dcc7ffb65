"""The text-match term's approximate index (:mod:`llmrec.ranking.text_index`): over a
catalogue of clustered text vectors (sentence embeddings are), a typed request's served
candidates are those of the exact product (recall@200 >= 0.95) and its answer the same;
the scores are the exact ones, a history's stand-out floor included; items added live and
items described anew are found by their text. (Below the ranker's threshold nothing
changes: tests/unit/test_text_match.py.)"""

import numpy as np
import pytest
from llmrec.ranking.hybrid import HybridScorer
from llmrec.ranking.index import build_index
from llmrec.ranking.moments import best_rows
from llmrec.ranking.text_index import TextIndex
from llmrec.serving.candidates import CandidatePool, top_rows
from llmrec.understanding.query import Query

N, DIM, TOPICS, QUERIES = 30_000, 64, 300, 20


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def near(centres: np.ndarray, rng: np.random.Generator, spread: float = 0.1) -> np.ndarray:
    """Unit vectors about ``centres`` (cosine about 0.8 with their centre)."""
    return unit(centres + spread * rng.standard_normal(centres.shape))


@pytest.fixture(scope="module")
def scorers():
    """The same hybrid (model vectors, popularity, the text-match term over ``N`` float16
    text vectors in ``TOPICS`` topics) finding text matches exactly, and in the index;
    the requests' rows (user vector, then the request's text vector)."""
    rng = np.random.default_rng(0)
    centres = unit(rng.standard_normal((TOPICS, DIM)))
    text = near(centres[rng.integers(0, TOPICS, N)], rng).astype(np.float16)
    model = rng.standard_normal((N, 8)).astype(np.float32)
    exact = HybridScorer(model, popularity=rng.poisson(3.0, N)).with_text(text)
    indexed = exact.with_weights(exact.weights, exact.request_weights)
    indexed.index_text()
    asked = near(centres[rng.choice(TOPICS, QUERIES, replace=False)], rng)
    users = rng.standard_normal((QUERIES, 8)).astype(np.float32)
    return exact, indexed, np.concatenate([users, asked], axis=1)


def test_the_index_finds_the_described_items_with_their_exact_scores(scorers):
    exact, indexed, queries = scorers
    assert exact.text_index is None
    index = indexed.text_index
    assert isinstance(index, TextIndex) and len(index) == N
    assert index.nprobe < index.lists  # not every list: an approximate search
    assert index.nbytes < 2 * N * DIM  # 8-bit codes and ids: float32 vectors take 4 N DIM
    want = exact.text_candidates(queries, 200)
    got = indexed.text_candidates(queries, 200)
    recall = [len(np.intersect1d(g, w)) / len(w) for g, w in zip(got, want, strict=True)]
    assert np.mean(recall) >= 0.95 and min(recall) >= 0.85
    text = queries[:, 8:]
    rows, raw = index.best_rows(text, exact.item_text, 5)
    assert np.allclose(raw, np.einsum("bd,bkd->bk", text, exact.item_text[rows].astype(np.float32)))
    exact_rows, exact_raw = best_rows(text, exact.item_text, 5)
    assert (rows == exact_rows).all() and np.allclose(raw, exact_raw, atol=1e-6)
    # a history's text part counts what stands out above the 5th best match: the same
    histories = [[1, 2, 3]] * QUERIES
    cand = np.unique(np.concatenate(want))
    assert np.allclose(
        indexed.text_part(queries, cand, histories),
        exact.text_part(queries, cand, histories),
        atol=1e-5,
    )


def test_a_typed_request_is_served_the_candidates_and_answer_of_the_exact_path(scorers):
    exact, indexed, queries = scorers
    index = build_index(exact.items, "hnsw")
    pool = CandidatePool(index, N, {}, exact.popularity_part(), 200)
    for vec in queries:
        q = Query(history=(), request="typed", exclude=(), k=10)
        served = {}
        for name, hybrid in (("exact", exact), ("indexed", indexed)):
            rows = pool.rows(hybrid, vec[None], [[]], q, 10, 0)
            assert rows is not None
            scores = hybrid.scores(vec[None], [[]], rows, [True])[0]
            served[name] = rows, top_rows(rows, scores, np.zeros(0), np.zeros(N, bool), 10)
        (exact_rows, exact_top), (rows, top) = served["exact"], served["indexed"]
        assert len(np.intersect1d(rows, exact_rows)) / len(exact_rows) >= 0.95
        assert (top[0] == exact_top[0]).all() and (top[1] == exact_top[1]).all()


def test_items_added_live_or_described_anew_are_found_by_their_text():
    rng = np.random.default_rng(1)
    centres = unit(rng.standard_normal((TOPICS + 2, DIM)))
    text = near(centres[rng.integers(0, TOPICS, N)], rng)
    hybrid = HybridScorer(rng.standard_normal((N, 8)).astype(np.float32)).with_text(text)
    hybrid.index_text()
    live, anew = centres[TOPICS], centres[TOPICS + 1]  # topics no item had
    hybrid.extend(np.concatenate([np.zeros((3, 8)), near(np.tile(live, (3, 1)), rng)], axis=1))
    hybrid.set_vectors(np.array([7]), np.concatenate([np.zeros((1, 8)), anew[None]], axis=1))
    assert hybrid.text_index is not None and len(hybrid.text_index) == N + 3
    asks = np.concatenate([np.zeros((2, 8)), np.stack([live, anew])], axis=1)
    found = hybrid.text_candidates(asks, 3)
    assert found[0].tolist() == [N, N + 1, N + 2]
    assert 7 in found[1]
