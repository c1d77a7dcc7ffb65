"""The FAISS item indexes' search breadth (efSearch, IVF lists probed) and the IVF-flat kind."""

import numpy as np
from llmrec.ranking.index import ExactIndex, FaissIndex, factory, recall_at


def _spread(n: int, dim: int = 32, queries: int = 50) -> tuple[np.ndarray, np.ndarray]:
    """Items with no cluster structure (what HNSW finds hardest) and queries among them."""
    rng = np.random.default_rng(0)
    items = rng.standard_normal((n, dim)).astype(np.float32)
    return items, 2.0 * rng.standard_normal((queries, dim)).astype(np.float32)


def test_ivf_flat_probing_every_list_is_exact_and_fewer_find_less():
    items, queries = _spread(3000)
    assert factory("ivf_flat", 3000, 32) == "IVF76,Flat"  # 3000 // 39 lists
    exact = ExactIndex(items)
    index = FaissIndex(items, "ivf_flat", ef_search=4 * 76)  # every list probed
    assert index.nbytes > items.nbytes  # the float32 vectors themselves
    assert recall_at(index, exact, queries, 100) == 1.0
    index.set_ef_search(4)  # one list (for at most 4 rows: a deeper search probes more)
    assert recall_at(index, exact, queries, 4) < 0.5


def test_a_wider_search_finds_more_and_a_deeper_one_widens_for_that_call():
    items, queries = _spread(5000)
    exact = ExactIndex(items)
    index = FaissIndex(items, "hnsw", ef_search=16)
    narrow = recall_at(index, exact, queries, 10)
    index.set_ef_search(256)
    assert index.ef_search == 256 and index.index.hnsw.efSearch == 256
    assert recall_at(index, exact, queries, 10) > narrow
    rows, _ = index.search(queries[:1], 300)  # deeper than efSearch: widened for this call
    assert rows.shape == (1, 300) and (rows >= 0).all()
    assert index.index.hnsw.efSearch == 256
