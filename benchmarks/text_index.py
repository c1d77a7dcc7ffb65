"""A typed request's text matches at scale: the exact product over every item's text vector
against the IVF index over 8-bit vectors that the ranker uses from ``ann_min_items`` items
(:mod:`llmrec.ranking.text_index`).

    python benchmarks/text_index.py        # the 1M scale version (benchmarks/ranker_memory.py)
    python benchmarks/text_index.py --model models:/llmrec-scorer-games/2 --grow 1000000

Loads a version's hybrid as the ranker does (float16 vectors from ``compact_min_items``; no
item index), embeds the typed requests below with the version's base model (as the encoder
does; a version without text vectors gets them as ``add_text_match`` makes them) and
prints, one request at a time: where the exact path's time goes (cProfile of
``HybridScorer.text_candidates``); per path the milliseconds of ``text_candidates`` (200
rows, what the ranker asks for) and of ``text_part`` for a user with a history (its
stand-out floor), the index's build seconds and size, the recall@200 of its candidates
against the exact product and whether the floors agree; then recall and time at other
``nprobe``. ``--grow N`` extends real text vectors to ``N`` items by noisy copies of them.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import quiet
from _scale_http import QUERIES
from _table import machine, print_table

SCALE = Path.home() / ".cache" / "llmrec" / "versions" / "items-1000000_per-5" / "bundle"
REQUESTS = (
    *QUERIES,  # the scale benchmark's typed queries, then requests about games and books
    "something light for the weekend",
    "a slow, thoughtful story",
    "dragons and magic",
    "learn to cook quickly",
    "true stories about explorers",
    "open world fantasy role-playing game",
    "racing game with split screen",
    "puzzle game for young kids",
    "zombie survival shooter",
    "football simulation",
)


def load(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """The hybrid (with its text vectors), the version's base model and a description."""
    from llmrec.ranking.hybrid import HybridScorer
    from llmrec.registry.bundle import ModelBundle, item_text_vectors
    from llmrec.registry.store import cached_bundle
    from llmrec.serving.settings import ServeSettings

    path = cached_bundle(args.model)[1] if args.model else Path(args.bundle)
    bundle = ModelBundle(path)
    n = len(bundle.catalogue)
    compact = n >= ServeSettings().compact_min_items
    base = bundle.load_base_scorer()
    hybrid = bundle.load_hybrid(
        bundle.read_embeddings(np.float16) if compact else bundle.item_embeddings
    )
    if hybrid.item_text is None:
        cache = Path(args.cache) / f"{path.name}-text_vectors.npy"
        if not cache.exists():
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.save(cache, item_text_vectors(base, bundle.catalogue.texts()))
        hybrid = hybrid.with_text(np.load(cache))
    name = f"{args.model or path}: {n:,} items"
    if args.grow > n:
        text = grown(np.asarray(hybrid.item_text, dtype=np.float32), args.grow, args.noise)
        hybrid = HybridScorer(text, item_text=text)  # the text vectors stand in for the model's
        name += f", grown to {args.grow:,} by noisy copies (noise {args.noise})"
    return hybrid, base, name


def grown(real: np.ndarray, n: int, noise: float) -> np.ndarray:
    """``real`` then noisy copies of its rows up to ``n`` rows, unit length, float16
    (``noise``: the norm of the noise added to a unit vector)."""
    rng = np.random.default_rng(0)
    out = np.empty((n, real.shape[1]), dtype=np.float16)
    out[: len(real)] = real
    for lo in range(len(real), n, 65536):
        hi = min(lo + 65536, n)
        copy = real[rng.integers(0, len(real), hi - lo)]
        copy += noise / np.sqrt(real.shape[1]) * rng.standard_normal(copy.shape)
        out[lo:hi] = copy / np.linalg.norm(copy, axis=1, keepdims=True)
    return out


def ms(fn: Any, rows: np.ndarray) -> tuple[list[Any], np.ndarray]:
    """``fn`` of each request row alone and its milliseconds."""
    out, took = [], []
    for row in rows:
        start = time.perf_counter()
        out.append(fn(row[None]))
        took.append(1000 * (time.perf_counter() - start))
    return out, np.array(took)


