"""Item-index recall@100 on a version's real vectors, at its own size and grown to 100k and 1M.

    python benchmarks/index_recall.py                          # real, 100k and 1M items
    python benchmarks/index_recall.py --sizes real,100000 --kinds hnsw,hnsw_sq8 --ef 128,256

Item vectors: the version's item embeddings (``--model``, default the amazon-games version
``models:/llmrec-scorer-games/2`` in ./mlflow.db). Queries: the user vectors the version's
query encoder makes for ``--queries`` of its known users (a seeded sample of the users whose
histories ship with the version), built as the serving query builder builds a known user's
request (``{"user_id": ...}``).

Larger catalogues are grown from the real items (:func:`grow`): each extra item is a real
item (drawn uniformly, seeded) plus Gaussian noise, rescaled to its source's length (the
search is by inner product, which favours long vectors: unscaled copies would be about a
quarter longer than their sources and crowd each top 100). The noise's scale is set so that
the median distance of a copy to its source is ``--noise`` times the median distance of a real
item to its nearest real neighbour: at 1 a copy is as far from its source as real items are
from each other (no near-duplicate clusters); at 0.5 each source gets a tighter cloud.

For each size: the exact top 100 by inner product (the metric of every index in
``llmrec.ranking.index``), then each index kind (``--kinds``; HNSW degree ``--m`` and
``--ef-construction``) built once on ``--threads`` threads and searched at each breadth
(``--ef``: HNSW efSearch; the IVF kinds probe ``ef // 4`` lists), one query per call on one
thread, as the ranker does. Depth is the rows asked of the index (``--depth``: the deepest at
every breadth, the others at the first): 100 is the index alone; 200 is the ranker's case,
which asks the index for ``candidates`` (200) rows and re-scores them exactly, so the recall
of a row is the share of the exact top 100 among the rows the index returns. As in the
ranker, a depth above the breadth widens that search to the depth (the table shows the
breadth used). Memory is the serialised index; exact search is timed with BLAS on one thread.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import quiet
from _serving import percentiles, source_bundle
from _table import machine, print_table

TOP = 100
"""Recall is of the exact top ``TOP`` items."""
EF_CONSTRUCTION = 80
"""The library's HNSW efConstruction (``FaissIndex``, ``HNSWIndex``): the serving default."""


@dataclass(frozen=True)
class Setting:
    """One row of the table: where the index was searched, and what came of it."""

    items: int
    index: str
    build_s: float
    mib: float
    breadth: str
    depth: int
    recall: float
    p50_ms: float
    p99_ms: float
    default: bool = False

    def row(self) -> tuple[object, ...]:
        mark = " (serving default)" if self.default else ""
        return (
            f"{self.items:,}",
            self.index + mark,
            f"{self.build_s:.1f}",
            f"{self.mib:.1f}",
            self.breadth,
            self.depth,
            self.recall,
            self.p50_ms,
            self.p99_ms,
        )


HEADER = (
    "items",
    "index",
    "build s",
    "MiB",
    "breadth",
    "rows re-scored",
    "recall@100",
    "p50 ms",
    "p99 ms",
)


