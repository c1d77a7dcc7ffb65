"""Latency of POST /recommend through the Ray Serve graph vs the bare in-process path.

    python benchmarks/serve_latency.py                       # champion in ./mlflow.db
    python benchmarks/serve_latency.py --model models:/llmrec-scorer/2 --requests 200

Sequential requests (concurrency 1) over real HTTP against `serve_deployments` on
127.0.0.1, and, in the same run, the floor: the same query builder + encoder + top-k in this
process. Prints p50/p95/p99 and the ratio of the graph to the floor.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import quiet
from _table import machine, print_table


def percentiles(fn: Callable[[], object], n: int) -> tuple[float, float, float]:
    for _ in range(5):  # warm-up
        fn()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(1000 * (time.perf_counter() - start))
    times.sort()
    return times[n // 2], times[int(n * 0.95) - 1], times[int(n * 0.99) - 1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="models:/llmrec-scorer@champion")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--requests", type=int, default=100)
    args = parser.parse_args()
    quiet()
    import mlflow
    import ray
    import requests
    from llmrec import registry
    from llmrec.bundle import ModelBundle
    from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, RecommendRequest
    from ray import serve

    from serve_deployments import build_app
    from serve_deployments.graph import absolute_tracking_uri

    tracking_uri = absolute_tracking_uri(args.tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    version, path = registry.download_bundle(args.model)
    bundle = ModelBundle(path)
    user = next(iter(bundle.histories))
    item = bundle.catalogue.ids[0]
    bodies = {
        "known user": {"user_id": user, "k": 10},
        "history + query": {"history": [item], "query": "something new to read", "k": 10},
    }
    builder, encoder, ranker = QueryBuilder(bundle), QueryEncoder(bundle), CandidateRanker(bundle)

    def bare(body: dict) -> Callable[[], object]:
        def run() -> object:
            req = RecommendRequest(**body)
            q = builder.build(req)
            return ranker.top_k(encoder.encode([q.text])[0], q.exclude, req.k)

        return run

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(build_app({"model_uri": version.uri, "tracking_uri": tracking_uri}), route_prefix="/")
    url = f"http://127.0.0.1:{port}/recommend"

    def http(body: dict) -> Callable[[], object]:
        def run() -> object:
            r = requests.post(url, json=body, timeout=30)
            r.raise_for_status()
            return r

        return run

    rows = []
    for name, body in bodies.items():
        floor = percentiles(bare(body), args.requests)
        graph = percentiles(http(body), args.requests)
        rows.append((name, "bare in-process", *floor, "1.00x"))
        rows.append((name, "Serve graph over HTTP", *graph, f"{graph[0] / floor[0]:.2f}x"))
    serve.shutdown()
    print_table(
        f"POST /recommend, {args.requests} sequential requests, {version.uri}, "
        f"{len(bundle.catalogue)} items ({machine()})",
        ["request", "path", "p50 ms", "p95 ms", "p99 ms", "p50 vs bare"],
        rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
