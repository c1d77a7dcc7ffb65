"""Move the `champion` alias when the candidate beats it, or roll it back.

    python jobs/promote.py                       # candidate vs champion on their logged metric
    python jobs/promote.py --data path/to/ml-100k   # evaluate both on the same data now
    python jobs/promote.py --candidate 4 --set registry.promote_margin=0.002
    python jobs/promote.py --rollback            # put the previous champion back
    python jobs/promote.py --experiment ramp-v7  # the challenger of an online experiment
    python jobs/promote.py --alias challenger --version 7   # what an experiment's arm follows
    python jobs/promote.py --alias challenger    # where it points now

The primary metric (registry.primary_metric, default val_ndcg_at_10) must beat the
champion's by more than registry.promote_margin; otherwise champion stays and the reason is
printed. Logged metrics are compared only when both versions carry the same dataset
fingerprint; --data evaluates both versions on one data set's validation split instead.
With --experiment, the experiment's challenger becomes champion only if it won significantly
(see jobs/experiment_report.py); otherwise the reason is printed.

--alias sets any alias but champion (which only the gates and --rollback move) on a
registered version. No alias moves while a variant of the experiment serving runs follows
it (read from the impression log, --state): the job says which and exits, or with the gate
keeps the champion and says why; end the experiment first, or pass --force.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from _common import (
    add_config_args,
    add_experiment_args,
    add_guard_args,
    analyse_experiment,
    fail,
    load,
    state_path,
)
from llmrec import console

if TYPE_CHECKING:
    from llmrec.config import Config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_config_args(parser)
    parser.add_argument("--candidate", help="version to consider (default: alias candidate)")
    parser.add_argument("--data", help="evaluate candidate and champion on this data source")
    parser.add_argument("--rollback", action="store_true", help="restore the previous champion")
    parser.add_argument(
        "--alias",
        metavar="NAME",
        help="set this alias (e.g. challenger) on --version; alone: where it points",
    )
    parser.add_argument("--version", metavar="N", help="the registered version for --alias")
    add_experiment_args(parser, required=False)
    add_guard_args(parser, state=False)
    args = parser.parse_args(argv)
    console.setup(args.verbose)
    if args.version is not None and not args.alias:
        fail("--version goes with --alias NAME")
    if args.alias and (args.candidate or args.data or args.rollback or args.experiment):
        fail("--alias does not go with --candidate, --data, --rollback or --experiment")
    cfg = load(args)
    state_path(args)  # an explicit --state that is not there: said now
    with console.report_errors(args.verbose):
        return _promote(cfg, args)


def _promote(cfg: Config, args: argparse.Namespace) -> int:
    from llmrec.registry import aliases
    from llmrec.registry import store as registry
    from llmrec.workflows import promotion

    registry.use_tracking(cfg.registry)
    name = cfg.registry.model_name
    if args.alias:
        return _set_alias(name, args)
    if args.rollback:
        _refuse_if_held(name, aliases.CHAMPION, args)
        demoted, restored = aliases.rollback_champion(name)
        print(f"{name}: champion rolled back from version {demoted} to version {restored}")
        return 0
    if args.experiment:
        return _promote_online(args)
    scores = None
    if args.data:
        scores = _scores_on(cfg, args.data, args.candidate)
    decision = promotion.promotion_gate(cfg.registry, args.candidate, scores, state_path(args))
    print(f"{name}: {decision.reason}")
    print(f"champion is version {aliases.current_champion(name)}")
    return 0


def _set_alias(name: str, args: argparse.Namespace) -> int:
    """``--alias NAME [--version N]``: where the alias points, or point it at version N."""
    from llmrec.registry import aliases
    from llmrec.registry import store as registry

    alias = args.alias
    before = aliases.alias_version(name, alias)
    was = f"version {before}" if before else "not set"
    if args.version is None:
        print(f"{name}: {alias} is {was}")
        return 0
    problem = aliases.alias_problem(alias)
    if problem is not None:
        fail(problem)
    version = registry.require_version(name, args.version).version
    if before == version:
        print(f"{name}: {alias} is already version {version}")
        return 0
    _refuse_if_held(name, alias, args)
    aliases.set_alias(name, alias, version)
    print(f"{name}: {alias} moved from {was} to version {version}")
    return 0


def _refuse_if_held(
    name: str, alias: str, args: argparse.Namespace, allow: str | None = None
) -> None:
    """End the job with the reason when a running experiment's variant follows ``alias``."""
    from llmrec.experiments import guard

    held = guard.experiment_guard(state_path(args), name, alias, allow=allow)
    if held is not None:
        fail(held)


def _promote_online(args: argparse.Namespace) -> int:
    from llmrec.experiments import guard
    from llmrec.registry import aliases

    decision = guard.experiment_gate(analyse_experiment(args))
    if decision.promote and decision.model and decision.version:
        if aliases.current_champion(decision.model) == decision.version:
            print(f"{decision.model}: version {decision.version} is already the champion")
            return 0
        # the experiment decided is free to move it; another one running is not
        _refuse_if_held(decision.model, aliases.CHAMPION, args, allow=args.experiment)
        aliases.set_champion(decision.model, decision.version)
        print(f"{decision.model}: {decision.reason}")
        print(f"champion is version {aliases.current_champion(decision.model)}")
        running = guard.running_experiment(state_path(args))
        if running is not None and running.name == args.experiment:
            print(
                f"experiment {args.experiment} is still running: end it (DELETE "
                "/admin/experiment) or start the next one"
            )
        return 0
    print(f"experiment {args.experiment}: {decision.reason}")
    return 0


def _scores_on(cfg: Config, source: str, candidate: str | None) -> dict[str, float]:
    import tempfile

    from llmrec.data.prepare import load_source, prepare
    from llmrec.data.splits import leave_one_out
    from llmrec.evaluation import offline
    from llmrec.registry import aliases
    from llmrec.registry import store as registry
    from llmrec.registry.bundle import ModelBundle

    name, metric = cfg.registry.model_name, cfg.registry.primary_metric
    split_name, _, measure = metric.partition("_")
    prepared = prepare(
        load_source(source, cfg.data), tempfile.mkdtemp(prefix="llmrec-gate-"), cfg.data.events
    )
    protocol = offline.Protocol.create(
        leave_one_out(prepared.interactions, cfg.data.min_core), prepared.catalogue
    )
    part = protocol.part(split_name)
    versions = [
        candidate or registry.resolve(f"models:/{name}@candidate").version,
        aliases.current_champion(name),
    ]
    scores = {}
    for version in filter(None, versions):
        _, path = registry.download_bundle(f"models:/{name}/{version}")
        bundle = ModelBundle(path)
        towers = bundle.load_towers()
        items = offline.catalogue_vectors(
            towers, bundle.catalogue.ids, bundle.item_embeddings, protocol
        )
        s = offline.user_vectors(towers, part) @ items.T
        scores[version] = offline.evaluate(protocol, part, s)[measure]
        print(f"version {version}: {metric} {scores[version]:.4f} on {source}")
    return scores


if __name__ == "__main__":
    sys.exit(main())
