"""A request's best text matches among a large catalogue's items, without scoring them all.

The hybrid's text-match term (:mod:`llmrec.ranking.text_match`) needs, per typed request,
the items whose text vectors match it best: the candidates it adds to an approximate item
index's (:meth:`~llmrec.ranking.hybrid.HybridScorer.text_candidates`) and, for a user with
a history, the score of the request's ``STAND_OUT_RANK``-th best item. Found exactly, that
is a product with every item's text vector, about a second a request on two cores at a
million items (docs/scale.md). :class:`TextIndex` finds them in a FAISS inverted file over
8-bit scalar-quantised text vectors (``IVF{lists},SQ8``, inner product: ``dim`` bytes an
item, built in seconds) and scores what it finds again from the exact vectors, so every
score it returns is the exact one: only whether the best items are among those found is
approximate (``benchmarks/text_index.py`` measures it). The serving ranker uses one from
``ann_min_items`` items when its item index is approximate
(:func:`~llmrec.serving.candidates.searchable`); smaller catalogues and offline evaluation
keep the exact product.
"""

from __future__ import annotations

import math
import time

import numpy as np

from llmrec.ranking.index import all_cores
from llmrec.ranking.moments import best_rows

NPROBE = 128
"""Lists searched per request (the recall vs speed knob; at most all of them). At a million
items (1,000 lists) 64 found 0.93 of the exact 200 best matches of real text vectors (the
games version's, grown by noisy copies), 128 found 0.98 in 14 ms a request (docs/scale.md,
"Typed queries at a million items")."""
DEPTH = 2
"""The index is asked for ``DEPTH`` times the rows wanted; the best of those by their exact
score are kept (an 8-bit score misorders near ties at the cut)."""
MIN_DEPTH = 50
"""At least this many rows are asked for (a history's stand-out rank needs 5)."""


def text_lists(num_items: int) -> int:
    """Inverted lists for ``num_items`` items: ``sqrt(n)``, at least 39 training points a
    list (what FAISS's k-means asks for). Assigning every item to its list costs ``n x
    lists x dim``: at a million items 1,000 lists build in 16 s on two cores, 4,000 (FAISS's
    usual ``4 sqrt(n)``) in a minute, for the same recall at the same milliseconds."""
    return max(1, min(int(math.sqrt(num_items)), num_items // 39))


class TextIndex:
    """FAISS ``IVF{lists},SQ8`` over the items' text vectors, inner product; item row ``i``
    is the index's id ``i`` (live items join with their rows: :meth:`add`).

    Args:
        vectors: ``[items, text_dim]`` the items' text vectors (float16 or float32).
        nprobe: Lists searched per request.
        lists: Inverted lists; None: :func:`text_lists`.
        build_threads: OpenMP threads while building (0: all cores); search uses one.
        chunk: Items converted to float32 at a time while adding.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        nprobe: int = NPROBE,
        lists: int | None = None,
        build_threads: int = 0,
        chunk: int = 65536,
    ) -> None:
        import faiss

        start = time.perf_counter()
        n, dim = vectors.shape
        self.lists = lists or text_lists(n)
        self.index = faiss.index_factory(dim, f"IVF{self.lists},SQ8", faiss.METRIC_INNER_PRODUCT)
        ivf = faiss.extract_index_ivf(self.index)
        ivf.cp.niter = 10  # k-means' default 25 rounds: minutes at a million items, no recall
        faiss.omp_set_num_threads(build_threads or all_cores())
        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(n, min(n, 64 * self.lists), replace=False))
        self.index.train(np.ascontiguousarray(vectors[sample], dtype=np.float32))
        for lo in range(0, n, chunk):
            self.add(vectors[lo : lo + chunk], np.arange(lo, min(lo + chunk, n)))
        faiss.omp_set_num_threads(1)  # one request at a time: threads only spin
        ivf.nprobe = nprobe
        self.build_seconds = time.perf_counter() - start

    @property
    def nprobe(self) -> int:
        import faiss

        return int(faiss.extract_index_ivf(self.index).nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        import faiss

        faiss.extract_index_ivf(self.index).nprobe = value

    @property
    def nbytes(self) -> int:
        """The serialised index's size (about its memory)."""
        import faiss

        return int(faiss.serialize_index(self.index).nbytes)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def add(self, vectors: np.ndarray, rows: np.ndarray) -> None:
        """Index the text vectors of item ``rows`` (items added while serving)."""
        x = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        self.index.add_with_ids(x, np.asarray(rows, dtype=np.int64))

    def replace(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """New text vectors for indexed item ``rows`` (an item described anew)."""
        rows = np.asarray(rows, dtype=np.int64)
        self.index.remove_ids(rows)  # type: ignore[arg-type]  # faiss wraps arrays in a selector
        self.add(vectors, rows)

    def best_rows(self, q: np.ndarray, items: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """What :func:`~llmrec.ranking.moments.best_rows` returns (the rows of the ``n``
        items with the highest ``q . item`` per query, best first, and those scores), among
        the index's ``max(DEPTH n, MIN_DEPTH)`` best per query, scored from ``items`` (the
        exact vectors the index holds). A query whose probed lists hold fewer than ``n``
        items is answered by the exact product."""
        q = np.ascontiguousarray(np.atleast_2d(q), dtype=np.float32)
        n = min(n, len(items))
        _, found = self.index.search(q, min(max(DEPTH * n, MIN_DEPTH), len(items)))
        valid = found >= 0
        rows = np.where(valid, found, 0)
        raw = np.einsum("bd,bmd->bm", q, items[rows].astype(np.float32))
        raw[~valid] = -np.inf
        order = np.argsort(-raw, axis=1, kind="stable")[:, :n]
        rows, raw = np.take_along_axis(rows, order, axis=1), np.take_along_axis(raw, order, axis=1)
        short = valid.sum(axis=1) < n
        if short.any():
            rows[short], raw[short] = best_rows(q[short], items, n)
        return rows, raw
