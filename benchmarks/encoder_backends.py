"""The query encoder on CPU: float32 against int8 dynamic quantization, in the same run.

    python benchmarks/encoder_backends.py                      # the champion of ./mlflow.db
    python benchmarks/encoder_backends.py --model models:/llmrec-scorer-ml100k/2 --threads 1

Texts are the version's own users written as the query tower sees them (their histories
from the bundle, as the serving query builder writes them). For each backend: texts/s at
batch 1 and batch 16 (``--threads`` intra-op threads, the serve setting
``encoder_threads``), then against float32: the cosine of each query vector, and how many of
float32's top-10 items (the bundle's item embeddings, exact search) int8 keeps.
The ranking quality on the evaluation protocol comes from
``jobs/evaluate.py --model URI --encoder-backend int8``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import quiet
from _table import machine, print_table


def texts_per_second(scorer: object, texts: list[str], batch: int, seconds: float) -> float:
    """Encode ``texts`` in batches of ``batch`` for at least ``seconds``; texts per second."""
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for i in range(0, len(texts), batch):
            scorer.encode(texts[i : i + batch], kind="query", batch_size=batch)  # type: ignore[attr-defined]
            done += len(texts[i : i + batch])
            if time.perf_counter() - start >= seconds:
                break
    return done / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--model", default="models:/llmrec-scorer@champion")
    parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
    parser.add_argument("--texts", type=int, default=256, help="query texts (users)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--seconds", type=float, default=10.0, help="per measurement")
    args = parser.parse_args()
    quiet()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    import torch
    from llmrec.data.text import render_user
    from llmrec.registry import store as registry
    from llmrec.registry.bundle import ModelBundle
    from llmrec.serving.backends import query_scorer
    from llmrec.serving.settings import absolute_tracking_uri

    torch.set_num_threads(args.threads)
    mlflow.set_tracking_uri(absolute_tracking_uri(args.tracking_uri))
    try:
        version, path = registry.download_bundle(args.model)
    except registry.ModelNotFoundError as exc:
        print(f"{exc}; run `make demo` first or pass --model", file=sys.stderr)
        return 2
    bundle = ModelBundle(path)
    items = bundle.catalogue.items
    histories = list(bundle.histories.values())[: args.texts]
    texts = [render_user(h, items, None, bundle.config.data.max_history) for h in histories]
    fp32 = bundle.load_scorer()
    scorers = {"torch (float32)": fp32, "int8": query_scorer(fp32, "int8")}
    vectors, rows, speed = {}, [], {}
    for name, scorer in scorers.items():
        scorer.encode(texts[:16], kind="query")  # warm-up
        vectors[name] = scorer.encode(texts, kind="query", batch_size=16).numpy()
        speed[name] = [texts_per_second(scorer, texts, b, args.seconds) for b in (1, 16)]
    base = speed["torch (float32)"]
    emb = bundle.item_embeddings
    ref, q = vectors["torch (float32)"], vectors["int8"]
    cosine = (ref * q).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(q, axis=1)
    top_ref = np.argsort(-(ref @ emb.T), axis=1)[:, :10]
    top_q = np.argsort(-(q @ emb.T), axis=1)[:, :10]
    overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_ref, top_q, strict=True)])
    for name, (one, sixteen) in speed.items():
        rows.append((name, one, f"{one / base[0]:.2f}x", sixteen, f"{sixteen / base[1]:.2f}x"))
    print_table(
        f"Query encoder, {version.name}/{version.version}, {len(texts)} user texts, "
        f"{args.threads} thread(s) ({machine()})",
        ["backend", "texts/s batch 1", "vs float32", "texts/s batch 16", "vs float32"],
        rows,
    )
    print_table(
        "int8 against float32",
        ["measure", "value"],
        [
            ("cosine of query vectors, mean", float(cosine.mean())),
            ("cosine of query vectors, min", float(cosine.min())),
            ("share of float32's top-10 kept (exact search)", float(overlap)),
        ],
    )
    best = max(speed["int8"][0] / base[0], speed["int8"][1] / base[1])
    print(f"\ntarget >= 1.8x texts/s: {best:.2f}x: " + ("met" if best >= 1.8 else "NOT met"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
