"""What every job shares: the config arguments, the console, and joining or starting Ray."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from llmrec import console

if TYPE_CHECKING:
    from llmrec.config import Config

JOBS_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = JOBS_DIR / "configs" / "default.yaml"


def add_verbose_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="show every library log line, warning and progress bar, and tracebacks",
    )


def add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="YAML config file")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. train.epochs=3",
    )
    add_verbose_arg(parser)


def quiet() -> None:
    """Library chatter off (what :func:`llmrec.console.setup` does without ``--verbose``);
    kept for the benchmarks."""
    console.setup(verbose=False)


def load(args: argparse.Namespace) -> Config:
    """The validated config of ``--config`` and ``--set`` (a one-line error otherwise).
    Imports only the config module: a bad config is reported in about a second."""
    from llmrec.config import ConfigError, load_config

    try:
        return load_config(args.config, args.overrides)
    except ConfigError as exc:
        fail(str(exc))


def init_ray(address: str, num_cpus: int) -> bool:
    """Join ``address`` or ``$RAY_ADDRESS`` (``ray job submit``), else start a local Ray.

    Returns:
        True when an existing cluster was joined (it may grow: an autoscaler can add
        nodes), False when this process started its own.
    """
    import ray

    target = address or os.environ.get("RAY_ADDRESS", "")
    if ray.is_initialized():
        return True
    # Workers import llmrec from the installed package; the job folder rides along for
    # `ray job submit --working-dir .`.
    options = console.ray_init_options()
    if target:
        ray.init(address=target, **options)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, **options)
    return bool(target)


def check_cluster(cfg: Config, joined: bool) -> None:
    """Stop before training when the cluster cannot hold the workers (it would wait forever);
    on a joined cluster, whose autoscaler may add nodes, only warn."""
    import ray

    nodes = [n["Resources"] for n in ray.nodes() if n.get("Alive")]
    problems = cfg.train.resource_problems(nodes)
    if not problems:
        return
    if not joined:
        fail("; ".join(problems) + f" (a local cluster: ray.num_cpus={cfg.ray.num_cpus})")
    for problem in problems:
        print(f"warning: {problem}; waiting for the cluster to grow", flush=True)


def fail(message: str) -> NoReturn:
    console.fail(message)


DEFAULT_STATE = "runs/serve/impressions.sqlite"
STATE_HELP = (
    "the server's impression log (serve setting impression_db), which keeps the running "
    "experiment (default: $LLMREC_IMPRESSION_DB, else impressions.sqlite beside "
    f"$LLMREC_HISTORY_DB, else {DEFAULT_STATE})"
)


def default_state() -> str:
    """Serving's impression log where serving puts it by default: ``$LLMREC_IMPRESSION_DB``,
    else ``impressions.sqlite`` beside ``$LLMREC_HISTORY_DB``, else
    ``runs/serve/impressions.sqlite``."""
    if os.environ.get("LLMREC_IMPRESSION_DB"):
        return os.environ["LLMREC_IMPRESSION_DB"]
    history = os.environ.get("LLMREC_HISTORY_DB")
    return str(Path(history).with_name("impressions.sqlite")) if history else DEFAULT_STATE


def add_guard_args(parser: argparse.ArgumentParser, state: bool = True) -> None:
    """``--state`` (serving's impression log: an alias its running experiment follows is not
    moved) and ``--force`` (move it anyway)."""
    if state:
        parser.add_argument(
            "--state", "--experiment-state", dest="state", metavar="PATH", help=STATE_HELP
        )
    parser.add_argument(
        "--force",
        action="store_true",
        help="move an alias even when a running experiment's variant follows it",
    )


def state_path(args: argparse.Namespace) -> str | None:
    """The impression log whose running experiment guards the aliases (None with
    ``--force``); an explicit ``--state`` must exist."""
    if args.state is not None and not Path(args.state).is_file():
        fail(f"--state {args.state}: no such file (serving's impression_db)")
    if args.force:
        return None
    return default_state() if args.state is None else str(args.state)


def add_experiment_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Where an experiment's log is and how it is judged (the report and promote jobs)."""
    parser.add_argument("--experiment", required=required, help="the online experiment's name")
    parser.add_argument(
        "--state",
        "--experiment-state",
        dest="state",
        metavar="PATH",
        help=STATE_HELP + "; its new rows are exported first",
    )
    parser.add_argument(
        "--impressions",
        default="runs/impressions",
        help="its Parquet segments (serve setting impressions_dir; default: %(default)s)",
    )
    parser.add_argument(
        "--metric", choices=("ctr", "reward_per_user"), default="ctr", help="what decides"
    )
    parser.add_argument(
        "--reward-event",
        action="append",
        default=[],
        help="events whose values add up to a user's reward (default: click)",
    )
    parser.add_argument("--alpha", type=float, default=0.05, help="1 - confidence level")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap draws (0: off)")


def analyse_experiment(args: argparse.Namespace) -> Any:
    """The :class:`llmrec.experiments.Analysis` of ``--experiment`` (one-line error when its
    log holds nothing)."""
    from llmrec.experiments import from_log

    if not 0 < args.alpha < 0.5:
        fail(f"--alpha must be in (0, 0.5), got {args.alpha}")
    try:
        return from_log(
            args.impressions,
            args.experiment,
            args.state or default_state(),
            metric=args.metric,
            reward_events=args.reward_event or ["click"],
            alpha=args.alpha,
            bootstrap=args.bootstrap,
        )
    except ValueError as exc:
        fail(f"{exc} (--state {args.state or default_state()}, --impressions {args.impressions})")
