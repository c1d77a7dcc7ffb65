"""A maintained library's SASRec (RecTools ``SASRecModel``) on this platform's split.

RecTools 0.19 pins numpy < 2, so it runs in an environment of its own and reads the split
that ``benchmarks/export_split.py`` wrote (the same users, items and targets the platform
evaluates on):

    python3 -m venv .venv-rectools
    .venv-rectools/bin/pip install torch==2.13.0 'rectools[torch]==0.19.0'
    .venv/bin/python benchmarks/export_split.py --config jobs/configs/games.yaml \\
        --out runs/split-games.jsonl
    .venv-rectools/bin/python benchmarks/rectools_sasrec.py runs/split-games.jsonl \\
        --seeds 0,1,2 --out runs/sasrec-games.json

Configuration (RecTools' own defaults where not named; see docs/evaluation.md for why it is
fair): softmax loss over the whole catalogue, 2 blocks, 2 heads, 64 factors, at most 50
items of history, 30 epochs, lr 1e-3, batch 128. Validation: fitted on the training part,
ranked for the validation target. Test: the same fitted model reads training + validation
items (no refit) and ranks for the test target. History masked (``filter_viewed``), full
ranking, HR@10 / NDCG@10 from the top 10 (ties cannot arise inside one ranked list).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HYPER = {
    "loss": "softmax",
    "n_blocks": 2,
    "n_heads": 2,
    "n_factors": 64,
    "session_max_len": 50,
    "epochs": 30,
    "lr": 1e-3,
    "batch_size": 128,
}


def read_split(path: Path) -> pd.DataFrame:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return pd.DataFrame(rows)


def interactions(split: pd.DataFrame, with_val: bool) -> pd.DataFrame:
    """The interactions a model sees, one per (user, item), ``datetime`` = the position."""
    users: list[str] = []
    items: list[str] = []
    times: list[int] = []
    for user, history, val in zip(split["user_id"], split["history"], split["val"], strict=True):
        seq = [*history, val] if with_val else history
        users += [user] * len(seq)
        items += seq
        times += list(range(len(seq)))
    return pd.DataFrame(
        {
            "user_id": users,
            "item_id": items,
            "weight": 1.0,
            "datetime": pd.to_datetime(times, unit="s"),
        }
    )


def metrics(recos: pd.DataFrame, targets: dict[str, str], k: int = 10) -> dict[str, float]:
    """HR@k and NDCG@k of the top-k lists against one target a user (absent: a miss)."""
    hits, gains = [], []
    lists = recos.sort_values(["user_id", "rank"]).groupby("user_id")["item_id"].apply(list)
    for user, target in targets.items():
        ranked = lists.get(user, [])[:k]
        rank = ranked.index(target) if target in ranked else -1
        hits.append(float(rank >= 0))
        gains.append(1.0 / np.log2(rank + 2) if rank >= 0 else 0.0)
    return {"hr_at_10": float(np.mean(hits)), "ndcg_at_10": float(np.mean(gains))}


def run_seed(split: pd.DataFrame, seed: int) -> dict[str, float]:
    from pytorch_lightning import seed_everything
    from rectools import Columns
    from rectools.dataset import Dataset
    from rectools.models import SASRecModel

    seed_everything(seed, workers=True)
    renamed = {"user_id": Columns.User, "item_id": Columns.Item}
    renamed |= {"weight": Columns.Weight, "datetime": Columns.Datetime}
    seen = interactions(split, with_val=False)
    train = Dataset.construct(seen.rename(columns=renamed))
    model = SASRecModel(**HYPER, deterministic=True, verbose=0)
    start = time.perf_counter()
    model.fit(train)
    seconds = time.perf_counter() - start
    users = split["user_id"].tolist()
    out: dict[str, float] = {"fit_seconds": seconds}
    # items first seen as a validation target are unknown to the fitted model
    with_val = interactions(split, with_val=True)
    test = with_val[with_val["item_id"].isin(set(seen["item_id"]))]
    test = Dataset.construct(test.rename(columns=renamed))
    for part, data in (("val", train), ("test", test)):
        recos = model.recommend(users=users, dataset=data, k=10, filter_viewed=True)
        recos = recos.rename(columns={Columns.User: "user_id", Columns.Item: "item_id"})
        scores = metrics(recos, dict(zip(split["user_id"], split[part], strict=True)))
        out |= {f"{part}_{k}": v for k, v in scores.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("split", type=Path, help="JSON lines from benchmarks/export_split.py")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--out", type=Path, help="write the per-seed figures as JSON")
    parser.add_argument(
        "--epochs", type=int, default=HYPER["epochs"], help="a smoke test: fewer epochs"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="library warnings too")
    args = parser.parse_args(argv)
    HYPER["epochs"] = args.epochs
    if not args.verbose:  # Lightning's and pydantic's notes, once per seed
        warnings.filterwarnings("ignore")
        logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
        logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    split = read_split(args.split)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"{args.split}: {len(split)} users; RecTools SASRec {HYPER}")
    runs = []
    for seed in seeds:
        found = run_seed(split, seed)
        runs.append(found)
        print(
            f"seed {seed}: val NDCG@10 {found['val_ndcg_at_10']:.4f}, test HR@10 "
            f"{found['test_hr_at_10']:.4f} NDCG@10 {found['test_ndcg_at_10']:.4f} "
            f"({found['fit_seconds']:.0f} s to fit)",
            flush=True,
        )
    summary = {}
    for key in ("val_ndcg_at_10", "test_hr_at_10", "test_ndcg_at_10"):
        values = [r[key] for r in runs]
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        summary[key] = {"mean": statistics.fmean(values), "sd": sd}
        print(f"{key}: {summary[key]['mean']:.4f} ± {sd:.4f} (sample SD, {len(values)} seeds)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        payload = {"hyper": HYPER, "seeds": seeds, "runs": runs, "summary": summary}
        args.out.write_text(json.dumps(payload, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
