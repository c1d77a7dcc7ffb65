"""``simulate_traffic.py --in-process --explore SHARE``: exploration measured with simulated
users and new items whose appeal the simulator knows (``llmrec.experiments.exploration_study``).

Runs every seed without and with exploration on the same version (its wide lists ranked once),
prints the table, the in-process answer's p50 with and without exploration, and with
``--update`` runs ``jobs/update.py`` on each arm's logged feedback (first seed) against a copy
of the registry, then ranks the good new items for the users who like them.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from llmrec.config import Config
from llmrec.experiments.exploration import ExploreSettings
from llmrec.experiments.exploration_study import NewItems, TrafficRun, serve_traffic, summary
from llmrec.experiments.inprocess import LocalVersion, rank_requests
from llmrec.experiments.simulation import ClickModel, SimUser


def run(args: argparse.Namespace, cfg: Config, users: list[SimUser]) -> int:
    from llmrec.experiments.exploration_study import new_items
    from llmrec.registry import store as registry

    registry.use_tracking(cfg.registry)
    settings = ExploreSettings(
        pool=args.pool,
        unproven=args.unproven,
        max_impressions=args.max_impressions,
        trained_worth=args.trained_worth,
    )
    work = Path(tempfile.mkdtemp(prefix="llmrec-explore-"))
    from llmrec.serving import ServeSettings

    serve = ServeSettings(  # the ranker's unproven rows: as the explorer counts evidence
        explore_max_impressions=args.max_impressions, explore_trained_worth=args.trained_worth
    )
    base = LocalVersion(args.model, settings=serve)
    good, bad = args.new_items
    news = new_items(users, base.builder.categories, good, bad, seed=args.seed)
    base.add_live(news.items, work / "catalogue.sqlite")
    started = time.perf_counter()
    wide = rank_requests(base, users, args.k, pool=settings.pool, unproven=settings.unproven)
    trained = base.trained() if settings.trained_worth > 0 else None
    print(
        f"{len(news.items)} new items ({len(news.good)} good: twins of "
        f"{', '.join(sorted(news.twins.values()))}; audiences "
        f"{sorted(len(a) for a in news.audience.values())} users); "
        f"wide lists of {args.k}+{settings.pool}+{settings.unproven} unproven ranked in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    runs: dict[float, list[TrafficRun]] = {0.0: [], args.explore: []}
    model = ClickModel(args.noise)
    for seed in range(args.seeds):
        for share in runs:
            runs[share].append(
                serve_traffic(
                    wide, users, news, share, seed, settings, args.k, args.rounds,
                    args.appeal, model, trained=trained,
                )
            )  # fmt: skip
        print(f"seed {seed}: CTR {runs[0.0][-1].ctr:.4f} / {runs[args.explore][-1].ctr:.4f}")
    rows = summary(runs[0.0], runs[args.explore])
    rows.append(_latency(base, users, args, settings, runs[args.explore][0], trained))
    if args.update:
        rows += _update(args, cfg, users, news, work, base, runs[0.0][0], runs[args.explore][0])
    print(f"\n| measure | without exploration | with exploration ({args.explore:g}) |")
    print("|---|---|---|")
    for name, off, on in rows:
        print(f"| {name} | {off} | {on} |")
    shutil.rmtree(work, ignore_errors=True)
    return 0


def _latency(
    local: LocalVersion,
    users: list[SimUser],
    args: argparse.Namespace,
    settings: ExploreSettings,
    explored: TrafficRun,
    trained: dict[str, int] | None,
) -> tuple[str, str, str]:
    """p50 of one answer in process (query, encoder, ranker; with exploration also the
    wider list and unproven items, the impression log's evidence in SQLite, the training
    counts and the draws), interleaved."""
    from llmrec.experiments.exploration import explore, explore_key, with_trained
    from llmrec.experiments.impressions import ImpressionLog

    with tempfile.TemporaryDirectory() as tmp:
        log = ImpressionLog(Path(tmp) / "log.sqlite", Path(tmp) / "segments")
        log.record(explored.impressions)
        log.record_events(explored.attributed)
        times: dict[bool, list[float]] = {False: [], True: []}
        for u in users[: args.latency_users]:
            for on in (False, True):
                t = time.perf_counter()
                q = local.query(u, 0, args.k, *((settings.pool, settings.unproven) if on else ()))
                items = local.rank([q])[0]
                if on:
                    ids = [i.item_id for i in items]
                    evidence = log.evidence(ids)
                    if trained is not None:
                        evidence = with_trained(evidence, ids, trained)
                    scores = np.array([i.score for i in items])
                    explore(
                        scores, args.k, args.explore, evidence, explore_key(u.user_id, ""), settings
                    )
                times[on].append(1000 * (time.perf_counter() - t))
    p50 = {on: float(np.median(v)) for on, v in times.items()}
    return (
        f"p50 of one answer in process, ms ({len(times[False])} requests, interleaved)",
        f"{p50[False]:.1f}",
        f"{p50[True]:.1f} ({p50[True] - p50[False]:+.1f})",
    )


def _update(
    args: argparse.Namespace,
    cfg: Config,
    users: list[SimUser],
    news: NewItems,
    work: Path,
    local: LocalVersion,
    *arms: TrafficRun,
) -> list[tuple[str, str, str]]:
    """jobs/update.py on each arm's feedback (a copy of the registry, the base version as
    its champion), then each good new item's rank for the users who like it."""
    import mlflow
    from llmrec.registry import store as registry
    from llmrec.serving.history import FeedbackLog

    store = work / "registry"
    store.mkdir()
    db = Path(cfg.registry.resolved_tracking_uri().removeprefix("sqlite:///"))
    shutil.copy(db, store / "mlflow.db")
    uri = f"sqlite:///{store / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    base = registry.resolve(args.model)
    mlflow.MlflowClient().set_registered_model_alias(base.name, "champion", base.version)
    ranks: list[list[float]] = [_ranks(args, users, news, local)]
    for arm in arms:
        folder = work / f"feedback-{arm.share:g}"
        FeedbackLog(folder).append(arm.events)
        started = time.perf_counter()
        subprocess.run(
            [
                sys.executable, "jobs/update.py", "--config", args.config, *_sets(args),
                "--set", f"registry.tracking_uri={uri}",
                "--set", "registry.experiment=explore-study",
                "--set", f"registry.artifact_location={store / 'artifacts'}",
                "--set", f"update.feedback_dir={folder}",
                "--set", f"update.catalogue_db={work / 'catalogue.sqlite'}",
            ],
            check=True,
        )  # fmt: skip
        newest = max(int(v.version) for v in mlflow.MlflowClient().search_model_versions(
            f"name = '{base.name}'"))  # fmt: skip
        print(f"update on share={arm.share:g}: version {newest}, "
              f"{time.perf_counter() - started:.0f} s", flush=True)  # fmt: skip
        ranks.append(_ranks(args, users, news, LocalVersion(f"models:/{base.name}/{newest}")))
    before, off, on = (_describe(r, args.rank_depth or local.ranker.num_items) for r in ranks)
    return [
        (f"good new items' rank for users who like them, before any update: {before}; "
         "after jobs/update.py on the run's feedback (first seed)", off, on),
    ]  # fmt: skip


