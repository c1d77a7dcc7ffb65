"""Where a served version's memory goes: the ranker's parts, loaded one by one.

    python benchmarks/ranker_memory.py --items 100000
    python benchmarks/ranker_memory.py --items 1000000 --per-item 5

Builds (once, under ``--keep``) a version of ``benchmarks/scale.py``'s synthetic catalogue
(its log read from ``--cache``, the CF option ``rank.cf: auto`` picks, the hybrid with the
text-match part) and loads it the way :class:`~llmrec.serving.recommender.CandidateRanker`
does, printing the process's resident memory (RSS) after each part and the size of the
hybrid's arrays. RSS after a part includes what the part freed but the allocator kept, so
the column is an upper bound per part; the last line is the whole.
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import quiet
from _scale_version import write_version
from _synthetic import cached
from _table import machine, print_table

MIB = 2**20


def build(items: int, per_item: float, cache: Path, keep: Path) -> Path:
    """The version's bundle folder, written on the first run."""
    import scale
    import torch
    from llmrec.config import Config
    from llmrec.modeling.scorer import build_scorer

    bundle = keep / f"items-{items}_per-{per_item:g}" / "bundle"
    if not (bundle / "items.parquet").exists():
        torch.set_num_threads(2)
        data = cached(cache, items, int(per_item * items))
        _, cf = scale.fit_options(data, ["auto"], Config().rank, bundle.parent)
        scorer = build_scorer(Config().model).eval()
        write_version(data, cf, 2000, bundle, scorer, None)  # the text design's vectors
    return bundle


def parts(bundle_dir: Path) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """RSS after each part of the ranker's loading, and the hybrid's arrays."""
    from llmrec.ranking.index import build_index, choose_index
    from llmrec.registry.bundle import ModelBundle
    from llmrec.serving.candidates import CandidatePool, category_rows
    from llmrec.serving.item_rows import ItemRows
    from llmrec.serving.settings import ServeSettings
    from llmrec.serving.slates import Slates, history_counts
    from llmrec.understanding.constraints import Constraints

    proc = psutil.Process()
    rows_out: list[tuple[str, str]] = []
    last = [proc.memory_info().rss]

    def part(name: str) -> None:
        gc.collect()
        now = proc.memory_info().rss
        rows_out.append((name, f"{(now - last[0]) / MIB:,.0f}"))
        last[0] = now

    start = last[0]
    s, bundle = ServeSettings(), ModelBundle(bundle_dir)
    cat = bundle.catalogue
    part(f"catalogue ({len(cat.ids):,} items)")
    rows = ItemRows(cat)
    part("item rows (ids, titles, live and retired)")
    kind = choose_index(s.index, len(rows), s.ann_min_items, s.compact_min_items)
    emb = bundle.read_embeddings(np.float16)
    part(f"item embeddings {emb.shape[1]}-d float16")
    hybrid = bundle.load_hybrid(emb)
    part("hybrid (CF, popularity, transitions, text-match vectors)")
    if kind != "exact" and len(rows) >= s.ann_min_items:  # as serving.candidates.searchable
        hybrid.index_text()
        part("text-match index (IVF over 8-bit vectors)")
    t0 = time.perf_counter()
    index = bundle.prebuilt_index(kind, s.hnsw_ef_search) or build_index(
        emb, kind, s.ann_min_items, s.hnsw_m, s.hnsw_ef_search, s.compact_min_items
    )
    part(f"index {kind} (built in {time.perf_counter() - t0:.0f} s)")
    by_category = category_rows([cat.items[i].categories for i in rows.ids])
    CandidatePool(index, len(rows), by_category, hybrid.popularity_part(), s.candidates)
    part("candidate pool (category rows)")
    counts = hybrid.popularity_counts
    if counts is None:
        counts = history_counts(bundle.histories, rows.index, len(rows))
    Slates(bundle.config.rank, cat, emb, counts, str(bundle_dir))
    part("re-rankers' item facts")
    Constraints(cat, s.query_boost)
    part("constraints")
    rows_out.append(("whole ranker", f"{(last[0] - start) / MIB:,.0f}"))
    arrays = [
        (name, str(v.dtype), f"{v.nbytes / MIB:,.1f}")
        for name, v in sorted(vars(hybrid).items())
        if isinstance(v, np.ndarray) and v.nbytes > MIB
    ]
    return rows_out, arrays


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--per-item", type=float, default=20.0)
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "llmrec" / "scale"))
    parser.add_argument("--keep", default=str(Path.home() / ".cache" / "llmrec" / "versions"))
    args = parser.parse_args()
    quiet()
    bundle = build(args.items, args.per_item, Path(args.cache), Path(args.keep))
    # measured in a fresh process: building the version leaves this one's heap large
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        rows, arrays = pool.apply(parts, (bundle,))
    print_table(f"Ranker memory by part, {args.items:,} items ({machine()})", ["part", "MiB"], rows)
    print_table("The hybrid's arrays over 1 MiB", ["array", "dtype", "MiB"], arrays)
    return 0


if __name__ == "__main__":
    sys.exit(main())
