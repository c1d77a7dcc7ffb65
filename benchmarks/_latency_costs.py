"""What ``serve_latency.py`` measures in this process, without Serve: the floor (query
builder + encoder + ranker, unbatched and batched), the cost of re-ranking and of query
parsing and explanations (each alternated with its HTTP counterpart so that drift hits both),
FAISS HNSW against exact search, and the naive design that encodes every candidate.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from _latency_data import bodies, catalogue_table
from _latency_http import load_http
from _serving import percentiles

if TYPE_CHECKING:
    from llmrec.modeling.scorer import LLMScorer
    from llmrec.registry.bundle import ModelBundle
    from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, ServeSettings

    Parts = tuple[QueryBuilder, QueryEncoder, CandidateRanker]
    """One version in this process: what the ingress, the encoder and the ranker run."""

Row = tuple[object, ...]

RERANK = {"diversity": 0.3, "calibration": 0.5, "tail_share": 0.3, "max_per": {"categories": 3}}
"""The re-ranking a request asks for in the cost rows (every re-ranker at once)."""


def ranker_p50(
    builder: QueryBuilder,
    encoder: QueryEncoder,
    ranker: CandidateRanker,
    reqs: list[dict[str, Any]],
) -> float:
    """p50 ms of the ranker alone (index, hybrid, filters, re-ranking) on encoded queries."""
    from llmrec.serving import RecommendRequest

    queries = [builder.build(RecommendRequest(**body)) for body in reqs]
    vectors = encoder.encode(queries)
    times: list[float] = []
    for vec, q in zip(vectors, queries, strict=True):
        start = time.perf_counter()
        ranker.rank(vec, q)
        times.append(1000 * (time.perf_counter() - start))
    return percentiles(times)[0]


def rerank_cost(
    label: str, url: str, reqs: list[dict[str, Any]], parts: Parts
) -> list[tuple[object, ...]]:
    """Rows: p50 with and without re-ranking, HTTP at concurrency 1 and the ranker alone,
    alternating plain and re-ranked runs so that drift hits both."""
    shaped = [{**body, **RERANK} for body in reqs]
    http: dict[str, list[float]] = {"plain": [], "re-ranked": []}
    alone: dict[str, list[float]] = {"plain": [], "re-ranked": []}
    for _ in range(2):
        for name, bodies_ in (("plain", reqs), ("re-ranked", shaped)):
            http[name].append(load_http(url, bodies_, 1)["lat"][0])
            alone[name].append(ranker_p50(*parts, bodies_))
    return [
        (label, name, float(np.mean(http[name])), float(np.mean(alone[name])))
        for name in ("plain", "re-ranked")
    ]


def explore_cost(label: str, url: str, reqs: list[dict[str, Any]], share: float) -> list[Row]:
    """Rows: p50 over HTTP at concurrency 1 without and with ``"explore": share`` (the
    ingress widens the ranker's list, adds the unproven items, reads their evidence in the
    impression log and draws the slots), the same requests, two alternating runs each."""
    explored = [{**body, "explore": share} for body in reqs]
    http: dict[str, list[float]] = {"plain": [], f'"explore": {share:g}': []}
    for _ in range(2):
        for name, bodies_ in zip(http, (reqs, explored), strict=True):
            http[name].append(load_http(url, bodies_, 1)["lat"][0])
    return [(label, name, float(np.mean(times))) for name, times in http.items()]


def explain_cost(
    label: str, url: str, reqs: list[dict[str, Any]], parts: Parts
) -> list[tuple[object, ...]]:
    """Rows: p50 with query parsing off, on (the default) and with explanations on top,
    HTTP at concurrency 1 and in this process (builder + encoder + ranker), alternating the
    three so that drift hits each; the same requests."""
    from llmrec.serving import RecommendRequest

    builder, encoder, ranker = parts
    variants = {
        "query parsing off": [{**b, "parse_query": False} for b in reqs],
        "query parsing on (default)": reqs,
        '+ "explain": true': [{**b, "explain": True} for b in reqs],
    }
    http: dict[str, list[float]] = {k: [] for k in variants}
    alone: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(2):
        for name, bodies_ in variants.items():
            http[name].append(load_http(url, bodies_, 1)["lat"][0])
            times: list[float] = []
            for body in bodies_:
                start = time.perf_counter()
                q = builder.build(RecommendRequest(**body))
                ranker.rank(encoder.encode([q]), q)
                times.append(1000 * (time.perf_counter() - start))
            alone[name].append(percentiles(times)[0])
    return [
        (label, name, float(np.mean(http[name])), float(np.mean(alone[name]))) for name in variants
    ]


def floor_rows(
    label: str, parts: Parts, reqs: list[dict[str, Any]], batch: int
) -> tuple[list[tuple[object, ...]], tuple[float, float, float], float]:
    """The floor: ``reqs`` through builder + encoder + ranker one at a time (after 20 to
    warm up), then ``batch`` requests per forward pass and ranking call. Returns the two
    table rows, the unbatched p50/p95/p99 ms and the batched requests per second."""
    from llmrec.serving import RecommendRequest

    builder, encoder, ranker = parts
    for body in reqs[:20]:  # warm-up
        q = builder.build(RecommendRequest(**body))
        ranker.rank(encoder.encode([q])[0], q)
    times = []
    for body in reqs:
        start = time.perf_counter()
        q = builder.build(RecommendRequest(**body))
        ranker.rank(encoder.encode([q])[0], q)
        times.append(1000 * (time.perf_counter() - start))
    floor = percentiles(times)
    floor_rps = 1000 * len(times) / sum(times)
    start = time.perf_counter()
    batch_times = []
    for i in range(0, len(reqs), batch):
        b0 = time.perf_counter()
        qs = [builder.build(RecommendRequest(**body)) for body in reqs[i : i + batch]]
        ranker.rank_many(encoder.encode(qs), qs)
        batch_times.append(1000 * (time.perf_counter() - b0))
    batched_rps = len(reqs) / (time.perf_counter() - start)
    rows: list[tuple[object, ...]] = [
        (
            label,
            "floor, unbatched",
            1,
            *floor,
            floor_rps,
            0,
            "1.00x",
            f"{floor_rps / batched_rps:.2f}x",
        ),
        (
            label,
            f"floor, batches of {batch}",
            batch,
            *percentiles(batch_times),
            batched_rps,
            0,
            "-",
            "1.00x",
        ),
    ]
    return rows, floor, batched_rps


def index_rows(
    n: int, bundle: ModelBundle, settings: ServeSettings, parts: Parts, reqs: list[dict[str, Any]]
) -> list[tuple[object, ...]]:
    """Exact search against FAISS HNSW (the settings' M and efSearch) over the bundle's
    item vectors, top-100 for each of ``reqs``' encoded queries: build seconds, search
    p50/p95/p99 ms and recall@100 against exact."""
    from llmrec.ranking.index import ExactIndex, HNSWIndex, ItemIndex, recall_at
    from llmrec.serving import RecommendRequest

    builder, encoder, _ = parts
    qv = encoder.encode([builder.build(RecommendRequest(**b)) for b in reqs])
    exact = ExactIndex(bundle.item_embeddings)
    hnsw = HNSWIndex(bundle.item_embeddings, m=settings.hnsw_m, ef_search=settings.hnsw_ef_search)
    hnsw_name = f"FAISS HNSW (M={settings.hnsw_m}, efSearch={settings.hnsw_ef_search})"
    indexes: list[tuple[str, ItemIndex, float]] = [
        ("exact", exact, 0.0),
        (hnsw_name, hnsw, hnsw.build_seconds),
    ]
    rows: list[tuple[object, ...]] = []
    for name, idx, build in indexes:
        t = []
        for v in qv:
            start = time.perf_counter()
            idx.search(v[None, :], 100)
            t.append(1000 * (time.perf_counter() - start))
        rec = 1.0 if idx is exact else recall_at(hnsw, exact, qv, 100)
        rows.append((f"{n:,}", name, build, *percentiles(t), rec))
    return rows


def naive_times(source: Path, scorer: LLMScorer, n_items: int) -> list[float]:
    """ms per request of the naive design on a generated ``n_items`` catalogue: the language
    model encodes the query and every candidate for each of 3 requests (no precomputed
    item vectors), then takes the top 10."""
    import torch
    from llmrec.data.catalogue import Catalogue
    from llmrec.data.text import render_user
    from llmrec.registry.bundle import ModelBundle

    cat = Catalogue.from_table(catalogue_table(n_items, seed=3))
    texts = cat.texts()
    bundle = ModelBundle(source)
    naive = []
    for body in bodies(n_items, 3):
        start = time.perf_counter()
        qtext = render_user(
            body["history"], cat.items, body["query"], bundle.config.data.max_history
        )
        query = scorer.encode([qtext], kind="query")
        items = scorer.encode(texts, kind="item", batch_size=128)
        top = torch.topk((items @ query[0]), 10)
        naive.append(1000 * (time.perf_counter() - start))
        del top
    return naive
