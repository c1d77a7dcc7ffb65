"""Evaluate registered model versions and the baselines on the protocol of EVALUATION.md.

    python jobs/evaluate.py --data ../shared/data/ml-100k
    python jobs/evaluate.py --data ../shared/data/ml-100k --model models:/llmrec-scorer@champion

Chronological leave-one-out after iterative k-core, full ranking over the catalogue with the
history masked, validation and test. Prints one table (HR@10/20, NDCG@10/20, MRR, coverage,
intra-list diversity over category vectors, novelty, Gini of exposure) and logs it to MLflow
(experiment `<registry.experiment>-eval`): one metric per method/split/measure, plus the table
as CSV and Markdown artifacts. EASE's lambda is tuned on validation.
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from _common import add_config_args, fail, quiet


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
    parser.add_argument("--no-log", action="store_true", help="print only, log nothing to MLflow")
    args = parser.parse_args(argv)
    quiet()
    import pandas as pd
    from llmrec import registry
    from llmrec.bundle import ModelBundle
    from llmrec.config import ConfigError, load_config
    from llmrec.data.contract import ContractError
    from llmrec.data.prepare import load_source, prepare
    from llmrec.data.readers import DataSourceError
    from llmrec.data.splits import leave_one_out
    from llmrec.training import offline

    try:
        cfg = load_config(args.config, args.overrides)
        lambdas = [float(v) for v in args.ease_lambdas.split(",")]
        source = args.data or cfg.data.source
        prepared = prepare(load_source(source, cfg.data), tempfile.mkdtemp(prefix="llmrec-eval-"))
    except (ConfigError, ContractError, DataSourceError, ValueError) as exc:
        fail(str(exc))
    protocol = offline.Protocol.create(
        leave_one_out(prepared.interactions, cfg.data.min_core), prepared.catalogue
    )
    best, tried = offline.tune_ease(protocol, lambdas)
    print(
        "EASE validation NDCG@10 by lambda: "
        + ", ".join(f"{lam:g}: {v:.4f}" for lam, v in tried.items())
    )
    table = offline.baseline_table(protocol, best)
    registry.use_tracking(cfg.registry)
    for uri in args.model:
        try:
            version, path = registry.download_bundle(uri)
        except registry.ModelNotFoundError as exc:
            fail(str(exc))
        bundle = ModelBundle(path)
        scorer = bundle.load_scorer()
        rows = []
        for part_name in ("val", "test"):
            part = protocol.part(part_name)
            scores = offline.llm_scores(scorer, protocol, part, bundle.config.data.max_history)
            rows.append(
                {
                    "method": f"llm {version.name}/{version.version}",
                    "split": part_name,
                    **offline.evaluate(protocol, part, scores),
                }
            )
        table = pd.concat([table, pd.DataFrame(rows)], ignore_index=True)
    table = table.sort_values(["split", "method"], kind="stable", ascending=[False, True])
    markdown = offline.to_markdown(table)
    print(
        f"\n{source}: {protocol.split.num_users} users, {len(protocol.catalogue)} items "
        "(ties count against the target)\n"
    )
    print(markdown)
    if not args.no_log:
        run_id = registry.log_evaluation(
            cfg.registry,
            table,
            markdown,
            {"data": source, "ease_lambda": best, "models": ",".join(args.model)},
        )
        print(f"\nlogged to MLflow run {run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
