"""Serving latency and throughput: the Ray Serve graph over HTTP against the bare model.

    python benchmarks/serve_latency.py                         # 10k and 100k items
    python benchmarks/serve_latency.py --sizes 10000 --concurrency 1,8

For each catalogue size a model version is registered (in a temporary MLflow store) with the
champion's adapter and tokenizer (``--model``, default ``models:/llmrec-scorer@champion`` in
./mlflow.db) and a generated catalogue. Requests are a 5-item history plus a typed query.
In the same run:

- the floor: the same query builder + encoder + ranker in this process, unbatched (one
  request at a time) and batched (``--batch`` requests per forward pass and ranking call);
- the graph (``serve_deployments``) over real HTTP on 127.0.0.1 at each concurrency:
  p50/p95/p99 latency, throughput and errors; p50 against the unbatched floor, throughput
  against the batched floor;
- known users (``--known-users`` in the version's logs, no typed query) on the smallest
  catalogue with the ingress's query-vector cache on (precomputed when the version loads)
  and off: latency and throughput at the lowest and highest concurrency, and whether the
  top-10 lists are identical;
- the naive design on a 1,000-item catalogue: the language model encodes every candidate
  for each request (no precomputed item embeddings);
- FAISS HNSW against exact search on the largest catalogue: recall@100 and search time;
- where the CPU goes at the highest concurrency: CPU time per request of each Serve process,
  the load client and the rest;
- the cost of re-ranking (``--rerank``, on by default): the same requests with diversity,
  calibration, a long-tail share and a cap per category, against plain, p50 over HTTP at
  concurrency 1 and of the ranker alone;
- the cost of query parsing and of explanations (``--explain``, on by default): the same
  requests with ``parse_query`` off, on (the default) and with ``"explain": true``, p50
  over HTTP at concurrency 1 and in this process;
- the cost of exploration (``--explore SHARE``, 0.1 by default; 0: not measured): the same
  requests without and with ``"explore": SHARE``, p50 over HTTP at concurrency 1;
- the cost of the impression log (``--impressions``, on by default), on the smallest
  catalogue: two apps on the same version, one logging every answer and one not, requests
  alternated between them at concurrency 1 so that drift hits both; p50 with and without.

Item embeddings: the first ``--encoded`` generated items are encoded with the model's item
tower; the others are noisy copies of those (encoding 100,000 texts takes ~17 minutes on a
2-core CPU). Latency depends on the catalogue's size, not on how its vectors were made;
recall does depend on their distribution.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import quiet
from _latency_costs import (
    explain_cost,
    explore_cost,
    floor_rows,
    index_rows,
    naive_times,
    rerank_cost,
)
from _latency_data import bodies, make_bundle
from _latency_http import (
    AppBuilder,
    cpu_per_request,
    cpu_seconds,
    impression_cost,
    known_users_ab,
    load_http,
)
from _latency_report import Tables, print_report
from _serving import free_port, register_copy, source_bundle

if TYPE_CHECKING:
    from llmrec.config import RegistryConfig
    from llmrec.modeling.towers import Towers


def parse_args() -> argparse.Namespace:
    """The command line (``--help``: this module's docstring and the options)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="models:/llmrec-scorer@champion")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=160, help="per concurrency level")
    parser.add_argument("--batch", type=int, default=16, help="encoder max batch size")
    parser.add_argument("--threads", type=int, default=2, help="encoder intra-op threads")
    parser.add_argument("--encoded", type=int, default=2000)
    parser.add_argument("--naive-items", type=int, default=1000)
    parser.add_argument(
        "--known-users",
        type=int,
        default=1000,
        help="users in the logs (cache on/off run)",
    )
    parser.add_argument(
        "--rerank",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the cost of per-request re-ranking (p50 with and without)",
    )
    parser.add_argument(
        "--explain",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the cost of query parsing and of explanations (p50 with and without)",
    )
    parser.add_argument(
        "--explore",
        type=float,
        default=0.1,
        help="measure the cost of exploring this share of each list (0: do not)",
    )
    parser.add_argument(
        "--impressions",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the cost of the impression log (p50 with and without, same run)",
    )
    return parser.parse_args()


@dataclass
class Bench:
    """What every catalogue size is measured with."""

    args: argparse.Namespace
    sizes: list[int]
    """Catalogue sizes (``--sizes``), in the order measured."""
    levels: list[int]
    """Client concurrencies (``--concurrency``)."""
    source: Path
    """The model's bundle: its towers encode the generated items; each version copies it."""
    towers: Towers
    tmp: Path
    """Where the generated bundles and the temporary MLflow store go."""
    registry: RegistryConfig
    """The temporary MLflow store the versions are registered in."""
    settings: dict[str, Any]
    """The graph's :class:`~llmrec.serving.ServeSettings` fields (``model_uri`` aside)."""
    url: str
    """``POST /recommend`` of the Serve started here."""
    serve: ModuleType
    """``ray.serve``, started."""
    build_app: AppBuilder


def graph_rows(
    n: int,
    label: str,
    bench: Bench,
    reqs: list[dict[str, Any]],
    floor: tuple[float, float, float],
    batched_rps: float,
    tables: Tables,
) -> None:
    """The graph over HTTP at each concurrency (its app running), against the floor; at the
    highest, the CPU time per request of each process. Adds the rows and target lines."""
    levels = bench.levels
    load_http(bench.url, reqs[:10], 1)  # warm-up
    for c in levels:
        before = cpu_seconds()
        res = load_http(bench.url, reqs, c)
        if c == max(levels):
            for role, ms in cpu_per_request(before, cpu_seconds(), len(reqs)):
                tables.cpu.append((f"{n:,}", c, role, ms))
        tables.latency.append(
            (
                label,
                "Serve graph, HTTP",
                c,
                *res["lat"],
                res["rps"],
                res["errors"],
                f"{res['lat'][0] / floor[0]:.2f}x",
                f"{res['rps'] / batched_rps:.2f}x",
            )
        )
        if c == 1:
            ok = res["lat"][0] <= 1.5 * floor[0] + 10
            tables.checks.append(
                f"{n:,} items: p50 at concurrency 1 {res['lat'][0]:.1f} ms vs target "
                f"1.5 x {floor[0]:.1f} + 10 = {1.5 * floor[0] + 10:.1f} ms: "
                + ("met" if ok else "NOT met")
            )
        if c == max(levels):
            ok = res["rps"] >= 0.7 * batched_rps
            tables.checks.append(
                f"{n:,} items: throughput at concurrency {c} {res['rps']:.1f}/s vs 70% of "
                f"batched floor {0.7 * batched_rps:.1f}/s: {'met' if ok else 'NOT met'}"
            )
        tables.checks.append(f"{n:,} items, concurrency {c}: {res['errors']} errors")


def smallest_rows(
    n: int, bench: Bench, uri: str, reqs: list[dict[str, Any]], tables: Tables
) -> None:
    """On the smallest catalogue: known users with the query-vector cache on and off, and
    (``--impressions``) the impression log on and off."""
    args, levels = bench.args, bench.levels
    base = bench.url.removesuffix("/recommend")
    known, checks = known_users_ab(
        bench.serve,
        bench.build_app,
        {**bench.settings, "known_users": args.known_users},
        uri,
        base,
        [min(levels), max(levels)],
        args.requests,
    )
    tables.known = [(f"{n:,}", *r) for r in known]
    tables.checks += checks
    if args.impressions:
        logged, check = impression_cost(
            bench.serve, bench.build_app, bench.settings, uri, base, reqs
        )
        tables.log = [(f"{n:,}", *r) for r in logged]
        tables.checks.append(check)


def measure_size(n: int, bench: Bench, tables: Tables) -> None:
    """One catalogue size: a version with a generated ``n``-item catalogue registered, the
    floor in this process, the graph serving that version over HTTP, the costs."""
    import mlflow
    from llmrec.registry.bundle import ModelBundle
    from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, ServeSettings

    args = bench.args
    t0 = time.perf_counter()
    bdir = make_bundle(
        bench.source,
        n,
        min(args.encoded, n),
        bench.tmp / f"bundle-{n}",
        bench.towers,
        args.known_users,
    )
    name = f"bench-{n}"
    version = register_copy(dataclasses.replace(bench.registry, model_name=name), name, bdir)
    mlflow.set_tracking_uri(bench.registry.tracking_uri)
    prepared = time.perf_counter() - t0
    bundle = ModelBundle(bdir)
    s = ServeSettings.from_args(bench.settings)
    encoder = QueryEncoder(bundle, args.threads)
    parser_ = encoder.parser(s.intent_title_vectors)  # what the served version reads with
    parts = (QueryBuilder(bundle, settings=s, parser=parser_), encoder, CandidateRanker(bundle, s))
    reqs = bodies(n, args.requests)
    label = f"{n:,} items ({parts[2].describe().split()[0]})"
    rows, floor, batched_rps = floor_rows(label, parts, reqs, args.batch)
    tables.latency += rows
    app = bench.build_app({**bench.settings, "model_uri": version.uri})
    bench.serve.run(app, name="bench", route_prefix="/")
    graph_rows(n, label, bench, reqs, floor, batched_rps, tables)
    if args.rerank:
        tables.rerank += rerank_cost(label, bench.url, reqs[:40], parts)
    if args.explain:
        tables.explain += explain_cost(label, bench.url, reqs[:40], parts)
    if args.explore:
        tables.explore += explore_cost(label, bench.url, reqs[:40], args.explore)
    bench.serve.delete("bench")
    print(f"[{n:,} items: catalogue + registration {prepared:.0f} s]", flush=True)
    if n == min(bench.sizes):
        smallest_rows(n, bench, version.uri, reqs, tables)
    if n == max(bench.sizes):
        tables.index += index_rows(n, bundle, s, parts, reqs[:100])


def main() -> int:
    """Measure every size, then the naive design; print the tables (2: no such model)."""
    args = parse_args()
    quiet()
    import ray
    import torch
    from llmrec.config import RegistryConfig
    from llmrec.registry import store as registry
    from llmrec.registry.bundle import ModelBundle
    from ray import serve

    from serve_deployments import build_app

    torch.set_num_threads(args.threads)
    try:
        source = source_bundle(args.model, args.tracking_uri)
    except registry.ModelNotFoundError as exc:
        print(f"{exc}; run `make demo` first or pass --model", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-bench-"))
    tracking = f"sqlite:///{tmp / 'mlflow.db'}"
    towers = ModelBundle(source).load_towers()
    port = free_port()
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    settings = {
        "tracking_uri": tracking,
        "history_db": str(tmp / "h.sqlite"),
        "feedback_dir": str(tmp / "fb"),
        "watch_interval_s": 0,
        "max_batch_size": args.batch,
        "encoder_threads": args.threads,
        "precompute_users": False,  # no background encoding beside the uncached path's rows
    }
    bench = Bench(
        args=args,
        sizes=[int(s) for s in args.sizes.split(",")],
        levels=[int(c) for c in args.concurrency.split(",")],
        source=source,
        towers=towers,
        tmp=tmp,
        registry=RegistryConfig(tracking_uri=tracking, artifact_location=str(tmp / "art")),
        settings=settings,
        url=f"http://127.0.0.1:{port}/recommend",
        serve=serve,
        build_app=build_app,
    )
    tables = Tables()
    for n in bench.sizes:
        measure_size(n, bench, tables)
    # the naive design: the LLM encodes every candidate for each request
    naive = naive_times(source, towers.scorer, args.naive_items)
    serve.shutdown()
    ray.shutdown()
    print_report(args, tables, naive)
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
