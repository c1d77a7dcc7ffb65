"""Training throughput of both scorer designs: a plain single-process PyTorch loop vs Ray
Train with 1 and 2 workers.

    python benchmarks/train_throughput.py                          # demo data
    python benchmarks/train_throughput.py --data ../shared/data/ml-100k

An example is one (user at time t -> item t) pair the loss scores. The text design encodes
both sides with MiniLM + LoRA (``llmrec.training.loop._train_epoch``); the sequential design
scores every position of a history window against the whole catalogue from text embeddings
computed once (``llmrec.training.sequential_loop._train_epoch``). Same data in each setting;
prints examples/s, the share of step time spent waiting for batches, the time one pass over
every training position would take, Ray's overhead (1 worker vs the plain loop) and scaling
(2 workers vs 1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import quiet
from _table import machine, print_table


class LocalShard:
    """Batches from an in-memory table, the way a plain PyTorch loop would read them."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame

    def iter_batches(self, batch_size: int, batch_format: str, drop_last: bool) -> Iterator[dict]:
        n = len(self.frame) - (len(self.frame) % batch_size if drop_last else 0)
        for s in range(0, n, batch_size):
            part = self.frame.iloc[s : s + batch_size]
            yield {c: part[c].to_numpy() for c in part.columns}


class LocalWindows:
    """The sequential design's windows from memory, as Ray Data's shard hands them out."""

    def __init__(self, frame: Any) -> None:
        self.frame = frame

    def iter_batches(self, batch_size: int, batch_format: str, **_: Any) -> Iterator[dict]:
        for s in range(0, len(self.frame), batch_size):
            part = self.frame.iloc[s : s + batch_size]
            yield {c: part[c].to_numpy() for c in part.columns}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="demo", help="data source (default: demo)")
    parser.add_argument("--examples-per-user", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-query-tokens", type=int, default=128)
    parser.add_argument(
        "--text-steps",
        type=int,
        default=0,
        help="cap the text design's examples at this many batches (0: one epoch)",
    )
    args = parser.parse_args()
    quiet()
    import ray
    import torch
    from llmrec.config import Config, DataConfig, ModelConfig, TrainConfig
    from llmrec.data.prepare import load_source, prepare, split_and_save
    from llmrec.evaluation import offline
    from llmrec.modeling.scorer import LLMScorer
    from llmrec.training import designs
    from llmrec.training.loop import _train_epoch
    from llmrec.training.sequential import SequenceObjective
    from llmrec.training.sequential_loop import _train_epoch as _sequential_epoch
    from llmrec.training.trainer import run_training

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-bench-"))
    data = DataConfig(
        source=args.data, work_dir=str(tmp / "data"), examples_per_user=args.examples_per_user
    )
    prepared = prepare(load_source(args.data, data), data.work_dir)
    split, _ = split_and_save(prepared, data.min_core)
    sequences = prepared.out_dir / "train_sequences.parquet"
    protocol = offline.Protocol.create(split, prepared.catalogue)
    positions = int(sum(max(len(s) - 1, 0) for s in split.train_sequences()["items"]))
    rows = []
    for design in ("text", "sequential"):
        model = ModelConfig(architecture=design, max_query_tokens=args.max_query_tokens)
        train = TrainConfig(
            epochs=1,
            batch_size=args.batch_size if design == "text" else 64,
            lr=5e-4 if design == "text" else 2e-3,
            storage_path=str(tmp / "train"),
            eval_users=10,
        )
        cfg = Config(data=data, model=model, train=train)
        prep = designs.training_data(cfg, sequences, prepared.catalogue, protocol)
        frame = prep.dataset.to_pandas()
        if design == "text" and args.text_steps:
            frame = frame.iloc[: args.text_steps * train.batch_size]
        per_row = (lambda f: len(f)) if design == "text" else (lambda f: _scored(f))
        examples = per_row(frame)
        torch.set_num_threads(2)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        if design == "text":
            scorer = LLMScorer(model)
            opt = torch.optim.AdamW(
                [p for p in scorer.parameters() if p.requires_grad], lr=train.lr
            )
            stats = _train_epoch(scorer, scorer, opt, LocalShard(frame), train)
        else:
            assert prep.inputs is not None
            objective = SequenceObjective(model, train, prep.inputs)
            opt = torch.optim.AdamW(objective.parameters(), lr=train.lr)
            stats = _sequential_epoch(objective, objective, opt, LocalWindows(frame), train)
        rate = examples / (time.perf_counter() - t0)
        rows.append((design, "plain PyTorch loop, 1 process x 2 threads", rate, stats))
        for workers, threads in ((1, 2), (2, 1)):
            run = replace(
                cfg,
                train=replace(
                    train,
                    num_workers=workers,
                    torch_threads=threads,
                    cpus_per_worker=1.0,
                    run_name=f"bench-{design}-{workers}-{time.time():.0f}",
                ),
            )
            dataset = ray.data.from_pandas(frame) if design == "text" else prep.dataset
            t0 = time.perf_counter()
            out = run_training(
                run, dataset, prep.eval_set, tmp / f"ckpt-{design}-{workers}", inputs=prep.inputs
            )
            h = out.history[-1]
            rate = h["samples_per_s"] * (examples / max(len(frame), 1))
            rows.append((design, f"Ray Train, {workers} worker(s) x {threads} thread(s)", rate, h))
    table = [
        (
            design,
            name,
            rate,
            f"{100 * stats['data_wait_share']:.1f}%",
            f"{positions / rate / 60:.1f} min",
        )
        for design, name, rate, stats in rows
    ]
    print_table(
        f"Training throughput on {args.data}: {positions} training positions; text design "
        f"batch {args.batch_size} pairs, MiniLM + LoRA r=8, max {args.max_query_tokens} query "
        f"tokens; sequential design batch 64 windows, full softmax ({machine()})",
        [
            "design",
            "setting",
            "examples/s",
            "share of step time waiting for data",
            "one pass over every position",
        ],
        table,
    )

    def pick(design: str, what: str) -> float:
        return next(r for d, n, r, _ in rows if d == design and what in n)

    for design in ("text", "sequential"):
        plain, one, two = (pick(design, w) for w in ("plain", "1 worker", "2 worker"))
        print(
            f"{design}: Ray Train 1 worker / plain loop {one / plain:.2f}x, "
            f"2 workers / 1 worker {two / one:.2f}x"
        )
    ratio = pick("sequential", "2 worker") / pick("text", "2 worker")
    print(f"sequential / text, 2 workers: {ratio:.0f}x examples/s")
    return 0


def _scored(frame: Any) -> int:
    """Scored positions in a frame of windows (every item after the first)."""
    return int(sum(max(len(w) - 1, 0) for w in frame["items"]))


if __name__ == "__main__":
    sys.exit(main())
