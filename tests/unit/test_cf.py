"""The scalable collaborative term: each rank.cf option against a dense reference, the
choice by size, compact storage, and a bundle with each option served by the ranker."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from llmrec.config import Config, ConfigError, RankConfig, load_config
from llmrec.modeling.baselines import EASE, ItemKNN, interaction_matrix
from llmrec.modeling.cf import CFParams, FactorCF, choose_cf, fit_cf, load_cf
from llmrec.ranking.hybrid import HybridScorer
from llmrec.ranking.moments import standardize
from llmrec.ranking.weights import HybridWeights
from llmrec.registry.bundle import ModelBundle, _plain
from llmrec.serving import CandidateRanker, ServeSettings
from llmrec.understanding.query import Query

N_ITEMS = 30
RNG = np.random.default_rng(0)
# 80 users in 3 taste groups of 10 items each (+ some exploration): real co-occurrence
HISTORIES = [
    sorted(
        set(
            (RNG.choice(10, 6, replace=False) + 10 * (u % 3)).tolist()
            + RNG.choice(N_ITEMS, 2).tolist()
        )
    )
    for u in range(80)
]
X = interaction_matrix(HISTORIES, N_ITEMS)
USERS = [[0, 1, 2], [12, 15], [25], [3, 14, 27, 9]]


def _top(scores: np.ndarray, k: int) -> list[list[int]]:
    return np.argsort(-scores, axis=1, kind="stable")[:, :k].tolist()


def test_sparse_ease_with_every_neighbour_is_ease():
    # one user who has every item: every pair co-occurs, so every item is a neighbour
    x = interaction_matrix([*HISTORIES, list(range(N_ITEMS))], N_ITEMS)
    dense = EASE(50.0).fit(x).weights
    model = fit_cf("sparse", x, CFParams(ease_lambda=50.0, neighbours=N_ITEMS))
    assert np.allclose(model.weights.toarray(), dense, atol=1e-4)
    want = standardize(np.asarray(interaction_matrix(USERS, N_ITEMS) @ dense))
    assert np.allclose(model.part(USERS), want, atol=1e-4)
    assert _top(model.part(USERS), 5) == _top(want, 5)


def test_sparse_ease_keeps_k_weights_per_item_and_standardises_exactly():
    model = fit_cf("sparse", X, CFParams(ease_lambda=50.0, neighbours=5))
    w = model.weights.toarray()
    assert (np.count_nonzero(w, axis=0) <= 5).all() and np.count_nonzero(w) > 5 * 20
    assert np.diag(w).tolist() == [0.0] * N_ITEMS
    # over the whole catalogue, as if the sparse row were dense
    want = standardize(np.asarray(interaction_matrix(USERS, N_ITEMS) @ w))
    full = model.part(USERS)
    assert np.allclose(full, want, atol=1e-4)
    rows = np.array([29, 3, 11])
    assert np.allclose(model.part(USERS, rows), full[:, rows], atol=1e-5)
    tops = model.top(USERS, 4)
    raw = np.asarray(interaction_matrix(USERS, N_ITEMS) @ w)
    for u, got in enumerate(tops):
        assert sorted(raw[u, got].tolist(), reverse=True) == raw[u, got].tolist()
        assert raw[u, got].min() >= np.sort(raw[u])[-4] - 1e-6  # the 4 best items


def test_itemknn_keeps_the_k_most_similar_of_the_dense_cosine():
    dense = ItemKNN().fit(X).similarity
    model = fit_cf("itemknn", X, CFParams(neighbours=N_ITEMS))
    assert np.allclose(model.weights.toarray(), dense, atol=1e-5)
    pruned = fit_cf("itemknn", X, CFParams(neighbours=3)).weights.toarray()
    for a in range(N_ITEMS):
        kept = np.flatnonzero(pruned[a])
        assert len(kept) <= 3
        assert np.allclose(pruned[a, kept], dense[a, kept])
        assert dense[a, kept].min() >= np.sort(dense[a])[-3] - 1e-6


def test_als_user_factor_is_implicits_and_scores_standardise_exactly():
    model = fit_cf("als", X, CFParams(factors=8, regularization=1.0, alpha=5.0, iterations=5))
    assert isinstance(model, FactorCF) and model.item_factors.shape == (N_ITEMS, 8)
    from implicit.cpu.als import AlternatingLeastSquares

    ref = AlternatingLeastSquares(factors=8, regularization=1.0, alpha=5.0)
    ref.item_factors = model.item_factors
    ref.user_factors = np.zeros((1, 8), dtype=np.float32)
    theirs = ref.recalculate_user(0, interaction_matrix(USERS[:1], N_ITEMS))
    assert np.allclose(model.user_factors(USERS[:1])[0], theirs, atol=1e-3)
    dense = model.user_factors(USERS) @ model.item_factors.T
    full = model.part(USERS)
    assert np.allclose(full, standardize(dense), atol=1e-4)
    rows = np.array([7, 0, 21])
    assert np.allclose(model.part(USERS, rows), full[:, rows], atol=1e-5)
    assert [t.tolist() for t in model.top(USERS, 5)] == _top(dense, 5)
    # the taste groups are learnt: a user of group 1 is scored higher on group 1
    assert full[1, 10:20].mean() > full[1, :10].mean()


@pytest.mark.parametrize("kind", ["ease", "sparse", "itemknn", "als"])
def test_each_option_saves_compactly_and_loads_the_same(kind, tmp_path):
    model = fit_cf(kind, X, CFParams(ease_lambda=50.0, neighbours=5, factors=8, iterations=3))
    model.save(tmp_path)
    files = {p.name for p in tmp_path.iterdir()}
    assert files == {
        "cf.json",
        {"ease": "cf.npy", "als": "cf_item_factors.npy"}.get(kind, "cf.npz"),
    }
    back = load_cf(tmp_path)
    assert back is not None and back.kind == kind
    assert np.allclose(back.part(USERS), model.part(USERS), atol=1e-6)


def test_auto_picks_by_catalogue_size_and_ease_refuses_a_huge_catalogue():
    assert choose_cf("auto", 5_000, 10_000, 200_000) == "ease"
    assert choose_cf("auto", 50_000, 10_000, 200_000) == "sparse"
    assert choose_cf("auto", 1_000_000, 10_000, 200_000) == "als"
    assert choose_cf("itemknn", 1_000_000, 10_000, 200_000) == "itemknn"
    with pytest.raises(ValueError, match=r"rank.cf=ease needs a dense 1,000,000 x 1,000,000"):
        choose_cf("ease", 1_000_000, 10_000, 200_000)


def test_rank_config_checks_and_the_retired_cliff_is_ignored():
    cfg = load_config(None, ["rank.cf=als", "rank.max_cf_items=20000"])
    assert cfg.rank.cf == "als" and not hasattr(cfg.rank, "max_cf_items")
    with pytest.raises(ConfigError, match=r"rank.cf_neighbours must be >= 1, got 0"):
        load_config(None, ["rank.cf_neighbours=0"])
    with pytest.raises(ConfigError, match=r"rank.cf must be one of"):
        load_config(None, ["rank.cf=svd"])


def _bundle(tmp_path: Path, kind: str, dim: int = 8) -> tuple[Path, HybridScorer]:
    """A servable bundle folder (config, items with embeddings, histories, hybrid) without a
    language model: the ranker does not need one."""
    ids = [f"物品{i:02d}" for i in range(N_ITEMS)]  # non-ASCII ids are ordinary input
    emb = np.random.default_rng(1).standard_normal((N_ITEMS, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    cf = fit_cf(kind, X, CFParams(ease_lambda=50.0, neighbours=5, factors=8, iterations=3))
    pop = np.asarray(X.sum(axis=0)).ravel()
    hybrid = HybridScorer(emb, HybridWeights(1.0, 1.5, 0.1), cf, pop)
    d = tmp_path / kind
    d.mkdir()
    cfg = Config(rank=RankConfig(cf=kind))  # type: ignore[arg-type]
    (d / "config.yaml").write_text(yaml.safe_dump(_plain(cfg.to_dict())))
    table = pa.table(
        {
            "item_id": ids,
            "title": [f"title {i}" for i in ids],
            "text": ["" for _ in ids],
            "categories": [["a" if i % 2 else "b"] for i in range(N_ITEMS)],
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), dim),
        }
    )
    pq.write_table(table, d / "items.parquet")
    pq.write_table(pa.table({"user_id": ["u"], "items": [ids[:3]]}), d / "histories.parquet")
    hybrid.save(d / "hybrid", {"cf": kind})
    return d, hybrid


@pytest.mark.parametrize("kind", ["ease", "sparse", "itemknn", "als"])
@pytest.mark.parametrize("index", ["exact", "hnsw", "hnsw_sq8", "ivf_flat"])
def test_a_bundle_with_each_option_serves_the_exact_hybrid_top(kind, index, tmp_path):
    path, hybrid = _bundle(tmp_path, kind)
    ranker = CandidateRanker(ModelBundle(path), ServeSettings(index=index, candidates=10))
    assert ranker.hybrid.cf is not None and ranker.hybrid.cf.kind == kind
    assert ranker.items.kind == index
    q = np.random.default_rng(2).standard_normal(8).astype(np.float32)
    history = [ranker.ids[i] for i in (0, 1, 2, 13)]
    got = ranker.rank(q, Query(tuple(history), None, tuple(history), k=5))
    scores = hybrid.scores(q[None, :], [[0, 1, 2, 13]])[0]
    scores[[0, 1, 2, 13]] = -np.inf
    want = np.argsort(-scores, kind="stable")[:5]
    assert [r.item_id for r in got] == [ranker.ids[i] for i in want]
    assert [r.score for r in got] == pytest.approx(scores[want].tolist(), abs=1e-4)


class _Batches:
    """What ``write_index`` reads from a Ray dataset: ``iter_batches`` of embeddings."""

    def __init__(self, emb: np.ndarray) -> None:
        self.emb = emb

    def iter_batches(self, batch_format: str, batch_size: int):
        for lo in range(0, len(self.emb), 7):
            yield {"embedding": list(self.emb[lo : lo + 7])}


def test_an_index_a_ranker_built_and_saved_into_its_bundle_serves_the_next_ranker(tmp_path):
    path, _ = _bundle(tmp_path, "sparse")
    settings = ServeSettings(index="hnsw_sq8", candidates=10)
    first = CandidateRanker(ModelBundle(path), settings)
    assert ModelBundle(path).prebuilt_index("hnsw_sq8") is None
    first.items.save(path / "index")
    meta = json.loads((path / "index" / "index.json").read_text())
    assert meta == {"kind": "hnsw_sq8", "items": N_ITEMS, "dim": 8}
    second = CandidateRanker(ModelBundle(path), settings)
    assert second.items.index is not first.items.index and second.items.kind == "hnsw_sq8"
    q = np.ones(8, dtype=np.float32)
    query = Query("t", (), (), k=5)
    assert [r.item_id for r in second.rank(q, query)] == [r.item_id for r in first.rank(q, query)]


def test_a_prebuilt_index_in_the_bundle_is_served_without_a_rebuild(tmp_path):
    from llmrec.ranking.index import write_index

    path, hybrid = _bundle(tmp_path, "sparse")
    meta = write_index(_Batches(hybrid.items), "hnsw_sq8", str(path / "index"), queries=10)
    assert meta["kind"] == "hnsw_sq8" and meta["items"] == N_ITEMS
    assert meta["recall_at_100"] == 1.0  # 30 items: every item is found
    assert json.loads((path / "index" / "index.json").read_text()) == meta
    ranker = CandidateRanker(ModelBundle(path), ServeSettings(index="hnsw_sq8", candidates=10))
    assert ranker.items.kind == "hnsw_sq8" and ranker.items.index.ntotal == N_ITEMS
    # an index of another kind or size is not used
    assert ModelBundle(path).prebuilt_index("ivfpq") is None
    q = np.ones(8, dtype=np.float32)
    got = ranker.rank(q, Query("t", (), (), k=3))
    scores = hybrid.scores(q[None, :], [[]])[0]
    assert [r.item_id for r in got] == [ranker.ids[i] for i in np.argsort(-scores)[:3]]
