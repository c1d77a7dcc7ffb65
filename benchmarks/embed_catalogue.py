"""Catalogue embedding: Ray Data batch inference (1 and 2 actors) vs a plain loop.

    python benchmarks/embed_catalogue.py                  # 100,000 generated items
    python benchmarks/embed_catalogue.py --items 20000
    python benchmarks/embed_catalogue.py --actors 2 --baseline-items 10000   # ~17 min here

The items come from the demo generator (titles, categories, one-sentence descriptions); the
model is the packaged MiniLM with a fresh LoRA adapter written as a bundle (the cost of a
trained adapter is the same). The plain loop uses every core in one process; each Ray Data
actor gets cores / actors threads. ``--baseline-items`` times the plain loop on the first N
texts only (the rate does not depend on the catalogue's size: same texts, same batches), so
the 100,000-item Ray Data row costs one pass, not three. The summary extrapolates the fastest
setting to a million texts: seconds = texts / items per second (the model's cost is per text).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import quiet
from _table import machine, print_table


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--actors", default="1,2", help="Ray Data actor pool sizes to time")
    parser.add_argument(
        "--baseline-items", type=int, default=0, help="time the plain loop on this many (0: all)"
    )
    args = parser.parse_args()
    quiet()
    import ray
    import ray.data
    import torch
    from llmrec.config import Config
    from llmrec.data.catalogue import Catalogue
    from llmrec.data.demo import generate_demo
    from llmrec.modeling.scorer import LLMScorer
    from llmrec.registry.bundle import write_bundle
    from llmrec.serving.indexing import embed_catalogue

    demo = generate_demo(num_users=5, num_items=args.items, seed=1)
    catalogue = Catalogue.from_table(demo.items)
    from dataclasses import replace

    from llmrec.modeling.towers import TextTowers

    cfg = Config()  # the text design: the catalogue's vectors are the language model's own
    cfg = replace(cfg, model=replace(cfg.model, architecture="text"))
    scorer = LLMScorer(cfg.model).eval()
    # the version knows 50 other items: the job keeps a known item's trained vector, so a
    # bundle over this catalogue would look every vector up and never run the model
    own = generate_demo(num_users=5, num_items=50, seed=2)
    own_items = Catalogue.from_table(own.items)
    bundle = write_bundle(
        Path(tempfile.mkdtemp()) / "bundle",
        cfg,
        TextTowers(scorer, own_items.items, cfg.data.max_history),
        own_items,
        torch.zeros(len(own_items), 384),
        own.interactions,
        "benchmark",
    )
    known = len(set(own_items.ids) & set(catalogue.ids))
    print(f"{args.items - known:,} of {args.items:,} items are new to the version", flush=True)
    rows = []

    torch.set_num_threads(args.cores)
    texts = catalogue.texts()[: args.baseline_items or None]
    start = time.perf_counter()
    scorer.encode(texts, kind="item", batch_size=args.batch_size)
    loop = f"plain loop, 1 process ({len(texts):,} items)"
    rows.append((loop, args.cores, len(texts) / (time.perf_counter() - start)))

    ray.init(num_cpus=args.cores * 2, include_dashboard=False, log_to_driver=False)
    items = ray.data.from_arrow(demo.items).materialize()
    for actors in (int(a) for a in args.actors.split(",")):
        threads = max(args.cores // actors, 1)
        start = time.perf_counter()
        # materialize: count() alone reads metadata and would skip the model
        n = embed_catalogue(items, bundle, actors, args.batch_size, threads).materialize().count()
        took = time.perf_counter() - start
        name = f"Ray Data map_batches, {actors} actor(s) ({n:,} items, {took / 60:.1f} min)"
        rows.append((name, threads, n / took))
    base = rows[0][2]
    print_table(
        f"Embedding {args.items:,} items, batch {args.batch_size}, MiniLM + LoRA ({machine()})",
        ["setting", "threads each", "items/s", "vs plain loop"],
        [(name, th, rate, f"{rate / base:.2f}x") for name, th, rate in rows],
    )
    best = max(rows, key=lambda r: r[2])
    print(
        f"1,000,000 texts at {best[2]:.1f} items/s ({best[0]}): 1e6 / {best[2]:.1f} = "
        f"{1e6 / best[2] / 3600:.1f} h on this machine"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
