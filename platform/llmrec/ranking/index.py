"""Nearest items to a query embedding by inner product: exact, or a FAISS HNSW index.

Small catalogues are searched exactly (one matrix-vector product). Above a configurable size
a FAISS HNSW graph (``faiss-cpu``) answers in roughly logarithmic time; :func:`recall_at`
measures how many of the exact top items it finds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

IndexKind = Literal["auto", "exact", "hnsw"]


class ItemIndex(Protocol):
    """Top-n item rows (best first) and their inner products, per query row."""

    kind: str
    build_seconds: float

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class ExactIndex:
    """Brute-force inner product over all items."""

    items: np.ndarray
    kind: str = "exact"
    build_seconds: float = 0.0

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        q = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        scores = q @ self.items.T
        n = min(n, self.items.shape[0])
        top = np.argpartition(-scores, n - 1, axis=1)[:, :n]
        part = np.take_along_axis(scores, top, axis=1)
        order = np.argsort(-part, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(part, order, axis=1)


class HNSWIndex:
    """FAISS ``IndexHNSWFlat`` with inner-product metric.

    Args:
        items: ``[items, dim]`` embeddings.
        m: Graph degree (memory and recall grow with it).
        ef_construction: Candidate list size while building.
        ef_search: Candidate list size while searching (recall vs speed knob).
        threads: OpenMP threads of FAISS in this process (1 suits one query per call).
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

        # One query at a time: OpenMP threads only spin against the encoder for the cores.
        faiss.omp_set_num_threads(threads)
        start = time.perf_counter()
        x = np.ascontiguousarray(items, dtype=np.float32)
        self.index = faiss.IndexHNSWFlat(x.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        self.index.add(x)
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


def build_index(
    items: np.ndarray,
    kind: IndexKind = "auto",
    min_items_for_ann: int = 20000,
    hnsw_m: int = 32,
    ef_search: int = 128,
) -> ItemIndex:
    """``exact`` or ``hnsw``; ``auto`` picks HNSW from ``min_items_for_ann`` items up."""
    if kind == "hnsw" or (kind == "auto" and len(items) >= min_items_for_ann):
        return HNSWIndex(items, m=hnsw_m, ef_search=ef_search)
    return ExactIndex(np.asarray(items, dtype=np.float32))


def recall_at(index: ItemIndex, exact: ExactIndex, queries: np.ndarray, n: int = 100) -> float:
    """Mean share of the exact top-``n`` rows that ``index`` also returns in its top ``n``."""
    got, _ = index.search(queries, n)
    want, _ = exact.search(queries, n)
    hits = [len(set(g.tolist()) & set(w.tolist())) for g, w in zip(got, want, strict=True)]
    return float(np.mean(hits) / n)
