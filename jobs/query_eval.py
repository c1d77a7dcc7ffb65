"""Measure how a registered version understands free-text queries.

    python jobs/query_eval.py --model models:/llmrec-scorer-ml100k@champion
    python jobs/query_eval.py --model models:/llmrec-scorer@champion --queries 300 --seed 1

Builds a labelled query set from the version's catalogue (templates over its categories,
popular titles and years, a share lower-cased and a share with a typo; --save writes it as
JSON lines), answers every query through the serving path with query parsing on and off
(every other query with the recent history of a user of the version's logs), and prints
two tables: precision and recall of what the parser read per slot, and the top 10's
exclusions, wanted categories, years and referred items against parsing off. Thresholds
and the default boost were chosen on --seed 1; report --seed 0.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from _common import add_config_args, load
from llmrec import console

if TYPE_CHECKING:
    from llmrec.config import Config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_config_args(parser)
    parser.add_argument("--model", required=True, help="registered version, models:/NAME@ALIAS")
    parser.add_argument("--queries", type=int, default=400, help="how many queries")
    parser.add_argument("--seed", type=int, default=0, help="seed of the query set and users")
    parser.add_argument("--boost", type=float, help="query_boost (default: the serve setting)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--save", help="write the labelled queries here (JSON lines)")
    args = parser.parse_args(argv)
    console.setup(args.verbose)
    cfg = load(args)
    with console.report_errors(args.verbose):
        return evaluate(cfg, args)


def evaluate(cfg: Config, args: argparse.Namespace) -> int:
    from llmrec.evaluation.queries import build_query_set
    from llmrec.evaluation.query_report import ranking_table, run_queries, slot_table
    from llmrec.registry import store as registry
    from llmrec.registry.bundle import ModelBundle

    registry.use_tracking(cfg.registry)
    version, path = registry.cached_bundle(args.model)
    bundle = ModelBundle(path)
    counts = bundle.hybrid.popularity_counts
    queries = build_query_set(bundle.catalogue, args.queries, args.seed, counts)
    if args.save:
        with open(args.save, "w", encoding="utf-8") as f:
            for q in queries:
                f.write(json.dumps(asdict(q), ensure_ascii=False) + "\n")
    outcomes = run_queries(bundle, queries, args.seed, args.threads, args.boost)
    typos = sum(q.typo for q in queries)
    lower = sum(q.lower for q in queries)
    print(
        f"{version.name}/{version.version}: {len(queries)} queries (seed {args.seed}; "
        f"{typos} with a typo, {lower} lower-cased), {len(bundle.catalogue)} items\n"
    )
    print(slot_table(outcomes))
    print()
    print(ranking_table(outcomes, bundle))
    print("\nexamples:")
    for o in outcomes[:: max(len(outcomes) // 8, 1)][:8]:
        print(f"- {o.query.text!r}: {o.read}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
