"""The query encoder on CPU: the scorer as trained, the serving backends (float32 with the
adapter merged, int8 dynamic quantization), in the same run.

    python benchmarks/encoder_backends.py                      # the champion of ./mlflow.db
    python benchmarks/encoder_backends.py --model models:/llmrec-scorer-ml100k/2 --threads 1

Texts are what the version's query tower reads at serving time (``--texts-from``): for the
text design its own users written as text (their histories from the bundle, as the serving
query builder writes them), for the sequential design typed requests (its language model
reads only those). Rows: the scorer as trained and as serving ran it before (peft's adapter
wrapper, switched to eval mode and back on every call), the same in eval mode, and each
backend of ``query_scorer``; texts/s at batch 1 and batch 16 (``--threads`` intra-op threads,
the serve setting ``encoder_threads``), then against float32 as trained: the cosine of each
query vector, and how many of its top-10 items (the bundle's item embeddings, exact
search) each backend keeps.
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
    parser.add_argument(
        "--texts-from",
        choices=("auto", "users", "typed"),
        default="auto",
        help="users written as text, or typed requests (auto: what the design's tower reads)",
    )
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
    kind = args.texts_from
    if kind == "auto":
        kind = "users" if bundle.config.model.architecture == "text" else "typed"
    if kind == "users":
        histories = list(bundle.histories.values())[: args.texts]
        texts = [render_user(h, items, None, bundle.config.data.max_history) for h in histories]
    else:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _latency_data import QUERIES

        texts = [QUERIES[i % len(QUERIES)] for i in range(args.texts)]
    trained = bundle.load_scorer()
    before = "float32 as trained, modes switched per call (serving before)"
    scorers = {
        before: (trained, True),
        "float32 as trained, eval mode": (trained, False),
        "torch backend (float32, adapter merged)": (query_scorer(trained, "torch"), False),
        "int8 backend": (query_scorer(trained, "int8"), False),
    }
    vectors, rows, speed = {}, [], {}
    for name, (scorer, training) in scorers.items():
        scorer.train(training)  # encode() runs in eval mode; a training scorer switches back
        scorer.encode(texts[:16], kind="query")  # warm-up
        vectors[name] = scorer.encode(texts, kind="query", batch_size=16).numpy()
        speed[name] = [texts_per_second(scorer, texts, b, args.seconds) for b in (1, 16)]
    base = speed[before]
    ref = vectors[before]
    emb = bundle.item_embeddings
    if emb.shape[1] != ref.shape[1]:  # the sequential design: rank in the language model's space
        trained.eval()
        emb = trained.encode(bundle.catalogue.texts(), kind="item").numpy()
    top_ref = np.argsort(-(ref @ emb.T), axis=1)[:, :10]
    agree = []
    for name, q in vectors.items():
        cosine = (ref * q).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(q, axis=1)
        top_q = np.argsort(-(q @ emb.T), axis=1)[:, :10]
        kept = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(top_ref, top_q, strict=True)])
        agree.append((name, float(cosine.mean()), float(cosine.min()), float(kept)))
    for name, (one, sixteen) in speed.items():
        rows.append((name, one, f"{one / base[0]:.2f}x", sixteen, f"{sixteen / base[1]:.2f}x"))
    print_table(
        f"Query encoder, {version.name}/{version.version}, {len(texts)} {kind} texts, "
        f"{args.threads} thread(s) ({machine()})",
        ["scorer", "texts/s batch 1", "vs before", "texts/s batch 16", "vs before"],
        rows,
    )
    print_table(
        "Against float32 as trained",
        ["scorer", "cosine of query vectors, mean", "min", "share of its top-10 kept"],
        agree,
    )
    fp32 = speed["torch backend (float32, adapter merged)"]
    best = max(speed["int8 backend"][0] / fp32[0], speed["int8 backend"][1] / fp32[1])
    print(
        f"\ntarget int8 >= 1.8x the float32 backend's texts/s: {best:.2f}x: "
        + ("met" if best >= 1.8 else "NOT met")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
