"""Evaluate registered model versions and the baselines on the protocol of EVALUATION.md.

    python jobs/evaluate.py --data path/to/ml-100k
    python jobs/evaluate.py --data path/to/ml-100k --model models:/llmrec-scorer@champion

Chronological leave-one-out after iterative k-core, full ranking over the catalogue with the
history masked, validation and test. Prints one table (HR@10/20, NDCG@10/20, MRR, coverage,
intra-list diversity over category vectors (over the first --model's item vectors when the
items have no categories, else n/a), novelty, Gini of exposure, miscalibration, long-tail
share) and logs it to MLflow (experiment `<registry.experiment>-eval`). EASE's lambda is
tuned on validation. Each --model is scored alone (llm: the model's own user and item
vectors) and as the hybrid of the platform (the model + the rank.cf collaborative model +
popularity, weights tuned on validation). --cf lists CF options alone:

    python jobs/evaluate.py --data path/to/ml-100k --cf ease,sparse,itemknn,als
    python jobs/evaluate.py --config jobs/configs/ml100k.yaml \\
        --model models:/llmrec-scorer-ml100k@champion --rerank-sweep --groups

--rerank-sweep re-ranks the method's top-N with every re-ranker (MMR, MSD, DPP, caps per
category, calibration, long-tail share) across its knob and candidate depths, chooses each
knob on validation, prints one table and logs one plot per objective. --groups adds NDCG@10
and HR@10 per user group (activity quartile, the user table's attributes) and the largest
gap with its bootstrap interval. See docs/beyond-accuracy.md. --explain measures how
faithful each model's explanations are (docs/explanations.md).

Baselines take the form the catalogue's size allows (the rules of rank.cf: auto): dense EASE
and ItemKNN up to rank.ease_max_items items (and when their estimated memory is free), sparse
EASE and the top-k cosine ItemKNN up to rank.sparse_max_items, ALS above; what cannot fit is
skipped with a one-line reason. --max-users N scores a seeded sample of N users (models are
fitted on every user), what a million-item catalogue needs.

Comparing with what you have (docs/evaluation.md): --export-split DIR writes the exact split
(training interactions, validation and test targets, the masked items, the catalogue, the
users scored) and exits; --predictions NAME=PATH scores another model's predictions on it
(CSV or Parquet of user_id,item_id,score or user_id,item_id,rank, optionally split) as a row
of the same table:

    python jobs/evaluate.py --config jobs/configs/ml100k.yaml --export-split runs/split-ml100k
    python jobs/evaluate.py --config jobs/configs/ml100k.yaml --predictions mine=runs/mine.csv

--incremental runs the incremental protocol (docs/updates.md): the first 70% of the
interactions by time train a base model, the rest is cut into --periods periods; per period
the stale model, fine-tuning on the new data only, fine-tuning with replay (jobs/update.py)
and a full retrain are scored on that period; one table and a plot, logged to MLflow:

    python jobs/evaluate.py --config jobs/configs/ml100k.yaml --incremental
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

from _common import add_config_args, fail, load
from llmrec import console

METHODS = ("hybrid", "llm", "ease", "ease+popularity", "itemknn", "popularity")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_config_args(parser)
    parser.add_argument("--data", help="data source (default: the config's data.source)")
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="URI",
        help="a registered version to evaluate, e.g. models:/llmrec-scorer@champion",
    )
    parser.add_argument(
        "--ease-lambdas", default="10,50,100,200,500,1000", help="EASE lambdas tried on validation"
    )
    parser.add_argument(
        "--cf",
        default="",
        help="CF options to list alone, tuned on validation, e.g. ease,sparse,itemknn,als\n"
        "(default: none; the hybrid uses rank.cf, e.g. --set rank.cf=als)",
    )
    parser.add_argument(
        "--rerank-sweep",
        action="store_true",
        help="every re-ranker across its knob on validation and test, each knob chosen on\n"
        "validation within 5%% of NDCG@10; one table, plots/rerank_<objective>.png",
    )
    parser.add_argument(
        "--method",
        choices=METHODS,
        default=None,
        help="the lists the sweep re-ranks and the group report compares with (default:\n"
        "the first --model's hybrid, else EASE); ease+popularity: the hybrid without a LLM",
    )
    parser.add_argument("--depths", default="50,100,200", help="candidate pools re-ranked")
    parser.add_argument(
        "--selection",
        choices=("bootstrap", "single"),
        default="bootstrap",
        help="how the sweep charges a knob its validation NDCG loss: bootstrap (default:\n"
        "the lower quartile of the loss over resampled users) or single (the point\n"
        "estimate); the rules are compared side by side in the printed table",
    )
    parser.add_argument(
        "--similarity",
        choices=("embedding", "categories"),
        default=None,
        help="item similarity of MMR/MSD/DPP (default: the config's rank.similarity)",
    )
    parser.add_argument("--groups", action="store_true", help="quality per user group")
    parser.add_argument(
        "--explain",
        action="store_true",
        help="faithfulness of each --model's explanations on test users: the rank drop of\n"
        "the top item without its top `because` item vs without a random history item",
    )
    parser.add_argument(
        "--encoder-backend",
        choices=("torch", "int8"),
        action="append",
        help="how the user tower's language model runs (the serve setting encoder_backend;\n"
        "default torch); repeat to compare, e.g. --encoder-backend torch --encoder-backend\n"
        "int8. Item vectors stay float32, as in serving",
    )
    parser.add_argument(
        "--max-users",
        type=int,
        default=0,
        help="score a seeded sample of this many users per split (models are fitted on\n"
        "all; items are never sampled); 0: every user",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the user sample")
    parser.add_argument(
        "--export-split",
        metavar="DIR",
        help="write the split (train, validation, test, the masked items, the catalogue, the\n"
        "users scored) to DIR for another model to train and predict on, and exit",
    )
    parser.add_argument(
        "--predictions",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="another model's predictions, scored as a row NAME of the table: CSV or Parquet\n"
        "of user_id,item_id,score (or rank), optionally split (val/test; without it:\n"
        "test); repeatable",
    )
    parser.add_argument(
        "--incremental",
        action="store_true",
        help="the incremental protocol: stale vs fine-tune (new data, with replay) vs\n"
        "full retrain per period (update.* settings; docs/updates.md)",
    )
    parser.add_argument("--periods", type=int, default=3, help="--incremental: periods")
    parser.add_argument("--no-log", action="store_true", help="print only, log nothing to MLflow")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    console.setup(args.verbose)
    cfg = load(args)
    try:
        lambdas = tuple(float(v) for v in args.ease_lambdas.split(","))
        depths = tuple(int(v) for v in args.depths.split(","))
    except ValueError:
        fail(f"--ease-lambdas and --depths take numbers separated by commas, got {args!r}")
    if args.method in ("hybrid", "llm") and not args.model:
        fail(f"--method {args.method} re-ranks a model's lists: give --model URI")
    if args.max_users < 0:
        fail(f"--max-users must be >= 0 (0: every user), got {args.max_users}")
    if args.export_split and (args.model or args.predictions or args.incremental):
        fail("--export-split writes the split and exits: evaluate in a second run")
    for given in args.predictions:
        if "=" not in given or not given.split("=", 1)[0].strip() or not given.split("=", 1)[1]:
            fail(f"--predictions takes NAME=PATH, e.g. sasrec=runs/sasrec.csv, got {given!r}")
    names = [given.split("=", 1)[0].strip() for given in args.predictions]
    if len(set(names)) < len(names):
        fail(f"--predictions names must differ, got {', '.join(names)}")
    with console.report_errors(args.verbose):
        if args.incremental:
            from llmrec.workflows.incremental import main as incremental

            return incremental(cfg, args.data or cfg.data.source, args.periods, not args.no_log)
        return run(args, cfg, lambdas, depths)


def run(args: Any, cfg: Any, lambdas: tuple[float, ...], depths: tuple[int, ...]) -> int:
    from llmrec.data.prepare import load_source, prepare
    from llmrec.data.splits import hold_out_items, leave_one_out
    from llmrec.evaluation import (
        group_report,
        offline,
        predictions,
        references,
        reports,
        split_export,
    )
    from llmrec.evaluation.selection import Rule
    from llmrec.registry import runs
    from llmrec.registry import store as registry
    from llmrec.registry.bundle import ModelBundle

    opts = reports.EvalOptions(
        models=tuple(args.model),
        lambdas=lambdas,
        cf=tuple(k.strip() for k in args.cf.split(",") if k.strip()),
        rerank_sweep=args.rerank_sweep,
        method=args.method,
        depths=depths,
        similarity=args.similarity,
        groups=args.groups,
        selection=Rule(args.selection),
        explain=args.explain,
        backends=tuple(args.encoder_backend or ["torch"]),
    )
    source = args.data or cfg.data.source
    prepared = prepare(
        load_source(source, cfg.data), tempfile.mkdtemp(prefix="llmrec-eval-"), cfg.data.events
    )
    split = leave_one_out(prepared.interactions, cfg.data.min_core)
    cold = hold_out_items(split, cfg.data.cold_items, cfg.data.cold_seed)
    protocol = offline.Protocol.create(split, prepared.catalogue, cold, args.max_users, args.seed)
    total = protocol.split.num_users
    scored = len(protocol.scored(protocol.part("test")).targets)
    sample = f"{scored} of {total} users" + (
        f" (a random sample, seed {args.seed})" if scored < total else ""
    )
    if args.export_split:
        about = {"source": source, "min_core": cfg.data.min_core, "cold_seed": cfg.data.cold_seed}
        out = split_export.export_split(protocol, args.export_split, about)
        print(
            f"{source}: the split of {total} users and {len(protocol.catalogue)} items -> {out}"
            f"; scored: {sample} (users.parquet)"
        )
        return 0
    read = [
        predictions.read_predictions(*given.split("=", 1)) for given in args.predictions
    ]  # before anything is fitted: a bad file fails at once
    registry.use_tracking(cfg.registry)

    def load_model(uri: str) -> tuple[str, ModelBundle]:
        version, path = registry.download_bundle(uri)
        return f"{version.name}/{version.version}", ModelBundle(path)

    result = reports.evaluate_all(
        cfg,
        protocol,
        opts,
        group_report.users_frame(prepared.users),
        load_model,
        predictions=read,
        available=references.available_memory(),
    )
    n_cold = len(protocol.part("test").cold_rows)
    print(
        f"\n{source}: {protocol.split.num_users} users, {len(protocol.catalogue)} items "
        "(ties count against the target)"
        + (f"; scored: {sample} per split" if scored < total else "")
        + (
            f"; cold start: {len(cold)} items held out of training, "
            f"{n_cold} test users with a cold target"
            if cold
            else ""
        )
        + "\n"
    )
    print(reports.fmt_sections(result.sections))
    basis = result.params.get("diversity", "")
    print(f"\ndiversity: {basis}")
    if not args.no_log:
        run_id = runs.log_evaluation(
            cfg.registry,
            result.table,
            result.sections[0],
            {"data": source, "models": ",".join(args.model), **result.params},
            result.texts,
            result.figures,
        )
        print(f"\nlogged to MLflow run {run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
