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
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import quiet
from _table import machine, print_table

GENRES = [
    "Fantasy",
    "Mystery",
    "Romance",
    "Science Fiction",
    "History",
    "Travel",
    "Cooking",
    "Music",
    "Business",
    "Health & Fitness",
]
ADJ = [
    "Silent",
    "Golden",
    "Hidden",
    "Broken",
    "Northern",
    "Electric",
    "Quiet",
    "Burning",
    "Lost",
    "Velvet",
    "Iron",
    "Crimson",
    "Wandering",
    "Secret",
    "Endless",
    "Frozen",
]
NOUN = [
    "Kingdom",
    "Harbor",
    "Recipe",
    "Symphony",
    "Journey",
    "Empire",
    "Garden",
    "Signal",
    "Archive",
    "Frontier",
    "Market",
    "Lantern",
    "Orbit",
    "Cathedral",
    "River",
    "Ledger",
]
QUERIES = [
    "something light for the weekend",
    "a slow, thoughtful story",
    "dragons and magic",
    "learn to cook quickly",
    "true stories about explorers",
    "music that helps focus",
    "a detective with a twist",
    "startup lessons",
    "romance in a small town",
    "space battles and politics",
]


def stats(times_ms: list[float]) -> tuple[float, float, float]:
    t = np.sort(np.asarray(times_ms))
    return (float(np.percentile(t, 50)), float(np.percentile(t, 95)), float(np.percentile(t, 99)))


def catalogue_table(n: int, seed: int = 0) -> Any:
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    genres = rng.integers(0, len(GENRES), n)
    titles = [
        f"{ADJ[a]} {NOUN[b]} {i}"
        for i, (a, b) in enumerate(zip(rng.integers(0, 16, n), rng.integers(0, 16, n), strict=True))
    ]
    return pa.table(
        {
            "item_id": [f"b{i:06d}" for i in range(n)],
            "title": titles,
            "text": [f"A {GENRES[g].lower()} title." for g in genres],
            "categories": [[GENRES[g]] for g in genres],
        }
    )


