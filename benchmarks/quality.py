"""Quality beside the strongest simple baselines, over seeds: the table a quality claim needs.

    python benchmarks/quality.py --config jobs/configs/ml100k.yaml --seeds 0,1,2 --ids-only \\
        --library runs/sasrec-ml100k.json

For each seed it runs the fine-tuning workflow in process (data, Ray Train, the hybrid tuned
on validation, registration: the same code as ``jobs/finetune.py --set train.seed=S``) and,
with ``--ids-only``, the same towers with text off (``model.item_text=false``, registered
under ``<model_name>-ids-only``). Every run's table holds the baselines on the same split
(popularity, ItemKNN, the CF model alone, Markov-1); ``--library`` adds the figures that
``benchmarks/rectools_sasrec.py`` wrote. Prints validation NDCG@10 and test HR@10 / NDCG@10,
mean ± sample SD over the seeds (deterministic baselines have no spread), and each trained
row's test NDCG@10 as a multiple of the strongest baseline's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import add_config_args, init_ray, load, quiet
from _table import machine, print_table

BASELINES = {
    "popularity": "popularity",
    "itemknn": "ItemKNN",
    "ease": "EASE (lambda on validation)",
    "sparse_ease": "sparse EASE (on validation)",
    "als": "ALS (on validation)",
    "markov_1": "Markov-1",
}
KEYS = ("val_ndcg_at_10", "test_hr_at_10", "test_ndcg_at_10")


def cell(values: Sequence[float]) -> str:
    if len(values) > 1 and len(set(values)) > 1:
        return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"
    return f"{values[0]:.4f}"


def rows_of(runs: list[dict[str, float]], prefix: str) -> dict[str, list[float]]:
    return {k: [r[prefix + k] for r in runs if prefix + k in r] for k in KEYS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    add_config_args(parser)
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--ids-only", action="store_true", help="also train with text off")
    parser.add_argument("--library", type=Path, help="rectools_sasrec.py's JSON output")
    parser.add_argument("--out", type=Path, help="write every run's metrics as JSON")
    args = parser.parse_args(argv)
    quiet()
    seeds = [int(s) for s in args.seeds.split(",")]
    base_overrides = list(args.overrides)
    variants = {"model": base_overrides}
    if args.ids_only:
        name = load(args).registry.model_name
        variants["ids"] = [
            *base_overrides,
            "model.item_text=false",
            f"registry.model_name={name}-ids-only",
        ]
    init_ray("", load(args).ray.num_cpus)
    from llmrec.workflows.finetune import finetune

    runs: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for seed in seeds:
        for variant, overrides in variants.items():
            args.overrides = [*overrides, f"train.seed={seed}"]
            cfg = load(args)
            start = time.perf_counter()
            result = finetune(cfg, log=lambda _: None)
            metrics = dict(result.metrics) | {"job_seconds": time.perf_counter() - start}
            runs[variant].append(metrics)
            print(
                f"seed {seed} {variant}: val NDCG@10 {metrics['val_ndcg_at_10']:.4f}, test "
                f"NDCG@10 {metrics['test_ndcg_at_10']:.4f} (hybrid "
                f"{metrics.get('hybrid_test_ndcg_at_10', float('nan')):.4f}), training "
                f"{metrics['train_seconds']:.0f} s",
                flush=True,
            )
    model = runs["model"]
    table: list[tuple[str, dict[str, list[float]], bool]] = []
    for slug, label in BASELINES.items():
        found = rows_of(model, f"baseline_{slug}_")
        if found["test_ndcg_at_10"]:
            table.append((label, found, False))
    if args.library:
        lib = json.loads(args.library.read_text())
        library_runs = [{k: r[k] for k in KEYS} for r in lib["runs"]]
        table.append(("SASRec, RecTools 0.19", rows_of(library_runs, ""), False))
    if "ids" in runs:
        table.append(("same towers, IDs only (text off)", rows_of(runs["ids"], ""), False))
    table.append(("llmrec, the model alone", rows_of(model, ""), True))
    table.append(("llmrec, the served hybrid", rows_of(model, "hybrid_"), True))
    best = max(statistics.fmean(v["test_ndcg_at_10"]) for _, v, ours in table if not ours)
    printed = []
    for label, values, ours in table:
        ratio = statistics.fmean(values["test_ndcg_at_10"]) / best
        printed.append([label, *(cell(values[k]) for k in KEYS), f"{ratio:.2f}x" if ours else ""])
    seconds = [r["train_seconds"] for r in model]
    print_table(
        f"{load(args).data.source}, seeds {args.seeds} ({machine()}); training "
        f"{statistics.fmean(seconds):.0f} s a seed (min {min(seconds):.0f}, max "
        f"{max(seconds):.0f})",
        ["method", "val NDCG@10", "test HR@10", "test NDCG@10", "x best baseline"],
        printed,
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"seeds": seeds, "runs": runs}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
