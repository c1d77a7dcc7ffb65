"""Evaluate registered model versions and the baselines on the protocol of EVALUATION.md.

    python jobs/evaluate.py --data ../shared/data/ml-100k
    python jobs/evaluate.py --data ../shared/data/ml-100k --model models:/llmrec-scorer@champion

Chronological leave-one-out after iterative k-core, full ranking over the catalogue with the
history masked, validation and test. Prints one table (HR@10/20, NDCG@10/20, MRR, coverage,
intra-list diversity over category vectors (over the first --model's item embeddings when the
items have no categories, else n/a), novelty, Gini of exposure) and logs it to MLflow
(experiment `<registry.experiment>-eval`): one metric per method/split/measure, plus the table
as CSV and Markdown artifacts. EASE's lambda is tuned on validation. Each --model is scored
alone (llm) and as the hybrid of the platform (LLM + the rank.cf collaborative model +
popularity, weights tuned on validation the way fine-tuning tunes them). --cf lists CF
options alone (each tuned on validation):

    python jobs/evaluate.py --data ../shared/data/ml-100k --cf ease,sparse,itemknn,als
    python jobs/evaluate.py --data ../shared/data/ml-100k --model URI --set rank.cf=als

    python jobs/evaluate.py --data ../shared/data/ml-100k \
        --model models:/llmrec-scorer-ml100k@champion --diversity-sweep
    python jobs/evaluate.py --config jobs/configs/ml100k.yaml \
        --model models:/llmrec-scorer-ml100k@champion --encoder-backend torch --encoder-backend int8

``--encoder-backend torch --encoder-backend int8`` scores each model twice: users encoded
with the float32 query tower, then with the int8 one that serving runs with
``encoder_backend: int8`` (rows named ``... int8``), against the same float32 items.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

from _common import add_config_args, fail, load
from llmrec import console


def main(argv: list[str] | None = None) -> int:
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
        "--diversity-sweep",
        action="store_true",
        help="re-rank the first --model's hybrid top-50 with MMR and DPP across the\n"
        "trade-off knob; pick on validation the most diverse setting within 5%% of\n"
        "its NDCG@10; log the curves as plots/diversity_sweep.png",
    )
    parser.add_argument(
        "--similarity",
        choices=("embedding", "categories"),
        default=None,
        help="item similarity of the re-rankers (default: the config's rank.similarity)",
    )
    parser.add_argument(
        "--cf",
        default="",
        help="CF options to list alone, tuned on validation, e.g. ease,sparse,itemknn,als\n"
        "(default: none; the hybrid uses rank.cf, e.g. --set rank.cf=als)",
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
        "--encoder-backend",
        choices=("torch", "int8"),
        action="append",
        help="how the query tower runs (the serve setting encoder_backend; default\n"
        "torch); repeat to compare, e.g. --encoder-backend torch --encoder-backend int8.\n"
        "Item embeddings stay float32, as in serving",
    )
    parser.add_argument("--no-log", action="store_true", help="print only, log nothing to MLflow")
    args = parser.parse_args(argv)
    console.setup(args.verbose)
    cfg = load(args)
    try:
        lambdas = [float(v) for v in args.ease_lambdas.split(",")]
    except ValueError:
        fail(f"--ease-lambdas must be numbers separated by commas, got {args.ease_lambdas!r}")
    if args.diversity_sweep and not args.model:
        fail("--diversity-sweep re-ranks a model's lists: give --model URI")
    with console.report_errors(args.verbose):
        return run(args, cfg, lambdas)


def run(args: Any, cfg: Any, lambdas: list[float]) -> int:
    import pandas as pd
    from llmrec import registry
    from llmrec.bundle import ModelBundle
    from llmrec.data.prepare import load_source, prepare
    from llmrec.data.splits import hold_out_items, leave_one_out
    from llmrec.serving.backends import query_scorer
    from llmrec.training import offline

    source = args.data or cfg.data.source
    prepared = prepare(load_source(source, cfg.data), tempfile.mkdtemp(prefix="llmrec-eval-"))
    split = leave_one_out(prepared.interactions, cfg.data.min_core)
    cold = hold_out_items(split, cfg.data.cold_items, cfg.data.cold_seed)
    protocol = offline.Protocol.create(split, prepared.catalogue, cold, args.max_users, args.seed)
    registry.use_tracking(cfg.registry)
    models = []
    for uri in args.model:
        version, path = registry.download_bundle(uri)
        bundle = ModelBundle(path)
        towers = bundle.load_towers()
        ids, vectors = bundle.catalogue.ids, bundle.item_embeddings
        items = offline.catalogue_vectors(towers, ids, vectors, protocol)
        models.append((uri, f"{version.name}/{version.version}", towers, items))
    if models:
        protocol = protocol.with_item_vectors(models[0][3], models[0][1])
    best, tried = offline.tune_ease(protocol, lambdas)
    print(
        "EASE validation NDCG@10 by lambda: "
        + ", ".join(f"{lam:g}: {v:.4f}" for lam, v in tried.items())
    )
    table = offline.baseline_table(protocol, best)
    kinds = [k.strip() for k in args.cf.split(",") if k.strip()]
    if kinds:
        table = pd.concat([table, offline.cf_table(protocol, kinds, cfg.rank, lambdas)])
    sweep_scores: dict[str, Any] = {}
    sweep_vectors = None
    backends = args.encoder_backend or ["torch"]
    for uri, name, towers, items in models:
        rows = []
        trained = towers.scorer
        for backend in backends:
            towers.use_scorer(query_scorer(trained, backend))
            label = name if backend == "torch" else f"{name} {backend}"
            parts = {p: protocol.scored(protocol.part(p)) for p in ("val", "test")}
            queries = {p: offline.user_vectors(towers, part) for p, part in parts.items()}
            fit = offline.fit_hybrid(
                protocol, items, queries["val"], cfg.rank.cf, lambdas, cfg.rank
            )
            print(
                f"{label} hybrid tuned on validation: {fit.weights.describe()}, "
                f"cf {offline.cf_label(fit.cf, fit.cf_params)}"
            )
            for p, part in parts.items():
                hybrid = fit.scorers[p].scores(queries[p], part.histories)
                for method, scores in (("llm", queries[p] @ items.T), ("hybrid", hybrid)):
                    rows.append(
                        {
                            "method": f"{method} {label}",
                            "split": p,
                            **offline.evaluate(protocol, part, scores),
                        }
                    )
                    if p == "test" and len(part.cold_rows):
                        rows.append(offline.cold_row(protocol, part, scores, f"{method} {label}"))
                if args.diversity_sweep and (uri, backend) == (args.model[0], backends[0]):
                    sweep_scores[p] = hybrid
        if args.diversity_sweep and sweep_vectors is None:
            similarity = args.similarity or cfg.rank.similarity
            sweep_vectors = items if similarity == "embedding" else protocol.category_vectors()
        table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    order = {"val": 0, "test": 1, "test_cold": 2}
    table = table.sort_values(
        ["split", "method"], key=lambda c: c.map(order) if c.name == "split" else c, kind="stable"
    )
    markdown = offline.to_markdown(table)
    print(
        f"\n{source}: {protocol.split.num_users} users, {len(protocol.catalogue)} items "
        "(ties count against the target)"
        + (
            f"; scored: a sample of {args.max_users} users per split (seed {args.seed})"
            if 0 < args.max_users < protocol.split.num_users
            else ""
        )
        + (
            f"; cold start: {len(cold)} items held out of training, "
            f"{len(protocol.part('test').cold_rows)} test users with a cold target"
            if cold
            else ""
        )
        + "\n"
    )
    print(markdown)
    if protocol.diversity_vectors is None:
        print(
            f"\ndiversity: n/a, {protocol.diversity_basis} (with --model URI it is measured "
            "on that model's item embeddings)"
        )
    else:
        print(f"\ndiversity: intra-list diversity of the top-10 over {protocol.diversity_basis}")
    texts: dict[str, str] = {}
    figures: dict[str, Any] = {}
    if args.diversity_sweep:
        assert sweep_vectors is not None
        sweep = pd.concat(
            [
                offline.diversity_sweep(
                    protocol,
                    protocol.scored(protocol.part(p)),
                    sweep_scores[p],
                    sweep_vectors,
                    depth=cfg.rank.rerank_depth,
                ).assign(split=p)
                for p in ("val", "test")
            ],
            ignore_index=True,
        )
        chosen = offline.choose_diversity(sweep[sweep["split"] == "val"])
        at = (sweep["method"] == chosen["method"]) & (sweep["strength"] == chosen["strength"])
        test_rows = sweep[sweep["split"] == "test"]
        base = test_rows[test_rows["strength"] == 0.0].iloc[0]
        picked = sweep[at & (sweep["split"] == "test")].iloc[0]
        sweep_md = offline.to_markdown(sweep)
        print(f"\ndiversity sweep ({args.model[0]} hybrid, top-{cfg.rank.rerank_depth}):\n")
        print(sweep_md)
        print(
            f"\nchosen on validation: {chosen['method']} strength {chosen['strength']:g}; on "
            f"test NDCG@10 {base['ndcg_at_10']:.4f} -> {picked['ndcg_at_10']:.4f} "
            f"({100 * (picked['ndcg_at_10'] / base['ndcg_at_10'] - 1):+.1f}%), diversity "
            f"{base['diversity']:.4f} -> {picked['diversity']:.4f} "
            f"({100 * (picked['diversity'] / base['diversity'] - 1):+.1f}%)"
        )
        texts = {
            "evaluation/diversity_sweep.md": sweep_md,
            "evaluation/diversity_sweep.csv": sweep.to_csv(index=False),
        }
        figures = {"plots/diversity_sweep.png": sweep_figure(sweep, chosen)}
    if not args.no_log:
        run_id = registry.log_evaluation(
            cfg.registry,
            table,
            markdown,
            {"data": source, "ease_lambda": best, "models": ",".join(args.model)},
            texts,
            figures,
        )
        print(f"\nlogged to MLflow run {run_id}")
    return 0


def sweep_figure(sweep: Any, chosen: Any) -> Any:
    """NDCG@10 against intra-list diversity across the knob, one curve per method and split,
    the chosen setting circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, split in zip(axes, ("val", "test"), strict=True):
        for method, rows in sweep[sweep["split"] == split].groupby("method"):
            ax.plot(rows["diversity"], rows["ndcg_at_10"], marker="o", label=method)
            for _, r in rows.iterrows():
                ax.annotate(f"{r['strength']:g}", (r["diversity"], r["ndcg_at_10"]), fontsize=7)
        pick = sweep[
            (sweep["split"] == split)
            & (sweep["method"] == chosen["method"])
            & (sweep["strength"] == chosen["strength"])
        ]
        ax.scatter(pick["diversity"], pick["ndcg_at_10"], s=200, facecolors="none", edgecolors="r")
        ax.set(
            title=f"{split}: accuracy vs diversity", xlabel="intra-list diversity", ylabel="NDCG@10"
        )
        ax.legend()
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    sys.exit(main())