def real_vectors(
    model: str, tracking_uri: str, queries: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The version's ``[items, dim]`` item embeddings and the ``[queries, dim]`` user vectors
    of a seeded sample of its known users (as the serving query builder and encoder make a
    known user's query)."""
    from llmrec.registry.bundle import ModelBundle
    from llmrec.serving import QueryBuilder, QueryEncoder, RecommendRequest

    bundle = ModelBundle(source_bundle(model, tracking_uri))
    builder, encoder = QueryBuilder(bundle), QueryEncoder(bundle, threads=os.cpu_count() or 1)
    users = sorted(bundle.histories)
    pick = np.random.default_rng(seed).choice(len(users), min(queries, len(users)), replace=False)
    qs = [builder.build(RecommendRequest(user_id=users[i])) for i in pick]
    vectors = np.concatenate([encoder.encode(qs[i : i + 64]) for i in range(0, len(qs), 64)])
    user = bundle.load_hybrid(bundle.item_embeddings).split(vectors)[0]  # the index's part
    return bundle.item_embeddings, np.ascontiguousarray(user, dtype=np.float32)


def nearest_distance(items: np.ndarray, sample: int = 2000, seed: int = 0) -> float:
    """Median Euclidean distance of ``sample`` real items to their nearest other item."""
    rows = np.random.default_rng(seed).choice(len(items), min(sample, len(items)), replace=False)
    sq = (items.astype(np.float64) ** 2).sum(axis=1)
    d2 = sq[rows, None] + sq[None, :] - 2.0 * items[rows].astype(np.float64) @ items.T
    d2[np.arange(len(rows)), rows] = np.inf  # not itself
    return float(np.median(np.sqrt(np.maximum(d2.min(axis=1), 0.0))))


def _copies(sources: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``sources`` plus Gaussian noise of scale ``sigma``, each rescaled to its source's length."""
    noisy = sources + rng.normal(0.0, sigma, sources.shape)
    scale = np.linalg.norm(sources, axis=1) / np.linalg.norm(noisy, axis=1)
    return (noisy * scale[:, None]).astype(np.float32)


def noise_scale(items: np.ndarray, distance: float, seed: int = 0) -> float:
    """The noise scale whose copies lie a median ``distance`` from their sources (bisection
    on 2,000 items: rescaling to the source's length makes it no simple formula)."""
    rng = np.random.default_rng(seed)
    sources = items[rng.choice(len(items), min(2000, len(items)), replace=False)]
    lo, hi = 0.0, 10.0 * distance
    for _ in range(40):
        mid = (lo + hi) / 2
        copies = _copies(sources, mid, np.random.default_rng(seed))
        if np.median(np.linalg.norm(copies - sources, axis=1)) < distance:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def grow(items: np.ndarray, n: int, sigma: float, seed: int = 0) -> np.ndarray:
    """``[n, dim]``: the real ``items`` first, then copies of uniformly drawn real items with
    noise of scale ``sigma``, rescaled to their source's length (:func:`_copies`)."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, items.shape[1]), dtype=np.float32)
    out[: len(items)] = items
    sources = rng.integers(0, len(items), n - len(items))
    for lo in range(0, len(sources), 65536):
        part = sources[lo : lo + 65536]
        out[len(items) + lo : len(items) + lo + len(part)] = _copies(items[part], sigma, rng)
    return out


def exact_top(items: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``[queries, TOP]`` the rows of each query's exact top ``TOP`` by inner product."""
    from llmrec.ranking.index import ExactIndex

    exact = ExactIndex(items)
    return np.concatenate(
        [exact.search(queries[i : i + 32], TOP)[0] for i in range(0, len(queries), 32)]
    )


Search = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]
"""An index's ``search(queries, n)``: rows and scores, best first."""


def timed(search: Search, queries: np.ndarray, want: np.ndarray, depth: int) -> tuple[float, ...]:
    """Recall of ``want`` among each query's top ``depth`` rows of ``search`` (one query a
    call, after 20 to warm up), and the p50 and p99 ms of a call."""
    for v in queries[:20]:
        search(v[None, :], depth)
    times, hits = [], 0
    for v, w in zip(queries, want, strict=True):
        start = time.perf_counter()
        rows, _ = search(v[None, :], depth)
        times.append(1000 * (time.perf_counter() - start))
        hits += len(np.intersect1d(rows[0], w))
    p50, _, p99 = percentiles(times)
    return hits / want.size, p50, p99


def exact_setting(items: np.ndarray, queries: np.ndarray, want: np.ndarray) -> Setting:
    """The exact search's row (recall 1 by definition; its time on 100 queries, BLAS on one
    thread like the FAISS searches)."""
    from llmrec.ranking.index import ExactIndex
    from threadpoolctl import threadpool_limits

    exact = ExactIndex(items)
    with threadpool_limits(1):
        _, p50, p99 = timed(exact.search, queries[:100], want[:100], TOP)
    return Setting(len(items), "exact", 0.0, items.nbytes / 2**20, "all", TOP, 1.0, p50, p99)


def auto_kind(n: int) -> str:
    """The index kind the default serving settings (``index=auto``) build over ``n`` items."""
    from llmrec.ranking.index import choose_index
    from llmrec.serving.settings import ServeSettings

    s = ServeSettings()
    return choose_index("auto", n, s.ann_min_items, s.compact_min_items)


def serving_default(kind: str, graph: tuple[int, int], n: int, ef: int, depth: int) -> bool:
    """Whether an index of ``kind`` (HNSW ``graph``: M, efConstruction) searched at breadth
    ``ef`` for ``depth`` rows is what the default serving settings run over ``n`` items."""
    from llmrec.serving.settings import ServeSettings

    s = ServeSettings()
    same = (kind, graph) == (auto_kind(n), (s.hnsw_m, EF_CONSTRUCTION))
    return same and ef == s.hnsw_ef_search and depth == s.candidates


def index_settings(
    items: np.ndarray,
    queries: np.ndarray,
    want: np.ndarray,
    kind: str,
    graph: tuple[int, int],
    args: argparse.Namespace,
) -> list[Setting]:
    """Rows of one ``kind`` index built once over ``items`` (HNSW: ``graph`` is its degree M
    and efConstruction), searched at each breadth of ``args`` for the deepest depth, and at
    the first breadth for each depth."""
    from llmrec.ranking.index import FaissIndex

    m, efc = graph
    index = FaissIndex(items, kind, m=m, ef_construction=efc, build_threads=args.threads)
    ivf = kind.startswith("ivf")
    name = kind if ivf else f"{kind} M={m} efC={efc}"
    built = (len(items), name, index.build_seconds, index.nbytes / 2**20)
    out = []
    for ef in args.ef:
        for depth in args.depth:
            if depth != max(args.depth) and ef != args.ef[0]:
                continue  # shallower depths (the index alone) at the first breadth only
            index.set_ef_search(ef)
            recall, p50, p99 = timed(index.search, queries, want, depth)
            breadth = max(ef, depth)  # the search widens to the depth asked for
            shown = f"nprobe {max(1, breadth // 4)}" if ivf else f"efSearch {breadth}"
            default = serving_default(kind, graph, len(items), ef, depth)
            out.append(Setting(*built, shown, depth, recall, p50, p99, default))
    return out


def summary(rows: list[Setting], target: float) -> str:
    """One line: the serving default's recall, and the cheapest row (p50) reaching ``target``."""
    n = f"{rows[0].items:,} items"
    default = next((r for r in rows if r.default), None)
    if default:
        said = (
            f"the serving default ({default.index}, {default.breadth}, {default.depth} rows) "
            f"finds {default.recall:.3f} at p50 {default.p50_ms:.2f} ms"
        )
    elif auto_kind(rows[0].items) == "exact":
        said = "the serving default searches exactly (recall 1)"
    else:
        said = f"the serving default ({auto_kind(rows[0].items)}) was not measured"
    exact = next(r for r in rows if r.index == "exact")
    said += f"; exact search p50 {exact.p50_ms:.2f} ms"
    good = [r for r in rows if r.recall >= target and r is not exact]
    if not good:
        return f"{n}: {said}; no approximate setting reaches {target}."
    best = min(good, key=lambda r: r.p50_ms)
    return (
        f"{n}: {said}; cheapest >= {target}: {best.index}, {best.breadth}, {best.depth} rows "
        f"re-scored: {best.recall:.3f} at p50 {best.p50_ms:.2f} ms, p99 {best.p99_ms:.2f} ms "
        f"({best.mib:.0f} MiB, built in {best.build_s:.0f} s)."
    )


def measure(
    items: np.ndarray, queries: np.ndarray, sigma: float, n: int, args: argparse.Namespace
) -> list[Setting]:
    """Every row of one catalogue size (``n``: 0 for the real catalogue)."""
    catalogue = items if n == 0 else grow(items, n, sigma, args.seed)
    start = time.perf_counter()
    want = exact_top(catalogue, queries)
    print(
        f"{len(catalogue):,} items: exact top {TOP} in {time.perf_counter() - start:.1f} s",
        flush=True,
    )
    rows = [exact_setting(catalogue, queries, want)]
    for kind in args.kinds:
        hnsw = kind.startswith("hnsw")
        graphs = [(m, c) for m in args.m for c in args.ef_construction] if hnsw else [(0, 0)]
        for graph in graphs:
            done = index_settings(catalogue, queries, want, kind, graph, args)
            for r in done:  # as they come: a run stopped midway keeps what it measured
                cells = (f"{c:.3f}" if isinstance(c, float) else str(c) for c in r.row())
                print("  " + " | ".join(cells), flush=True)
            rows += done
    return rows


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="models:/llmrec-scorer-games/2")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--sizes", default="real,100000,1000000", help="real: the version's own")
    parser.add_argument("--queries", type=int, default=300, help="known users (query vectors)")
    parser.add_argument("--noise", type=float, default=1.0, help="x median nearest-item distance")
    parser.add_argument(
        "--kinds", default="hnsw,hnsw_sq8,ivfpq,ivf_flat", type=lambda t: t.split(",")
    )
    parser.add_argument("--m", default="32", type=ints, help="HNSW degrees")
    parser.add_argument("--ef-construction", default=str(EF_CONSTRUCTION), type=ints)
    parser.add_argument("--ef", default="128,256,512,1024,2048", type=ints, help="breadths")
    parser.add_argument("--depth", default="100,200", type=ints, help="rows asked of the index")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="build threads")
    parser.add_argument("--target", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    quiet()
    where = f"{machine()}; {args.threads} build threads"
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    items, queries = real_vectors(args.model, args.tracking_uri, args.queries, args.seed)
    distance = nearest_distance(items, seed=args.seed)
    sigma = noise_scale(items, args.noise * distance, args.seed)
    print(
        f"{args.model}: {len(items):,} items x {items.shape[1]}, {len(queries)} users' query "
        f"vectors; median nearest-item distance {distance:.3f}, median item length "
        f"{np.median(np.linalg.norm(items, axis=1)):.3f}; copies' noise scale {sigma:.4f} "
        f"(median distance to source {args.noise:g} x {distance:.3f})",
        flush=True,
    )
    sizes = [0 if s == "real" else int(s) for s in args.sizes.split(",")]
    tables = [measure(items, queries, sigma, n, args) for n in sizes]
    title = f"Index recall@100 on real vectors ({args.model}; {where})"
    print_table(title, HEADER, [r.row() for rows in tables for r in rows])
    print()
    for rows in tables:
        print(summary(rows, args.target))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