def make_bundle(
    source: Path, n: int, encoded: int, out: Path, towers: Any, known_users: int = 1
) -> Path:
    """The source bundle with a generated ``n``-item catalogue, ``known_users`` users with
    5-item histories (``bench-u00000``, ...) and no hybrid part. ``encoded`` items get their
    vector from the version's item tower; the rest are noisy copies of those."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    from llmrec.data.catalogue import Catalogue

    shutil.copytree(source, out, ignore=shutil.ignore_patterns("hybrid"))
    table = catalogue_table(n)
    cat = Catalogue.from_table(table)
    base = towers.encode_new_items([cat.items[i] for i in cat.ids[:encoded]])
    rng = np.random.default_rng(1)
    rest = base[rng.integers(0, len(base), n - len(base))]
    spread = 0.05 * float(np.linalg.norm(base, axis=1).mean()) / np.sqrt(base.shape[1])
    rest = rest + spread * rng.standard_normal(rest.shape).astype(np.float32)
    emb = np.concatenate([base, rest]).astype(np.float32)
    table = table.append_column(
        "embedding", pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), emb.shape[1])
    )
    pq.write_table(table, out / "items.parquet")
    ids = table["item_id"].to_pylist()
    picks = np.random.default_rng(4).integers(0, n, (known_users, 5))
    pd.DataFrame(
        {
            "user_id": [f"bench-u{u:05d}" for u in range(known_users)],
            "items": [[ids[i] for i in row] for row in picks],
        }
    ).to_parquet(out / "histories.parquet", index=False)
    return out


def bodies(n_items: int, count: int, seed: int = 2) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [
        {
            "history": [f"b{i:06d}" for i in rng.choice(n_items, 5, replace=False)],
            "query": QUERIES[j % len(QUERIES)],
            "k": 10,
        }
        for j in range(count)
    ]


def load_http(
    url: str,
    reqs: list[dict[str, Any]],
    concurrency: int,
    answers: dict[int, list[str]] | None = None,
) -> dict[str, Any]:
    """Send ``reqs`` with ``concurrency`` client threads; latency per request, errors (and
    each request's item ids in ``answers``, by position, when given)."""
    import requests

    times: list[float] = []
    errors = 0
    lock = threading.Lock()
    queue = list(reversed(list(enumerate(reqs))))

    def worker() -> None:
        nonlocal errors
        session = requests.Session()
        while True:
            with lock:
                if not queue:
                    return
                index, body = queue.pop()
            start = time.perf_counter()
            try:
                r = session.post(url, json=body, timeout=60)
                ok = r.status_code == 200
                if ok and answers is not None:
                    answers[index] = [i["item_id"] for i in r.json()["items"]]
            except requests.RequestException:
                ok = False
            took = 1000 * (time.perf_counter() - start)
            with lock:
                times.append(took)
                errors += 0 if ok else 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    return {"lat": stats(times), "rps": len(reqs) / elapsed, "errors": errors}


def known_users_ab(
    serve: Any,
    build_app: Any,
    settings: dict[str, Any],
    uri: str,
    base: str,
    levels: list[int],
    count: int,
) -> tuple[list[tuple[object, ...]], list[str]]:
    """Known-user requests (no query) with the ingress's vector cache on, then off, in the
    same run: latency and throughput at each concurrency, and whether the top-10 lists are
    identical."""
    import requests

    users = [f"bench-u{u:05d}" for u in range(settings["known_users"])]
    reqs = [{"user_id": users[i % len(users)], "k": 10} for i in range(count)]
    rows: list[tuple[object, ...]] = []
    results: dict[str, dict[int, dict[str, Any]]] = {}
    answers: dict[str, dict[int, list[str]]] = {}
    app = {k: v for k, v in settings.items() if k != "known_users"}
    for cache, size in (("on", 100_000), ("off", 0)):
        serve.run(
            build_app(
                {**app, "model_uri": uri, "user_cache_size": size, "precompute_users": bool(size)}
            ),
            name="bench",
            route_prefix="/",
        )
        deadline = time.time() + 600
        while size and time.time() < deadline:  # the precomputation finished
            ready = requests.get(f"{base}/readyz", timeout=30).json()
            if ready["cached_users"] >= len(users):
                break
            time.sleep(1)
        load_http(f"{base}/recommend", reqs[:10], 1)  # warm-up
        answers[cache], results[cache] = {}, {}
        for c in levels:
            res = load_http(f"{base}/recommend", reqs, c, answers[cache] if c == 1 else None)
            results[cache][c] = res
            rows.append((f"cache {cache}", c, *res["lat"], res["rps"], res["errors"]))
        serve.delete("bench")
    lo, hi = min(levels), max(levels)
    on, off = results["on"], results["off"]
    same = answers["on"] == answers["off"] and len(answers["on"]) == count
    checks = [
        f"known users, concurrency {hi}: {on[hi]['rps'] / off[hi]['rps']:.2f}x req/s with the "
        f"cache (target >= 3x): {'met' if on[hi]['rps'] >= 3 * off[hi]['rps'] else 'NOT met'}",
        f"known users, concurrency {lo}: p50 {on[lo]['lat'][0]:.1f} ms with the cache vs "
        f"{off[lo]['lat'][0]:.1f} ms without: "
        + ("lower" if on[lo]["lat"][0] < off[lo]["lat"][0] else "NOT lower"),
        "known users: top-10 lists with and without the cache "
        + ("identical" if same else "DIFFER"),
    ]
    return rows, checks


def cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of every process on the machine, by pid."""
    import psutil

    out = {}
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            t = proc.cpu_times()
            out[proc.info["pid"]] = (" ".join(proc.info["cmdline"] or []), t.user + t.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


ROLES = (
    ("QueryEncoderDeployment", "encoder replica"),
    ("Ingress", "ingress replica"),
    ("CandidateRankerDeployment", "ranker replica"),
    ("ProxyActor", "Serve HTTP proxy"),
    ("ServeController", "Serve controller"),
    ("serve_latency.py", "this script (HTTP load client)"),
)


def cpu_per_request(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], requests: int
) -> list[tuple[str, float]]:
    """ms of CPU per request by role (Serve's processes, the client, the rest of Ray)."""
    spent: dict[str, float] = {}
    for pid, (cmd, t) in after.items():
        used = t - before.get(pid, (cmd, 0.0))[1]
        role = next((r for key, r in ROLES if key in cmd), "other processes (Ray, system)")
        spent[role] = spent.get(role, 0.0) + used
    rows = [(role, 1000 * t / requests) for role, t in spent.items() if t > 0]
    return sorted(rows, key=lambda r: -r[1])


RERANK = {"diversity": 0.3, "calibration": 0.5, "tail_share": 0.3, "max_per": {"categories": 3}}
"""The re-ranking a request asks for in the cost rows (every re-ranker at once)."""


def ranker_p50(builder: Any, encoder: Any, ranker: Any, reqs: list[dict[str, Any]]) -> float:
    """p50 ms of the ranker alone (index, hybrid, filters, re-ranking) on encoded queries."""
    from llmrec.serving import RecommendRequest

    queries = [builder.build(RecommendRequest(**body)) for body in reqs]
    vectors = encoder.encode(queries)
    times = []
    for vec, q in zip(vectors, queries, strict=True):
        start = time.perf_counter()
        ranker.rank(vec, q)
        times.append(1000 * (time.perf_counter() - start))
    return stats(times)[0]


def rerank_cost(
    label: str, url: str, reqs: list[dict[str, Any]], parts: tuple[Any, Any, Any]
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


def explain_cost(
    label: str, url: str, reqs: list[dict[str, Any]], parts: tuple[Any, Any, Any]
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
            times = []
            for body in bodies_:
                start = time.perf_counter()
                q = builder.build(RecommendRequest(**body))
                ranker.rank(encoder.encode([q]), q)
                times.append(1000 * (time.perf_counter() - start))
            alone[name].append(stats(times)[0])
    return [
        (label, name, float(np.mean(http[name])), float(np.mean(alone[name]))) for name in variants
    ]


def impression_cost(
    serve: Any,
    build_app: Any,
    settings: dict[str, Any],
    uri: str,
    base: str,
    reqs: list[dict[str, Any]],
    rounds: int = 2,
) -> tuple[list[tuple[object, ...]], str]:
    """p50/p95 at concurrency 1 with the impression log on and off in the same run: one app
    of each, requests alternated between them (which goes first alternates too)."""
    import requests

    for name, on in (("log-on", True), ("log-off", False)):
        app = build_app({**settings, "model_uri": uri, "impressions": on})
        serve.run(app, name=name, route_prefix=f"/{name}")
    sessions = {name: requests.Session() for name in ("log-on", "log-off")}
    times: dict[str, list[float]] = {"log-on": [], "log-off": []}
    for i, body in enumerate(reqs[:10] * 2 + reqs * rounds):
        pair = ("log-on", "log-off") if i % 2 else ("log-off", "log-on")
        for name in pair:
            start = time.perf_counter()
            r = sessions[name].post(f"{base}/{name}/recommend", json=body, timeout=60)
            took = 1000 * (time.perf_counter() - start)
            if r.status_code == 200 and i >= 20:  # after the warm-up
                times[name].append(took)
    for name in times:
        serve.delete(name)
    on, off = stats(times["log-on"]), stats(times["log-off"])
    rows = [
        ("on", len(times["log-on"]), on[0], on[1]),
        ("off", len(times["log-off"]), off[0], off[1]),
    ]
    cost = (on[0] - off[0]) / off[0]
    check = (
        f"impression log: p50 at concurrency 1 {on[0]:.1f} ms on vs {off[0]:.1f} ms off, "
        f"{cost:+.1%} (target <= +5%): {'met' if cost <= 0.05 else 'NOT met'}"
    )
    return rows, check


def main() -> int:
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
        "--impressions",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the cost of the impression log (p50 with and without, same run)",
    )
    args = parser.parse_args()
    quiet()
    import mlflow
    import ray
    import torch
    from llmrec.config import RegistryConfig
    from llmrec.ranking.index import ExactIndex, HNSWIndex, recall_at
    from llmrec.registry import store as registry
    from llmrec.registry.bundle import ModelBundle
    from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, RecommendRequest
    from llmrec.serving.settings import ServeSettings, absolute_tracking_uri
    from ray import serve

    from serve_deployments import build_app

    torch.set_num_threads(args.threads)
    mlflow.set_tracking_uri(absolute_tracking_uri(args.tracking_uri))
    try:
        _, source = registry.download_bundle(args.model)
    except registry.ModelNotFoundError as exc:
        print(f"{exc}; run `make demo` first or pass --model", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-bench-"))
    tracking = f"sqlite:///{tmp / 'mlflow.db'}"
    cfg = RegistryConfig(tracking_uri=tracking, artifact_location=str(tmp / "art"))
    towers = ModelBundle(source).load_towers()
    scorer = towers.scorer
    sizes = [int(s) for s in args.sizes.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray.init(address="local", num_cpus=4, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    url = f"http://127.0.0.1:{port}/recommend"
    settings = {
        "tracking_uri": tracking,
        "history_db": str(tmp / "h.sqlite"),
        "feedback_dir": str(tmp / "fb"),
        "watch_interval_s": 0,
        "max_batch_size": args.batch,
        "encoder_threads": args.threads,
        "precompute_users": False,  # no background encoding beside the uncached path's rows
    }
    rows: list[tuple[object, ...]] = []
    checks: list[str] = []
    index_rows: list[tuple[object, ...]] = []
    cpu_rows: list[tuple[object, ...]] = []
    known_rows: list[tuple[object, ...]] = []
    rerank_rows: list[tuple[object, ...]] = []
    explain_rows: list[tuple[object, ...]] = []
    log_rows: list[tuple[object, ...]] = []
    for n in sizes:
        t0 = time.perf_counter()
        bdir = make_bundle(
            source, n, min(args.encoded, n), tmp / f"bundle-{n}", towers, args.known_users
        )
        name = f"bench-{n}"
        version = registry.log_and_register(
            RegistryConfig(**{**cfg.__dict__, "model_name": name}),
            run_name=name,
            params={},
            history=[],
            metrics={},
            bundle_dir=bdir,
            model_card=name,
            tags={},
        )
        mlflow.set_tracking_uri(tracking)
        prepared = time.perf_counter() - t0
        bundle = ModelBundle(bdir)
        s = ServeSettings.from_args(settings)
        encoder = QueryEncoder(bundle, args.threads)
        parser_ = encoder.parser(s.intent_title_vectors)  # what the served version reads with
        builder = QueryBuilder(bundle, settings=s, parser=parser_)
        ranker = CandidateRanker(bundle, s)
        reqs = bodies(n, args.requests)
        for body in reqs[:20]:  # warm-up
            q = builder.build(RecommendRequest(**body))
            ranker.rank(encoder.encode([q])[0], q)
        times = []
        for body in reqs:
            start = time.perf_counter()
            q = builder.build(RecommendRequest(**body))
            ranker.rank(encoder.encode([q])[0], q)
            times.append(1000 * (time.perf_counter() - start))
        floor = stats(times)
        floor_rps = 1000 * len(times) / sum(times)
        start = time.perf_counter()
        batch_times = []
        for i in range(0, len(reqs), args.batch):
            b0 = time.perf_counter()
            qs = [builder.build(RecommendRequest(**body)) for body in reqs[i : i + args.batch]]
            ranker.rank_many(encoder.encode(qs), qs)
            batch_times.append(1000 * (time.perf_counter() - b0))
        batched_rps = len(reqs) / (time.perf_counter() - start)
        bstats = stats(batch_times)
        label = f"{n:,} items ({ranker.describe().split()[0]})"
        rows.append(
            (
                label,
                "floor, unbatched",
                1,
                *floor,
                floor_rps,
                0,
                "1.00x",
                f"{floor_rps / batched_rps:.2f}x",
            )
        )
        rows.append(
            (
                label,
                f"floor, batches of {args.batch}",
                args.batch,
                *bstats,
                batched_rps,
                0,
                "-",
                "1.00x",
            )
        )

        serve.run(build_app({**settings, "model_uri": version.uri}), name="bench", route_prefix="/")
        load_http(url, reqs[:10], 1)  # warm-up
        for c in levels:
            before = cpu_seconds()
            res = load_http(url, reqs, c)
            if c == max(levels):
                for role, ms in cpu_per_request(before, cpu_seconds(), len(reqs)):
                    cpu_rows.append((f"{n:,}", c, role, ms))
            rows.append(
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
                checks.append(
                    f"{n:,} items: p50 at concurrency 1 {res['lat'][0]:.1f} ms vs target "
                    f"1.5 x {floor[0]:.1f} + 10 = {1.5 * floor[0] + 10:.1f} ms: "
                    + ("met" if ok else "NOT met")
                )
            if c == max(levels):
                ok = res["rps"] >= 0.7 * batched_rps
                checks.append(
                    f"{n:,} items: throughput at concurrency {c} {res['rps']:.1f}/s vs 70% of "
                    f"batched floor {0.7 * batched_rps:.1f}/s: {'met' if ok else 'NOT met'}"
                )
            checks.append(f"{n:,} items, concurrency {c}: {res['errors']} errors")
        if args.rerank:
            rerank_rows += rerank_cost(label, url, reqs[:40], (builder, encoder, ranker))
        if args.explain:
            explain_rows += explain_cost(label, url, reqs[:40], (builder, encoder, ranker))
        serve.delete("bench")
        print(f"[{n:,} items: catalogue + registration {prepared:.0f} s]", flush=True)
        if n == min(sizes):
            base = url.removesuffix("/recommend")
            known_rows, known_checks = known_users_ab(
                serve,
                build_app,
                {**settings, "known_users": args.known_users},
                version.uri,
                base,
                [min(levels), max(levels)],
                args.requests,
            )
            known_rows = [(f"{n:,}", *r) for r in known_rows]
            checks += known_checks
            if args.impressions:
                log_rows, log_check = impression_cost(
                    serve, build_app, settings, version.uri, base, reqs
                )
                log_rows = [(f"{n:,}", *r) for r in log_rows]
                checks.append(log_check)

        if n == max(sizes):
            qv = encoder.encode([builder.build(RecommendRequest(**b)) for b in reqs[:100]])
            exact = ExactIndex(bundle.item_embeddings)
            hnsw = HNSWIndex(bundle.item_embeddings, m=s.hnsw_m, ef_search=s.hnsw_ef_search)
            for name_, idx, build in (
                ("exact", exact, 0.0),
                (
                    f"FAISS HNSW (M={s.hnsw_m}, efSearch={s.hnsw_ef_search})",
                    hnsw,
                    hnsw.build_seconds,
                ),
            ):
                t = []
                for v in qv:
                    start = time.perf_counter()
                    idx.search(v[None, :], 100)
                    t.append(1000 * (time.perf_counter() - start))
                rec = 1.0 if idx is exact else recall_at(hnsw, exact, qv, 100)
                index_rows.append((f"{n:,}", name_, build, *stats(t), rec))

    # the naive design: the LLM encodes every candidate for each request
    naive_n = args.naive_items
    table = catalogue_table(naive_n, seed=3)
    from llmrec.data.catalogue import Catalogue

    cat = Catalogue.from_table(table)
    texts = cat.texts()
    bundle = ModelBundle(source)
    naive_reqs = bodies(naive_n, 3)
    naive = []
    for body in naive_reqs:
        start = time.perf_counter()
        from llmrec.data.text import render_user

        qtext = render_user(
            body["history"], cat.items, body["query"], bundle.config.data.max_history
        )
        q = scorer.encode([qtext], kind="query")
        items = scorer.encode(texts, kind="item", batch_size=128)
        top = torch.topk((items @ q[0]), 10)
        naive.append(1000 * (time.perf_counter() - start))
        del top
    serve.shutdown()
    ray.shutdown()

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
        rows,
    )
    print_table(
        f"Known users (no query), {args.known_users} users in the logs, {args.requests} "
        "requests per row: the ingress's query-vector cache on and off",
        ["items", "cache", "concurrency", "p50 ms", "p95 ms", "p99 ms", "req/s", "errors"],
        known_rows,
    )
    print_table(
        "Where the CPU goes at the highest concurrency: ms of CPU time per request by process "
        "(psutil; two cores give 2,000 ms per second)",
        ["items", "concurrency", "process", "CPU ms per request"],
        cpu_rows,
    )
    print_table(
        f"The naive design on {naive_n:,} items: the LLM scores every candidate per request",
        ["design", "p50 ms", "requests"],
        [("encode query + all items per request", float(np.median(naive)), len(naive))],
    )
    if rerank_rows:
        print_table(
            f"Re-ranking cost: {RERANK} against plain, 40 requests, concurrency 1, two "
            "alternating runs each (p50 ms, mean of the runs)",
            ["catalogue", "requests", "HTTP p50 ms", "ranker alone p50 ms"],
            rerank_rows,
        )
    if explain_rows:
        print_table(
            "Query parsing and explanations: the same 40 requests (5-item history + query) "
            "with parsing off, on, and explained; concurrency 1, two alternating runs each "
            "(p50 ms, mean of the runs)",
            ["catalogue", "requests", "HTTP p50 ms", "in process p50 ms"],
            explain_rows,
        )
    if log_rows:
        print_table(
            "The impression log: the same requests (history + query, k=10) at concurrency 1 "
            "to an app that logs every answer and one that does not, alternated",
            ["items", "impression log", "requests", "p50 ms", "p95 ms"],
            log_rows,
        )
    if index_rows:
        print_table(
            "Item index on the largest catalogue, 100 encoded queries, top-100",
            ["items", "index", "build s", "p50 ms", "p95 ms", "p99 ms", "recall@100"],
            index_rows,
        )
    print("\nTargets:")
    for line in checks:
        print(f"- {line}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