def paths(hybrid: Any, rows: np.ndarray, floors: int) -> tuple[list[tuple], Any]:
    """The exact path and the index, side by side; the index and the exact candidates."""
    with_history = [[0]]  # any history: the text part counts what stands out above the 5th

    def floor_part(row: np.ndarray, h: Any = hybrid) -> np.ndarray:
        return h.text_part(row, np.arange(1000), with_history)

    want, exact_ms = ms(lambda r: hybrid.text_candidates(r, 200)[0], rows)
    exact_floor, floor_ms = ms(floor_part, rows[:floors])
    hybrid.index_text()
    index = hybrid.text_index
    got, index_ms = ms(lambda r: hybrid.text_candidates(r, 200)[0], rows)
    index_floor, index_floor_ms = ms(floor_part, rows[:floors])
    recall = [len(np.intersect1d(g, w)) / len(w) for g, w in zip(got, want, strict=True)]
    pairs = zip(exact_floor, index_floor, strict=True)
    agree = np.mean([np.allclose(a, b, atol=1e-5) for a, b in pairs])
    table = [
        ("exact product", *pcts(exact_ms), f"{np.median(floor_ms):.1f}", "-", "-", "1.000", "-"),
        (
            f"IVF{index.lists},SQ8 nprobe {index.nprobe}",
            *pcts(index_ms),
            f"{np.median(index_floor_ms):.1f}",
            f"{index.build_seconds:.1f}",
            f"{index.nbytes / 2**20:,.0f}",
            f"{np.mean(recall):.3f} (min {np.min(recall):.3f})",
            f"{agree:.2f}",
        ),
    ]
    return table, (index, want)


def pcts(took: np.ndarray) -> tuple[str, str]:
    return tuple(f"{v:.1f}" for v in np.percentile(took, [50, 99]))  # type: ignore[return-value]


def sweep(hybrid: Any, rows: np.ndarray, index: Any, want: list[np.ndarray]) -> list[tuple]:
    out, chosen = [], index.nprobe
    for nprobe in (8, 16, 32, 64, 128, 256):
        index.nprobe = nprobe
        got, took = ms(lambda r: hybrid.text_candidates(r, 200)[0], rows)
        recall = [len(np.intersect1d(g, w)) / len(w) for g, w in zip(got, want, strict=True)]
        out.append((nprobe, f"{np.mean(recall):.3f}", f"{np.min(recall):.3f}", *pcts(took)))
    index.nprobe = chosen
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--bundle", default=str(SCALE), help="a version's bundle folder")
    parser.add_argument("--model", default="", help="a registered version (instead of --bundle)")
    parser.add_argument("--grow", type=int, default=0, help="noisy copies up to this many items")
    parser.add_argument("--noise", type=float, default=0.5, help="norm of a copy's noise")
    parser.add_argument("--floors", type=int, default=5, help="requests timed with a history")
    parser.add_argument("--cache", default=str(Path.home() / ".cache" / "llmrec" / "text"))
    args = parser.parse_args()
    quiet()
    start = time.perf_counter()
    hybrid, base, name = load(args)
    print(f"loaded {name} in {time.perf_counter() - start:.0f} s")
    text = base.encode(list(REQUESTS), kind="query").numpy().astype(np.float32)
    rows = np.concatenate([np.zeros((len(text), hybrid.dim), np.float32), text], axis=1)
    profile = cProfile.Profile()
    profile.runcall(hybrid.text_candidates, rows[:3], 200)
    print("\nWhere the exact path's time goes (3 requests, cProfile, by own time):")
    pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(6)
    table, (index, want) = paths(hybrid, rows, args.floors)
    header = ["text matches", "ms p50", "ms p99", "with a history ms", "build s", "MiB"]
    header += ["recall@200", "floors agree"]
    print_table(f"A typed request's 200 best text matches, {name} ({machine()})", header, table)
    print_table(
        "The index's lists probed (nprobe)",
        ["nprobe", "recall@200", "min", "ms p50", "ms p99"],
        sweep(hybrid, rows, index, want),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
