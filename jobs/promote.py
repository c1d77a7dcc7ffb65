"""Move the `champion` alias when the candidate beats it, or roll it back.

    python jobs/promote.py                       # candidate vs champion on their logged metric
    python jobs/promote.py --data ../shared/data/ml-100k   # evaluate both on the same data now
    python jobs/promote.py --candidate 4 --set registry.promote_margin=0.002
    python jobs/promote.py --rollback            # put the previous champion back
    python jobs/promote.py --experiment ramp-v7  # the challenger of an online experiment

The primary metric (registry.primary_metric, default val_ndcg_at_10) must beat the
champion's by more than registry.promote_margin; otherwise champion stays and the reason is
printed. Logged metrics are compared only when both versions carry the same dataset
fingerprint; --data evaluates both versions on one data set's validation split instead.
With --experiment, the experiment's challenger becomes champion only if it won significantly
(see jobs/experiment_report.py); otherwise the reason is printed.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from _common import add_config_args, add_experiment_args, analyse_experiment, load
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
    add_experiment_args(parser, required=False)
    args = parser.parse_args(argv)
    console.setup(args.verbose)
    cfg = load(args)
    with console.report_errors(args.verbose):
        return _promote(cfg, args)


def _promote(cfg: Config, args: argparse.Namespace) -> int:
    from llmrec import lifecycle, registry

    registry.use_tracking(cfg.registry)
    name = cfg.registry.model_name
    if args.rollback:
        demoted, restored = registry.rollback_champion(name)
        print(f"{name}: champion rolled back from version {demoted} to version {restored}")
        return 0
    if args.experiment:
        return _promote_online(args)
    scores = None
    if args.data:
        scores = _scores_on(cfg, args.data, args.candidate)
    decision = lifecycle.promotion_gate(cfg.registry, args.candidate, scores)
    print(f"{name}: {decision.reason}")
    print(f"champion is version {registry.current_champion(name)}")
    return 0


def _promote_online(args: argparse.Namespace) -> int:
    from llmrec import lifecycle, registry

    decision = lifecycle.experiment_gate(analyse_experiment(args))
    if decision.promote and decision.model and decision.version:
        if registry.current_champion(decision.model) == decision.version:
            print(f"{decision.model}: version {decision.version} is already the champion")
            return 0
        registry.set_champion(decision.model, decision.version)
        print(f"{decision.model}: {decision.reason}")
        print(f"champion is version {registry.current_champion(decision.model)}")
        return 0
    print(f"experiment {args.experiment}: {decision.reason}")
    return 0


def _scores_on(cfg: Config, source: str, candidate: str | None) -> dict[str, float]:
    import tempfile

    from llmrec import registry
    from llmrec.bundle import ModelBundle
    from llmrec.data.prepare import load_source, prepare
    from llmrec.data.splits import leave_one_out
    from llmrec.training import offline

    name, metric = cfg.registry.model_name, cfg.registry.primary_metric
    split_name, _, measure = metric.partition("_")
    prepared = prepare(load_source(source, cfg.data), tempfile.mkdtemp(prefix="llmrec-gate-"))
    protocol = offline.Protocol.create(
        leave_one_out(prepared.interactions, cfg.data.min_core), prepared.catalogue
    )
    part = protocol.part(split_name)
    versions = [
        candidate or registry.resolve(f"models:/{name}@candidate").version,
        registry.current_champion(name),
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
