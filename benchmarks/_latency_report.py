"""The tables ``serve_latency.py`` prints: the rows each measurement adds, gathered over the
catalogue sizes, and the targets met or not."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import numpy as np
from _latency_costs import RERANK
from _table import machine, print_table

Row = tuple[object, ...]


@dataclass
class Tables:
    """Rows of each printed table (most gathered over the sizes) and the target lines."""

    latency: list[Row] = field(default_factory=list)
    """The floor and the graph over HTTP, per size and concurrency."""
    checks: list[str] = field(default_factory=list)
    """One line per target: what was measured against it, met or NOT met."""
    index: list[Row] = field(default_factory=list)
    """Exact search against FAISS HNSW (the largest catalogue)."""
    cpu: list[Row] = field(default_factory=list)
    """CPU ms per request by process at the highest concurrency."""
    known: list[Row] = field(default_factory=list)
    """Known users with the query-vector cache on and off (the smallest catalogue)."""
    rerank: list[Row] = field(default_factory=list)
    """p50 with and without re-ranking."""
    explain: list[Row] = field(default_factory=list)
    """p50 with query parsing off, on, and explanations."""
    explore: list[Row] = field(default_factory=list)
    """p50 over HTTP with and without exploration."""
    log: list[Row] = field(default_factory=list)
    """p50/p95 with the impression log on and off (the smallest catalogue)."""


def print_report(args: argparse.Namespace, tables: Tables, naive: list[float]) -> None:
    """Every table (those of measurements turned off are left out), then the targets;
    ``naive``: ms per request of the naive design."""
    print_table(
        f"POST /recommend (5-item history + query, k=10), {args.requests} requests per row, "
        f"encoder {args.threads} threads, max batch {args.batch} ({machine()})",
        [
            "catalogue",
            "path",
            "concurrency",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "req/s",
            "errors",
            "p50 vs floor",
            "req/s vs batched floor",
        ],
        tables.latency,
    )
    print_table(
        f"Known users (no query), {args.known_users} users in the logs, {args.requests} "
        "requests per row: the ingress's query-vector cache on and off",
        ["items", "cache", "concurrency", "p50 ms", "p95 ms", "p99 ms", "req/s", "errors"],
        tables.known,
    )
    print_table(
        "Where the CPU goes at the highest concurrency: ms of CPU time per request by process "
        "(psutil; two cores give 2,000 ms per second)",
        ["items", "concurrency", "process", "CPU ms per request"],
        tables.cpu,
    )
    print_table(
        f"The naive design on {args.naive_items:,} items: the LLM scores every candidate per "
        "request",
        ["design", "p50 ms", "requests"],
        [("encode query + all items per request", float(np.median(naive)), len(naive))],
    )
    _print_optional(tables)
    print("\nTargets:")
    for line in tables.checks:
        print(f"- {line}")


def _print_optional(tables: Tables) -> None:
    """The tables of measurements that can be turned off or that only some sizes add."""
    optional: list[tuple[list[Row], str, list[str]]] = [
        (
            tables.rerank,
            f"Re-ranking cost: {RERANK} against plain, 40 requests, concurrency 1, two "
            "alternating runs each (p50 ms, mean of the runs)",
            ["catalogue", "requests", "HTTP p50 ms", "ranker alone p50 ms"],
        ),
        (
            tables.explain,
            "Query parsing and explanations: the same 40 requests (5-item history + query) "
            "with parsing off, on, and explained; concurrency 1, two alternating runs each "
            "(p50 ms, mean of the runs)",
            ["catalogue", "requests", "HTTP p50 ms", "in process p50 ms"],
        ),
        (
            tables.explore,
            "Exploration: the same 40 requests without and with a share of the list explored "
            "(over HTTP, concurrency 1, two alternating runs each; p50 ms, mean of the runs)",
            ["catalogue", "requests", "HTTP p50 ms"],
        ),
        (
            tables.log,
            "The impression log: the same requests (history + query, k=10) at concurrency 1 "
            "to an app that logs every answer and one that does not, alternated",
            ["items", "impression log", "requests", "p50 ms", "p95 ms"],
        ),
        (
            tables.index,
            "Item index on the largest catalogue, 100 encoded queries, top-100",
            ["items", "index", "build s", "p50 ms", "p95 ms", "p99 ms", "recall@100"],
        ),
    ]
    for rows, title, header in optional:
        if rows:
            print_table(title, header, rows)
