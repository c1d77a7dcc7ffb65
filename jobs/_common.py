"""What every job shares: the config arguments, quiet logs and joining or starting Ray."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

JOBS_DIR = Path(__file__).resolve().parent
DEFAULT_CONFIG = JOBS_DIR / "configs" / "default.yaml"


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


def quiet() -> None:
    """Offline by default (weights ship in a package) and without progress bars in logs."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("RAY_DATA_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


def init_ray(address: str, num_cpus: int) -> None:
    """Join ``address`` or ``$RAY_ADDRESS`` (``ray job submit``), else start a local Ray."""
    import ray

    if ray.is_initialized():
        return
    target = address or os.environ.get("RAY_ADDRESS", "")
    # Workers import llmrec from the installed package; the job folder rides along for
    # `ray job submit --working-dir .`.
    if target:
        ray.init(address=target, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)