def _sets(args: argparse.Namespace) -> list[str]:
    return [x for s in args.overrides for x in ("--set", s)]


def _ranks(
    args: argparse.Namespace, users: list[SimUser], news: NewItems, local: LocalVersion
) -> list[float]:
    """Each good new item's rank (1 = the top; inf below ``rank_depth``; 0: the whole
    catalogue is ranked) in the first request of up to ``rank_users`` of the users who like
    it."""
    by_id = {u.user_id: u for u in users}
    out: list[float] = []
    for item, fans in sorted(news.audience.items()):
        chosen = sorted(fans)[: args.rank_users]
        depth = args.rank_depth or local.ranker.num_items
        queries = [local.query(by_id[f], 0, 1, depth - 1) for f in chosen]
        for items in local.rank(queries):
            ids = [i.item_id for i in items]
            out.append(ids.index(item) + 1 if item in ids else np.inf)
    return out


def _describe(ranks: list[float], depth: int) -> str:
    values = np.array(ranks)
    middle = np.median(values)
    text = f"{middle:.0f}" if np.isfinite(middle) else f"> {depth}"
    top10, top100 = float(np.mean(values <= 10)), float(np.mean(values <= 100))
    return (
        f"median {text}, top 10 for {top10:.1%}, top 100 for {top100:.1%} "
        f"({len(values)} user-item pairs)"
    )


def add_args(parser: Any) -> None:
    """The exploration study's options."""
    parser.add_argument("--explore", type=float, help="in process: exploration study, this share")
    parser.add_argument("--model", default="models:/llmrec-scorer-ml100k/4")
    parser.add_argument("--new-items", type=int, nargs=2, default=[5, 5], metavar=("GOOD", "BAD"))
    parser.add_argument("--pool", type=int, default=200, help="exploration pool beyond k")
    parser.add_argument("--unproven", type=int, default=50, help="best unproven items offered")
    parser.add_argument("--max-impressions", type=int, default=300, help="explored below this")
    parser.add_argument("--trained-worth", type=float, default=100.0, help="per training use")
    parser.add_argument("--rounds", type=int, default=1, help="arrivals of every user per run")
    parser.add_argument("--appeal", type=float, default=0.5, help="good item: click chance")
    parser.add_argument("--latency-users", type=int, default=200)
    parser.add_argument("--update", action="store_true", help="run jobs/update.py on each arm")
    parser.add_argument("--rank-users", type=int, default=30)
    parser.add_argument("--rank-depth", type=int, default=0, help="0: the whole catalogue")
