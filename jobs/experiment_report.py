"""Report an online experiment from the server's impression log, and log it to MLflow.

    python jobs/experiment_report.py --experiment ramp-v7
    python jobs/experiment_report.py --experiment ramp-v7 --metric reward_per_user \\
        --reward-event click --reward-event purchase --state runs/serve/impressions.sqlite

Per variant: users, requests, items shown, attributed events by kind and their value, CTR,
CTR by position, reward per user, latency p50/p95. Each challenger against the control
(the spec's first variant): the difference with its 95% interval over users (delta method;
a bootstrap over users beside it), and a decision: better, worse, or not yet
distinguishable with the number of users it would take. The run (experiment
``<registry.experiment>-online``) is tagged with the variants' versions and holds the
tables and a plot of the cumulative difference with its interval. See docs/experiments.md.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from _common import add_config_args, add_experiment_args, analyse_experiment, load
from llmrec import console


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_config_args(parser)
    add_experiment_args(parser)
    parser.add_argument("--no-mlflow", action="store_true", help="print only")
    args = parser.parse_args(argv)
    console.setup(args.verbose)
    cfg = load(args)
    with console.report_errors(args.verbose):
        analysis = analyse_experiment(args)
        from llmrec.experiments import markdown

        print(markdown(analysis), end="")
        if not args.no_mlflow:
            run_id = _log(cfg, analysis)
            print(f"logged to MLflow run {run_id} (experiment {cfg.registry.experiment}-online)")
    return 0


def _log(cfg: Any, analysis: Any) -> str:
    from llmrec.experiments import figure, markdown, metrics
    from llmrec.registry import runs

    tags = {f"llmrec.variant.{v}.versions": ",".join(u) for v, u in analysis.served.items()}
    versions = {
        v: ",".join(u.rsplit("/", 1)[-1] for u in uris) for v, uris in analysis.served.items()
    }
    tags["llmrec.control"] = analysis.control
    tags["llmrec.control_version"] = versions[analysis.control]
    for c in analysis.comparisons:
        tags[f"llmrec.decision.{c.challenger}"] = c.decision
    if analysis.comparisons:
        first = analysis.comparisons[0].challenger
        tags["llmrec.challenger"] = first
        tags["llmrec.challenger_version"] = versions[first]
    texts = {
        "experiment/report.md": markdown(analysis),
        "experiment/variants.csv": analysis.table.to_csv(index=False),
        "experiment/ctr_by_position.csv": analysis.positions.to_csv(index=False),
    }
    for name, curve in analysis.cumulative.items():
        texts[f"experiment/cumulative-{name}.csv"] = curve.to_csv(index=False)
    figures = {"experiment/cumulative_difference.png": figure(analysis)}
    return runs.log_experiment_report(
        cfg.registry, analysis.experiment, metrics(analysis), tags, texts, figures
    )


if __name__ == "__main__":
    sys.exit(main())
