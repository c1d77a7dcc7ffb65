"""Explain a registered version's recommendations for one user, offline, as a table.

    python jobs/explain.py --model models:/llmrec-scorer-ml100k@champion --user 13
    python jobs/explain.py --model models:/llmrec-scorer@champion --user u0001 \\
        --query "a mystery but nothing romantic"
    python jobs/explain.py --model models:/llmrec-scorer@champion --history i0003,i0042 \\
        --query "like Galactic Drift" --strict

The same path as `POST /recommend {..., "explain": true}` (query builder with the version's
language model reading the query, encoder, ranker, explainer), in this process: how the
query was read, then per item its score, the score's parts (llm + cf + popularity + query),
the history items behind it with their shares, the query constraints it meets, and one
sentence. The tracking store is the config's registry.tracking_uri, else
$MLFLOW_TRACKING_URI, else sqlite:///mlflow.db.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from _common import add_config_args, fail, load
from llmrec import console

if TYPE_CHECKING:
    from llmrec.config import Config


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_config_args(parser)
    parser.add_argument("--model", required=True, help="registered version, models:/NAME@ALIAS")
    who = parser.add_mutually_exclusive_group()
    who.add_argument("--user", help="a user in the version's logs")
    who.add_argument("--history", help="item ids, oldest first, separated by commas")
    parser.add_argument("--query", help="free text, read into constraints")
    parser.add_argument("--k", type=int, default=10, help="how many items (1-100)")
    parser.add_argument("--strict", action="store_true", help="wanted constraints filter")
    parser.add_argument("--no-parse", action="store_true", help="do not read the query")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    args = parser.parse_args(argv)
    if not (args.user or args.history or args.query):
        parser.error("give --user, --history or --query")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    console.setup(args.verbose)
    cfg = load(args)
    with console.report_errors(args.verbose):
        return explain(cfg, args)


def explain(cfg: Config, args: argparse.Namespace) -> int:
    from llmrec.registry import store as registry
    from llmrec.registry.bundle import ModelBundle
    from llmrec.serving import CandidateRanker, QueryBuilder, QueryEncoder, RecommendRequest
    from llmrec.understanding.explain import answer_table
    from llmrec.understanding.query import RequestError, understood
    from pydantic import ValidationError

    registry.use_tracking(cfg.registry)
    version, path = registry.cached_bundle(args.model)
    bundle = ModelBundle(path)
    try:
        req = RecommendRequest(
            user_id=args.user,
            history=args.history.split(",") if args.history else None,
            query=args.query,
            k=args.k,
            explain=True,
            strict=args.strict,
            parse_query=not args.no_parse,
        )
    except ValidationError as exc:
        fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    encoder = QueryEncoder(bundle, args.threads)
    builder = QueryBuilder(bundle, parser=encoder.parser())
    try:
        q = builder.build(req)
    except RequestError as exc:
        fail(exc.message)
    items = CandidateRanker(bundle).rank(encoder.encode([q]), q)
    who = f"user {args.user}" if args.user else f"history of {len(q.history)} items"
    hybrid = bundle.hybrid  # a typed request is scored with the request weights
    weights = hybrid.request_weights if q.request is not None else hybrid.weights
    print(f"{version.name}/{version.version}, {who}, hybrid {weights.describe()}\n")
    print(answer_table(items, understood(q.intent, q.strict, bundle.catalogue)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
