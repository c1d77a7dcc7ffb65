"""``scale.py --http``: the size's version registered and served by ``serve run`` (the
shipped config, a Ray of its own), then known users and typed queries over HTTP.

The graph is the production one (ingress -> query encoder -> candidate ranker); the
version's bundle is copied into a temporary MLflow store, as a registered version would be.
Reported with the latencies: how long the server took to answer ``/readyz`` and the memory
(RSS) of each Serve replica once it had served the requests.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
from _latency_http import load_http
from _serving import free_port, register_copy, serve_processes, serve_run, stop_server, wait_ready

GIB = 1024**3
QUERIES = (
    "a funny film for the whole family",
    "dark thriller with a twist",
    "space adventure",
    "romantic comedy set in paris",
    "a documentary about nature",
    "scary horror for halloween",
    "an animated musical",
    "gritty crime drama",
    "western with gunfights",
    "war film based on a true story",
)
"""Typed requests (no user, no history): the encoder's whole query path, then the index."""


def known_users(bundle_dir: Path) -> list[str]:
    """The users whose logs the bundle holds (read without loading the bundle)."""
    return sorted(set(pq.read_table(bundle_dir / "histories.parquet", columns=["user_id"])
                      .column("user_id").to_pylist()))  # fmt: skip


def http_rows(
    bundle_dir: Path, n: int, requests: int, levels: list[int]
) -> tuple[list[tuple[object, ...]], list[tuple[object, ...]]]:
    """Latency rows (size, request kind, concurrency, p50, p99, req/s, errors) and one row of
    the server's start time and replica memory, for the bundle served over HTTP."""
    from llmrec.config import RegistryConfig

    tmp = Path(tempfile.mkdtemp(prefix=f"llmrec-scale-http-{n}-"))
    store = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = RegistryConfig(
        tracking_uri=store, artifact_location=str(tmp / "art"), model_name=f"scale-{n}"
    )
    started = time.perf_counter()
    version = register_copy(cfg, f"scale-{n}", bundle_dir)
    registered = time.perf_counter() - started
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = serve_run(
        tmp,
        port,
        {
            "model_uri": version.uri,
            "tracking_uri": store,
            "watch_interval_s": 0,
            "history_db": str(tmp / "history.sqlite"),
            "feedback_dir": str(tmp / "feedback"),
        },
    )
    try:
        started = time.perf_counter()
        wait_ready(url, server, timeout=1800)
        ready = time.perf_counter() - started
        users = known_users(bundle_dir)
        kinds = {
            "known user": [{"user_id": users[i % len(users)], "k": 10} for i in range(requests)],
            "typed query": [{"query": QUERIES[i % len(QUERIES)], "k": 10} for i in range(requests)],
        }
        rows: list[tuple[object, ...]] = []
        for kind, reqs in kinds.items():
            load_http(f"{url}/recommend", reqs[:10], 1)  # warm-up
            for c in levels:
                res = load_http(f"{url}/recommend", reqs, c)
                p50, _, p99 = res["lat"]
                rows.append(
                    (f"{n:,}", kind, c, f"{p50:.1f}", f"{p99:.1f}", f"{res['rps']:.1f}",
                     res["errors"])
                )  # fmt: skip
        rss = {role: p.memory_info().rss / GIB for role, p in serve_processes(server.pid).items()}
        start_row = (
            f"{n:,}",
            f"{registered:.0f}",
            f"{ready:.0f}",
            *(f"{rss.get(role, float('nan')):.2f}" for role in ("ranker", "encoder", "ingress")),
        )
        print(f"  HTTP: ready in {ready:.0f} s; {rows}", flush=True)
        return rows, [start_row]
    finally:
        stop_server(server)
        shutil.rmtree(tmp, ignore_errors=True)
