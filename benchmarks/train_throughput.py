"""Training throughput: a plain single-process PyTorch loop vs Ray Train with 1 and 2 workers.

    python benchmarks/train_throughput.py                 # demo data, MiniLM + LoRA
    python benchmarks/train_throughput.py --examples-per-user 8 --epochs 1

Same data (the demo examples built by Ray Data), same model and the same epoch function
(llmrec.training.loop._train_epoch) in each setting; prints samples/s, the share of step
time spent waiting for batches, Ray's overhead (1 worker vs the plain loop) and scaling
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples-per-user", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-query-tokens", type=int, default=128)
    args = parser.parse_args()
    quiet()
    import ray
    import torch
    from llmrec.config import Config, DataConfig, ModelConfig, TrainConfig
    from llmrec.data.pipeline import build_train_dataset
    from llmrec.data.prepare import load_source, prepare, split_and_save
    from llmrec.modeling.scorer import LLMScorer
    from llmrec.training.evaluation import build_eval_set
    from llmrec.training.loop import _train_epoch
    from llmrec.training.trainer import run_training

    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False)
    tmp = Path(tempfile.mkdtemp(prefix="llmrec-bench-"))
    data = DataConfig(work_dir=str(tmp / "data"), examples_per_user=args.examples_per_user)
    model = ModelConfig(max_query_tokens=args.max_query_tokens)
    train = TrainConfig(
        epochs=1, batch_size=args.batch_size, storage_path=str(tmp / "train"), eval_users=10
    )
    prepared = prepare(load_source("demo", data), data.work_dir)
    split, _ = split_and_save(prepared, data.min_core)
    ds = build_train_dataset(
        prepared.out_dir / "train_sequences.parquet",
        prepared.catalogue,
        data.max_history,
        data.examples_per_user,
        0,
    ).materialize()
    frame = ds.to_pandas()
    val = build_eval_set(split, "val", prepared.catalogue, data.max_history)
    rows = []

    torch.set_num_threads(2)
    torch.manual_seed(0)
    scorer = LLMScorer(model)
    opt = torch.optim.AdamW([p for p in scorer.parameters() if p.requires_grad], lr=train.lr)
    stats = _train_epoch(scorer, scorer, opt, LocalShard(frame), train)
    rows.append(
        (
            "plain PyTorch loop, 1 process x 2 threads",
            stats["samples_per_s"],
            stats["data_wait_share"],
        )
    )
    for workers, threads in ((1, 2), (2, 1)):
        cfg = Config(
            data=data,
            model=model,
            train=replace(
                train,
                num_workers=workers,
                torch_threads=threads,
                cpus_per_worker=1.0,
                run_name=f"bench-{workers}-{time.time():.0f}",
            ),
        )
        out = run_training(cfg, ds, val, tmp / f"ckpt-{workers}")
        h = out.history[-1]
        rows.append(
            (
                f"Ray Train, {workers} worker(s) x {threads} thread(s)",
                h["samples_per_s"],
                h["data_wait_share"],
            )
        )
    plain, one, two = (r[1] for r in rows)
    print_table(
        f"Training throughput, {len(frame)} examples, batch {train.batch_size} per worker, "
        f"MiniLM + LoRA r={model.lora_r}, max {model.max_query_tokens} query tokens "
        f"({machine()})",
        ["setting", "samples/s", "share of step time waiting for data"],
        [(name, rate, f"{100 * wait:.1f}%") for name, rate, wait in rows],
    )
    print(
        f"\nRay Train 1 worker / plain loop: {one / plain:.2f}x   "
        f"2 workers / 1 worker: {two / one:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
