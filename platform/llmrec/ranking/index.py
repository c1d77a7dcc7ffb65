"""Nearest items to a query embedding by inner product: exact, or a FAISS index by size.

Small catalogues are searched exactly (one matrix-vector product). From ``ann_min_items`` a
FAISS HNSW graph over the float32 vectors answers in roughly logarithmic time; from
``compact_min_items`` the index is compact: HNSW over 8-bit scalar-quantised vectors
(``hnsw_sq8``, 1 byte a dimension) or over float16 (``hnsw_fp16``), or an inverted file with
product quantisation (``ivfpq``, a few dozen bytes an item, the fastest to build). An
inverted file over the float32 vectors (``ivf_flat``: each probed list scored exactly) suits
low-dimensional vectors whose neighbourhoods HNSW navigates badly (docs/scale.md). The
ranker re-scores every candidate exactly, so a compact index only has to put the right
items among the candidates; :func:`recall_at` measures how many of the exact top items an
index finds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

IndexKind = Literal["auto", "exact", "hnsw", "hnsw_sq8", "hnsw_fp16", "ivfpq", "ivf_flat"]
INDEX_FILE = "index.faiss"


class ItemIndex(Protocol):
    """Top-n item rows (best first) and their inner products, per query row."""

    kind: str
    build_seconds: float

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]: ...

    def add(self, vectors: np.ndarray) -> None:
        """Append items (rows ``len(index)...``): items added while serving."""
        ...


@dataclass
class ExactIndex:
    """Brute-force inner product over all items."""

    items: np.ndarray
    kind: str = "exact"
    build_seconds: float = 0.0

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        scores = q @ self.items.astype(np.float32, copy=False).T
        n = min(n, self.items.shape[0])
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        part = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-part, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(part, order, axis=1)

    def add(self, vectors: np.ndarray) -> None:
        vecs = np.asarray(vectors, dtype=self.items.dtype).reshape(-1, self.items.shape[1])
        self.items = np.concatenate([self.items, vecs])


class HNSWIndex:
    """FAISS ``IndexHNSWFlat`` with inner-product metric.

    Args:
        items: ``[items, dim]`` embeddings.
        m: Graph degree (memory and recall grow with it).
        ef_construction: Candidate list size while building.
        ef_search: Candidate list size while searching (recall vs speed knob).
        threads: OpenMP threads of FAISS in this process for searching (1 suits one query
            per call); the build uses every core (:func:`all_cores`).
    """

    kind = "hnsw"

    def __init__(
        self,
        items: np.ndarray,
        m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        threads: int = 1,
    ) -> None:
        import faiss

        start = time.perf_counter()
        x = np.ascontiguousarray(items, dtype=np.float32)
        self.index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        faiss.omp_set_num_threads(all_cores())
        self.index.add(x)
        # One query at a time: OpenMP threads only spin against the encoder for the cores.
        faiss.omp_set_num_threads(threads)
        self.index.hnsw.efSearch = ef_search
        self.ef_search = ef_search
        self.num_items = x.shape[0]
        self.build_seconds = time.perf_counter() - start

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n = min(n, self.num_items)
        if n > self.index.hnsw.efSearch:  # HNSW returns at most efSearch results
            self.index.hnsw.efSearch = n
        scores, rows = self.index.search(q, n)
        self.index.hnsw.efSearch = self.ef_search
        return rows, scores

    def add(self, vectors: np.ndarray) -> None:
        x = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        self.index.add(x)  # HNSW links new nodes into the graph; no rebuild
        self.num_items += len(x)


class FaissIndex:
    """A FAISS index from a factory string, inner-product metric, built in chunks (a float16
    catalogue is converted a chunk at a time).

    Args:
        items: ``[items, dim]`` embeddings (float32 or float16).
        kind: ``hnsw``, ``hnsw_sq8``, ``hnsw_fp16``, ``ivfpq`` or ``ivf_flat``.
        m: HNSW graph degree.
        ef_construction: HNSW candidate list while building.
        ef_search: HNSW candidate list while searching; for the IVF kinds the lists probed are
            ``ef_search // 4`` (both: the recall vs speed knob).
        build_threads: OpenMP threads while building (0: all cores); search uses one.
    """

    def __init__(
        self,
        items: np.ndarray,
        kind: str = "hnsw_sq8",
        m: int = 32,
        ef_construction: int = 80,
        ef_search: int = 128,
        build_threads: int = 0,
        chunk: int = 65536,
    ) -> None:
        import faiss

        start = time.perf_counter()
        n, dim = items.shape
        self.kind, self.num_items, self.ef_search = kind, n, ef_search
        self.index = faiss.index_factory(dim, factory(kind, n, dim, m), faiss.METRIC_INNER_PRODUCT)
        # set on every build: the last search setting (1) is process-wide and would make
        # a second version's build (a swap) single-threaded
        faiss.omp_set_num_threads(build_threads or all_cores())
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efConstruction = ef_construction
        if not self.index.is_trained:
            rng = np.random.default_rng(0)
            sample = rng.choice(n, min(n, 64 * 1024), replace=False)
            self.index.train(np.ascontiguousarray(items[np.sort(sample)], dtype=np.float32))
        for lo in range(0, n, chunk):
            self.index.add(np.ascontiguousarray(items[lo : lo + chunk], dtype=np.float32))
        faiss.omp_set_num_threads(1)  # one query at a time: threads only spin
        self._set_search(ef_search)
        self.build_seconds = time.perf_counter() - start

    def _set_search(self, ef: int) -> None:
        if hasattr(self.index, "hnsw"):
            self.index.hnsw.efSearch = ef
        else:
            import faiss

            faiss.extract_index_ivf(self.index).nprobe = max(1, ef // 4)

    def set_ef_search(self, ef: int) -> None:
        """Search breadth from now on (HNSW efSearch; IVF lists probed: ``ef // 4``)."""
        self.ef_search = ef
        self._set_search(ef)

    @property
    def nbytes(self) -> int:
        """The serialised index's size (about its memory)."""
        import faiss

        return int(faiss.serialize_index(self.index).nbytes)

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n = min(n, self.num_items)
        if n > self.ef_search:  # HNSW returns at most efSearch results
            self._set_search(n)
        scores, rows = self.index.search(q, n)
        self._set_search(self.ef_search)
        return rows, scores

    def add(self, vectors: np.ndarray) -> None:
        x = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        self.index.add(x)  # the quantiser / coarse lists trained at build time are kept
        self.num_items += len(x)

    def save(self, directory: str | Path, meta: dict[str, object] | None = None) -> Path:
        """Write the index and ``index.json`` (kind, items, dim, and ``meta``) to
        ``directory``: a bundle's ``index/`` is then served without a rebuild."""
        import json

        import faiss

        path = Path(directory) / INDEX_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(path))
        about = {"kind": self.kind, "items": self.num_items, "dim": int(self.index.d)}
        (path.parent / "index.json").write_text(json.dumps(about | (meta or {}), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path, kind: str, ef_search: int = 128) -> FaissIndex:
        """An index written by :meth:`save` (no rebuild: minutes saved at a million items)."""
        import faiss

        self = cls.__new__(cls)
        start = time.perf_counter()
        self.index = faiss.read_index(str(path))
        self.kind, self.num_items, self.ef_search = kind, int(self.index.ntotal), ef_search
        faiss.omp_set_num_threads(1)
        self._set_search(ef_search)
        self.build_seconds = time.perf_counter() - start
        return self


def all_cores() -> int:
    """OpenMP threads for building an index: every core this process may use."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def factory(kind: str, n: int, dim: int, m: int = 32) -> str:
    """The FAISS factory string of an index kind for ``n`` items of ``dim`` dimensions."""
    if kind == "hnsw":
        return f"HNSW{m},Flat"
    if kind == "hnsw_sq8":
        return f"HNSW{m},SQ8"
    if kind == "hnsw_fp16":
        return f"HNSW{m},SQfp16"
    lists = int(min(max(16, 4 * math.sqrt(n)), 16384, max(16, n // 39)))
    if kind == "ivfpq":
        sub = next(s for s in (dim // 8, dim // 4, dim // 2, dim) if dim % s == 0)
        return f"IVF{lists},PQ{sub}"
    if kind == "ivf_flat":
        return f"IVF{lists},Flat"
    raise ValueError(f"unknown index kind {kind!r}")


def choose_index(
    kind: str, num_items: int, min_items_for_ann: int = 20000, compact_min_items: int = 200000
) -> str:
    """``auto``: exact below ``min_items_for_ann``, float32 HNSW below
    ``compact_min_items``, HNSW over 8-bit vectors above; other kinds as they are."""
    if kind != "auto":
        return kind
    if num_items < min_items_for_ann:
        return "exact"
    return "hnsw" if num_items < compact_min_items else "hnsw_sq8"


def build_index(
    items: np.ndarray,
    kind: IndexKind | str = "auto",
    min_items_for_ann: int = 20000,
    hnsw_m: int = 32,
    ef_search: int = 128,
    compact_min_items: int = 200000,
) -> ItemIndex:
    """The index :func:`choose_index` picks, built over ``items``."""
    chosen = choose_index(kind, len(items), min_items_for_ann, compact_min_items)
    if chosen == "exact":
        return ExactIndex(np.asarray(items, dtype=np.float32))
    if chosen == "hnsw" and items.dtype == np.float32:
        return HNSWIndex(items, m=hnsw_m, ef_search=ef_search)
    return FaissIndex(items, chosen, m=hnsw_m, ef_search=ef_search)


def recall_at(index: ItemIndex, exact: ExactIndex, queries: np.ndarray, n: int = 100) -> float:
    """Mean share of the exact top-``n`` rows that ``index`` also returns in its top ``n``."""
    got, _ = index.search(queries, n)
    want, _ = exact.search(queries, n)
    hits = [len(set(g.tolist()) & set(w.tolist())) for g, w in zip(got, want, strict=True)]
    return float(np.mean(hits) / want.shape[1])  # fewer than n items: all of them


def write_index(batches: object, kind: str, out: str, queries: int = 200) -> dict[str, object]:
    """Build a ``kind`` index from a Ray dataset (or any object with ``iter_batches``) of
    ``embedding`` rows, streamed in float16; write it and ``index.json`` to ``out``.

    Returns:
        The metadata written: kind, items, dim, build seconds, recall@100 against exact
        search with ``queries`` item vectors as queries.
    """
    import json

    parts = [
        np.stack(b["embedding"]).astype(np.float16)
        for b in batches.iter_batches(batch_format="numpy", batch_size=65536)  # type: ignore[attr-defined]
    ]
    items = np.concatenate(parts)
    del parts
    index = FaissIndex(items, kind)
    rng = np.random.default_rng(0)
    q = items[rng.choice(len(items), min(queries, len(items)), replace=False)].astype(np.float32)
    exact = ExactIndex(items)  # float16 rows, scored in float32 a query batch at a time
    meta: dict[str, object] = {
        "build_seconds": round(index.build_seconds, 1),
        "recall_at_100": round(recall_at(index, exact, q, 100), 4),
    }
    index.save(out, meta)
    return json.loads((Path(out) / "index.json").read_text())
