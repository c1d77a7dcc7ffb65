"""Simulated users with known futures ask for recommendations and click what they will do.

    # first, the data without the users' futures, to train the versions on
    python jobs/simulate_traffic.py --config jobs/configs/ml100k.yaml --hold-out data/ml100k-past
    # against a live server running an experiment (serve run ...; see docs/experiments.md)
    python jobs/simulate_traffic.py --config jobs/configs/ml100k.yaml --url http://127.0.0.1:8000
    # in this process, over many seeds (same assignment, ranking, log and analysis code)
    python jobs/simulate_traffic.py --config jobs/configs/ml100k.yaml --in-process \\
        --variant control=models:/llmrec-scorer-ml100k/1 \\
        --variant challenger=models:/llmrec-scorer-ml100k/1 --seeds 100 --experiment aa
    # exploration, new items of known appeal (_exploration.py): add --explore 0.1 --update

Each user of the data set (``data.source``, split as training splits it) has a past and a
future (their last ``--future`` interactions: 2 = the validation and test targets), which
the versions compared must not have been trained on (``--hold-out``): one
request per future item, with their past as the history and their id as the session id;
position-biased clicks on what is in their future, sent back with the answer's request_id.
In process, each seed is one experiment (its own hash salt, arrival order and clicks); the
last line is the share of seeds in which a winner was declared at 95%.
"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import _exploration
from _common import add_config_args, fail, load
from llmrec import console

if TYPE_CHECKING:
    from llmrec.config import Config
    from llmrec.experiments.simulation import ClickModel, SessionResult, SimUser


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_config_args(parser)
    parser.add_argument("--hold-out", metavar="DIR", help="write the data without the futures")
    parser.add_argument("--url", help="a live server (HTTP)")
    parser.add_argument("--token", default=os.environ.get("LLMREC_API_TOKEN"))
    parser.add_argument("--in-process", action="store_true", help="no server: the seeds")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=MODEL_URI")
    parser.add_argument("--weights", help="comma-separated, one per variant (default: equal)")
    parser.add_argument("--experiment", default="simulated", help="in-process experiment name")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="HTTP: arrival order and clicks")
    parser.add_argument("--users", type=int, default=0, help="at most this many (0: all)")
    parser.add_argument("--future", type=int, default=2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--noise", type=float, default=0.0, help="chance of a random click")
    parser.add_argument("--concurrency", type=int, default=4)
    _exploration.add_args(parser)
    args = parser.parse_args(argv)
    console.setup(args.verbose)
    cfg = load(args)
    if sum([bool(args.url), args.in_process, bool(args.hold_out)]) != 1:
        fail("give one of --hold-out DIR, --url (a live server) or --in-process")
    with console.report_errors(args.verbose):
        from llmrec.experiments.simulation import ClickModel, hold_out_futures, load_users

        if args.hold_out:
            n = hold_out_futures(cfg.data.source, cfg.data, args.hold_out, args.future)
            print(
                f"{args.hold_out}: {cfg.data.source} without {n} future interactions; "
                f"train the versions with --set data.source={args.hold_out}"
            )
            return 0

        users = load_users(cfg.data.source, cfg.data, args.future, args.users, args.seed)
        model = ClickModel(args.noise)
        print(f"{len(users)} simulated users from {cfg.data.source}", flush=True)
        if args.url:
            return _http(args, users, model)
        if args.explore is not None:
            return _exploration.run(args, cfg, users)
        return _in_process(args, cfg, users, model)


def _http(args: argparse.Namespace, users: list[SimUser], model: ClickModel) -> int:
    import numpy as np
    from llmrec.experiments.simulation import HttpClient, run_session

    client = HttpClient(args.url, args.token)
    order = np.random.default_rng(args.seed).permutation(len(users))

    def one(i: int) -> SessionResult | Exception:
        rng = np.random.default_rng([args.seed, int(i)])
        try:
            return run_session(users[i], client.recommend, client.feedback, model, rng, args.k)
        except Exception as exc:  # counted, and the first ones shown
            return exc

    with ThreadPoolExecutor(args.concurrency) as pool:
        results = list(pool.map(one, order))
    failed = [r for r in results if isinstance(r, Exception)]
    done = [r for r in results if not isinstance(r, Exception)]
    arms: dict[str, int] = {}
    for v in client.variants.values():
        arms[v] = arms.get(v, 0) + 1
    print(
        f"{sum(r.requests for r in done)} requests, {sum(r.clicks for r in done)} clicks "
        f"({sum(r.future_clicks for r in done)} on the future) from {len(done)} users; "
        f"users per variant: {arms}; {len(failed)} users failed"
    )
    for exc in failed[:3]:
        print(f"  {exc}")
    return 1 if failed else 0


def _in_process(
    args: argparse.Namespace, cfg: Config, users: list[SimUser], model: ClickModel
) -> int:
    from llmrec.experiments.inprocess import LocalExperiment
    from llmrec.registry import store as registry

    pairs = [v.split("=", 1) for v in args.variant]
    if len(pairs) < 2 or any(len(v) != 2 for v in pairs):
        fail("--in-process needs two or more --variant NAME=MODEL_URI")
    variants = [(name, uri) for name, uri in pairs]
    weights = [float(w) for w in args.weights.split(",")] if args.weights else None
    registry.use_tracking(cfg.registry)
    local = LocalExperiment(variants, users, weights, k=args.k)
    speed = ", ".join(f"{r.uri} {r.ms_per_request:.1f}" for r in local.ranked.values())
    print(f"ms per request (in process): {speed}")
    winners = 0
    for seed in range(args.seeds):
        analysis = local.run(f"{args.experiment}-s{seed}", seed, model)
        if seed == 0:
            from llmrec.experiments import markdown

            print(markdown(analysis))
        won = [c for c in analysis.comparisons if c.decision != "not yet distinguishable"]
        winners += bool(won)
        for c in analysis.comparisons:
            print(f"seed {seed}: {c.sentence()}", flush=True)
    print(
        f"a winner was declared in {winners} of {args.seeds} seeds "
        f"({winners / max(1, args.seeds):.1%}) at 95%"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
