"""The hybrid at catalogue scale: CF fitting, ranker memory, latency and index recall.

    python benchmarks/scale.py                                   # 10k, 100k, 1M items
    python benchmarks/scale.py --sizes 10000 --cf ease,sparse,itemknn,als

For each size a synthetic catalogue and log (``_synthetic.py``: Zipf item popularity,
power-law user activity, the demo's item texts; ``--per-item`` interactions an item, one
value or one per size) is generated, or read back from ``--cache`` (keyed by size, events
and seed), then:

- each CF option (``--cf``; ``auto`` adds the one ``rank.cf=auto`` picks; options whose
  fit cannot fit this machine are listed as skipped, with why) is fitted in this process:
  seconds, peak memory above the start (RSS sampled every 20 ms), size in a bundle;
- a version bundle is written with the ``auto`` option, the hybrid on (llm 1 + cf 1 +
  popularity 0.1) in the ``--design`` of the version: ``sequential`` (the default config's:
  the trained user and item towers of the registered ``--model``, items' vectors from its
  item tower, a known user's vector from its self-attention tower over their last 50
  items) or ``text`` (the packaged MiniLM reads a user's recent titles as text). Item
  vectors, and the text-match term's base embeddings, are noisy copies of ``--encoded``
  encoded item texts (``with_noise``: noise as long as the vector);
- the ranker loads it: memory of one version and of two loaded side by side (the second, and
  ``serve run``, read the index the first built from the bundle), index kind and build time;
- known users (the last 50 items of sampled users' logs) and typed queries (no user) are
  served in process (query builder + encoder + ranker, hybrid on) at concurrency 1 and 8:
  p50/p99; with ``--http`` also over HTTP, the version registered in a temporary MLflow
  store and served by ``serve run`` (``_scale_http.py``);
- recall@100 of the served candidates (ANN + CF + popular items, re-scored exactly)
  against the exact hybrid top 100 over the whole catalogue, for ``--recall-users`` users.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import quiet
from _scale_http import QUERIES, http_rows
from _scale_version import write_version
from _synthetic import Synthetic, cached
from _table import machine, print_table

GIB = 1024**3


class Peak:
    """Peak RSS of this process above its value at entry (sampled every 20 ms)."""

    def __enter__(self) -> Peak:
        self.proc = psutil.Process()
        self.start = self.peak = self.proc.memory_info().rss
        self.running = True
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        self.t0 = time.perf_counter()
        return self

    def _watch(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.02)

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self.running = False
        self.thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)
        self.end = self.proc.memory_info().rss

    @property
    def gib(self) -> float:
        return (self.peak - self.start) / GIB

    @property
    def kept_gib(self) -> float:
        return (self.end - self.start) / GIB


class Lap:
    """Seconds since the previous call (or since made), as a table cell."""

    def __init__(self) -> None:
        self.last = time.perf_counter()

    def __call__(self) -> str:
        now = time.perf_counter()
        seconds, self.last = now - self.last, now
        return f"{seconds:.0f}"


def dir_mib(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def fit_options(data: Synthetic, kinds: list[str], rank: Any, tmp: Path) -> tuple[list, Any]:
    """Fit each CF option; rows of the table and the ``auto`` model."""
    from llmrec.modeling.cf import CFParams, choose_cf, fit_cf

    n = data.x.shape[1]
    auto = choose_cf("auto", n, rank.ease_max_items, rank.sparse_max_items)
    rows, chosen = [], None
    for kind in dict.fromkeys([auto if k == "auto" else k for k in kinds]):
        why = None
        if kind == "ease" and n > rank.ease_max_items:
            why = f"dense {n:,}^2 matrix: {4 * n * n / GIB:,.0f} GiB"
        if kind in ("sparse", "itemknn") and n > rank.sparse_max_items:
            why = f"Gram matrix of {n:,} items: > 12 GiB here"
        if why:
            rows.append((f"{n:,}", kind, "skipped", why, "-", "-"))
            continue
        params = CFParams(neighbours=rank.cf_neighbours, factors=rank.cf_factors, threads=2)
        gc.collect()
        with Peak() as peak:
            model = fit_cf(kind, data.x, params)
        out = tmp / f"cf-{kind}"
        model.save(out)
        label = f"{kind} (auto)" if kind == auto else kind
        rows.append(
            (f"{n:,}", label, f"{peak.seconds:.1f}", f"{peak.gib:.2f}", f"{dir_mib(out):.1f}", "")
        )
        print(f"  fitted {label}: {peak.seconds:.1f} s, peak {peak.gib:.2f} GiB", flush=True)
        if kind == auto:
            chosen = model
        del model
    return rows, chosen


def serve_rows(bundle_dir: Path, n: int, requests: int, levels: list[int]) -> tuple[list, Any]:
    from llmrec.registry.bundle import ModelBundle
    from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, RecommendRequest

    gc.collect()
    with Peak() as one:
        ranker = CandidateRanker(ModelBundle(bundle_dir))
    if hasattr(ranker.items, "save"):  # built once: the second version and `serve run` load it
        ranker.items.save(bundle_dir / "index")
    with Peak() as two:
        second = CandidateRanker(ModelBundle(bundle_dir))
    mem = (
        f"{n:,}",
        ranker.describe(),
        f"{ranker.items.build_seconds:.1f}",
        f"{one.kept_gib:.2f}",
        f"{one.gib:.2f}",
        f"{(one.kept_gib + two.kept_gib):.2f}",
    )
    del second
    gc.collect()
    bundle = ModelBundle(bundle_dir)
    builder, encoder = QueryBuilder(bundle), QueryEncoder(bundle, threads=1)
    users = sorted(bundle.histories)

    kinds = {
        "known user": lambda i: RecommendRequest(user_id=users[i % len(users)], k=10),
        "typed query": lambda i: RecommendRequest(query=QUERIES[i % len(QUERIES)], k=10),
    }
    rows = []
    for kind, make in kinds.items():

        def one_request(i: int, make: Any = make) -> float:
            start = time.perf_counter()
            q = builder.build(make(i))
            ranker.rank(encoder.encode([q])[0], q)
            return 1000 * (time.perf_counter() - start)

        for i in range(10):
            one_request(i)
        for c in levels:
            with ThreadPoolExecutor(c) as pool:
                times = np.array(list(pool.map(one_request, range(requests))))
            p50, p99 = np.percentile(times, [50, 99]).round(1).tolist()
            rows.append((f"{n:,}", kind, c, p50, p99))
    return [mem], (rows, ranker, bundle)


def hybrid_recall(ranker: Any, bundle: Any, data: Synthetic, users: int, n: int = 100) -> float:
    """Mean share of the exact hybrid top ``n`` (whole catalogue, history masked) that the
    served candidate path ranks in its top ``n``."""
    from llmrec.serving import QueryBuilder, QueryEncoder, RecommendRequest

    builder, encoder = QueryBuilder(bundle), QueryEncoder(bundle, threads=1)
    hybrid, total = ranker.hybrid, ranker.num_items
    got = []
    for user in sorted(bundle.histories)[:users]:
        q = builder.build(RecommendRequest(user_id=user, k=n))
        vec = encoder.encode([q])
        hist = [[ranker.index[i] for i in q.history]]
        parts = [
            hybrid.scores(vec, hist, np.arange(lo, min(lo + 200_000, total)))[0]
            for lo in range(0, total, 200_000)
        ]
        exact = np.concatenate(parts)
        exact[hist[0]] = -np.inf
        want = set(np.argpartition(-exact, n)[:n].tolist())
        served = {ranker.index[r.item_id] for r in ranker.rank(vec[0], q)}
        got.append(len(want & served) / n)
    return float(np.mean(got))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,1000000")
    per_help = "interactions per item: one value, or one per size (e.g. 20,20,8)"
    parser.add_argument("--per-item", default="20", help=per_help)
    parser.add_argument(
        "--cache",
        default=str(Path.home() / ".cache" / "llmrec" / "scale"),
        help="keep generated logs here, keyed by size, events and seed ('' : do not)",
    )
    parser.add_argument("--cf", default="ease,sparse,itemknn,als,auto")
    parser.add_argument("--encoded", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--concurrency", default="1,8")
    parser.add_argument("--recall-users", type=int, default=30)
    parser.add_argument("--keep", help="keep the bundles under this folder")
    parser.add_argument(
        "--design",
        choices=("sequential", "text"),
        default="sequential",
        help="the version's design: sequential (the default config's; its trained towers "
        "come from --model) or text (the base MiniLM reads users and items as text)",
    )
    parser.add_argument(
        "--model",
        default="models:/llmrec-scorer@champion",
        help="a registered sequential version (jobs/finetune.py): its user and item towers",
    )
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument(
        "--http", action="store_true", help="also serve each version with `serve run`, over HTTP"
    )
    args = parser.parse_args()
    quiet()
    import torch
    from llmrec.config import Config
    from llmrec.modeling.scorer import build_scorer

    torch.set_num_threads(2)
    rank = Config().rank
    scorer = build_scorer(Config().model).eval()
    tmp = Path(args.keep or tempfile.mkdtemp(prefix="llmrec-scale-"))
    source = None
    if args.design == "sequential":
        from _serving import source_bundle

        source = source_bundle(args.model, args.tracking_uri, tmp / "source")
    levels = [int(c) for c in args.concurrency.split(",")]
    fit_rows, mem_rows, lat_rows, data_rows, recall_rows = [], [], [], [], []
    phase_rows: list[tuple[str, ...]] = []
    http_lat: list[tuple[object, ...]] = []
    http_start: list[tuple[object, ...]] = []
    sizes = [int(s) for s in args.sizes.split(",")]
    per_item = [float(v) for v in args.per_item.split(",")]
    if len(per_item) not in (1, len(sizes)):
        parser.error(f"--per-item has {len(per_item)} values for {len(sizes)} sizes")
    cache = Path(args.cache) if args.cache else None
    per_item = per_item * len(sizes) if len(per_item) == 1 else per_item
    for n, each in zip(sizes, per_item, strict=True):
        t0 = time.perf_counter()
        data = cached(cache, n, int(each * n))
        deg = np.asarray(data.x.sum(axis=0)).ravel()
        data_rows.append(
            (
                f"{n:,}",
                f"{data.interactions:,}",
                f"{data.x.nnz:,}",
                f"{data.x.shape[0]:,}",
                f"{int(deg.max()):,}",
                f"{int((deg == 0).sum()):,}",
                f"{time.perf_counter() - t0:.0f}",
            )
        )
        print(f"[{n:,} items: {data.interactions:,} interactions]", flush=True)
        lap = Lap()
        rows, cf = fit_options(data, args.cf.split(","), rank, tmp / str(n))
        fit_rows += rows
        fit_s = lap()
        bdir = write_version(data, cf, args.encoded, tmp / str(n) / "bundle", scorer, source)
        del cf
        gc.collect()
        write_s = lap()
        mem, (lat, ranker, bundle) = serve_rows(bdir, n, args.requests, levels)
        mem_rows += mem
        lat_rows += lat
        serve_s = lap()
        recall = hybrid_recall(ranker, bundle, data, args.recall_users)
        phase_rows.append((f"{n:,}", data_rows[-1][-1], fit_s, write_s, serve_s, lap()))
        recall_rows.append((f"{n:,}", ranker.describe(), args.recall_users, f"{recall:.3f}"))
        print(f"  {mem[0]} | {lat} | recall {recall:.3f}", flush=True)
        del ranker, bundle, data
        gc.collect()
        if args.http:
            lat_http, start_http = http_rows(bdir, n, args.requests, levels)
            http_lat += lat_http
            http_start += start_http
            phase_rows[-1] += (lap(),)
        if not args.keep:
            shutil.rmtree(tmp / str(n), ignore_errors=True)
    print_table(
        f"Synthetic logs (Zipf s=1 items, power-law users; {machine()})",
        [
            "items",
            "interactions",
            "distinct user-item",
            "users",
            "top item",
            "items unseen",
            "generated in s",
        ],
        data_rows,
    )
    print_table(
        "CF options: fit in this process (2 threads)",
        ["items", "cf", "fit s", "peak GiB above start", "bundle MiB", "note"],
        fit_rows,
    )
    print_table(
        "Ranker memory (RSS kept after loading; peak while loading; two versions loaded)",
        ["items", "index", "index build s", "one version GiB", "load peak GiB", "two GiB"],
        mem_rows,
    )
    print_table(
        f"/recommend in process (builder + encoder + ranker, hybrid on), "
        f"{args.requests} requests, ms",
        ["items", "request", "concurrency", "p50", "p99"],
        lat_rows,
    )
    if args.http:
        print_table(
            f"The same over HTTP: the version registered and served by `serve run` "
            f"(shipped config), {args.requests} requests, ms",
            ["items", "request", "concurrency", "p50", "p99", "req/s", "errors"],
            http_lat,
        )
        print_table(
            "Serving it: registering (copying the bundle), `serve run` until /readyz, "
            "replica memory after the requests",
            ["items", "register s", "ready s", "ranker GiB", "encoder GiB", "ingress GiB"],
            http_start,
        )
    print_table(
        "Served candidates vs the exact hybrid top 100 (whole catalogue, history masked)",
        ["items", "index", "users", "recall@100"],
        recall_rows,
    )
    print_table(
        "Where the time goes, s (log generated or read from --cache; every CF option; the "
        "bundle with its embeddings; ranker loads + latency; the exact top 100 per user)",
        ["items", "log", "CF fits", "bundle", "ranker + latency", "recall"]
        + (["HTTP"] if args.http else []),
        phase_rows,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
