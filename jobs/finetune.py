"""Fine-tune the LLM scorer on Ray and register it in MLflow.

python jobs/finetune.py                                  # demo data, local Ray
python jobs/finetune.py --config jobs/configs/ml100k.yaml --set data.source=path/to/ml-100k
RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/finetune.py
python jobs/finetune.py --alias challenger               # the new version becomes the challenger

The new version is registered as candidate; --alias also points another alias at it (not
champion: python jobs/promote.py). An alias that a running experiment's variant follows
(serving's impression log, --state) is not moved: checked before training and again after
it (--force: moved anyway).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    add_config_args,
    add_guard_args,
    check_cluster,
    fail,
    init_ray,
    load,
    state_path,
)
from llmrec import console


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_config_args(parser)
    parser.add_argument(
        "--resume",
        metavar="RUN_NAME",
        help="continue a stopped run from its last checkpoint in train.storage_path",
    )
    parser.add_argument(
        "--init-from",
        metavar="MODEL_URI",
        help="start from a registered adapter (sets train.init_from)",
    )
    parser.add_argument(
        "--alias",
        metavar="NAME",
        help="also point this alias (e.g. challenger) at the new version",
    )
    add_guard_args(parser)
    args = parser.parse_args(argv)
    if args.resume:
        args.overrides.append(f"train.run_name={args.resume}")
    if args.init_from:
        args.overrides.append(f"train.init_from={args.init_from}")
    console.setup(args.verbose)
    cfg = load(args)  # before torch, Ray and MLflow are imported: config errors come fast
    if args.resume:
        run_dir = Path(cfg.train.storage_path) / args.resume
        if "://" not in cfg.train.storage_path and not run_dir.is_dir():
            fail(f"--resume {args.resume}: no such run in {cfg.train.storage_path} ({run_dir})")
    state = state_path(args)
    start = time.perf_counter()
    moved, refused = None, None
    with console.report_errors(args.verbose):
        if args.alias:  # before hours of training
            _check_alias(cfg.registry.model_name, args.alias, state)
        check_cluster(cfg, init_ray(cfg.ray.address, cfg.ray.num_cpus))
        from llmrec.workflows.finetune import finetune

        result = finetune(cfg, experiment_state=state)
        v = result.version
        if args.alias:
            moved, refused = _set_alias(v, args.alias, state)
            from llmrec.registry import store as registry

            v = registry.get_version(v.name, v.version, v.run_id)
    m = result.metrics
    print(f"\nregistered {v.name} version {v.version} (aliases: {', '.join(v.aliases) or 'none'})")
    if moved is not None:
        print(moved)
    for label, prefix in (("LLM", ""), ("hybrid", "hybrid_")):
        if f"{prefix}val_ndcg_at_10" not in m:
            continue
        print(
            f"{label:>6}: validation HR@10 {m[prefix + 'val_hr_at_10']:.4f}  "
            f"NDCG@10 {m[prefix + 'val_ndcg_at_10']:.4f}  test HR@10 "
            f"{m[prefix + 'test_hr_at_10']:.4f}  NDCG@10 {m[prefix + 'test_ndcg_at_10']:.4f}"
            + (
                f"  cold-start test HR@10 {m[prefix + 'test_cold_hr_at_10']:.4f}"
                if prefix + "test_cold_hr_at_10" in m
                else ""
            )
        )
    if result.comparison is not None:
        print(verdict(result.comparison))
    if result.gate is not None:
        print(f"promotion gate: {result.gate.reason}")
    print(f"training {result.train_seconds:.0f} s, whole job {time.perf_counter() - start:.0f} s")
    print(
        "\nnext:\n  serve run serve_deployments:app\n"
        "  curl -s -X POST localhost:8000/recommend -H 'content-type: application/json' "
        '-d \'{"user_id": "u0001", "k": 5}\'\n'
        "  mlflow ui --backend-store-uri sqlite:///mlflow.db"
    )
    if refused is not None:
        fail(refused)
    return 0


def _check_alias(model: str, alias: str, state: str | None) -> None:
    """``--alias`` before training: a name that may be set, and not held by an experiment."""
    from llmrec.experiments import guard
    from llmrec.registry import aliases

    problem = aliases.alias_problem(alias)
    if problem is not None:
        fail(f"--alias: {problem}")
    held = guard.experiment_guard(state, model, alias)
    if held is not None:
        fail(f"--alias: {held}, or train without --alias")


def _set_alias(version: Any, alias: str, state: str | None) -> tuple[str | None, str | None]:
    """Point ``alias`` at the new version: (what it pointed at before and now, None), or
    (None, why not) when a running experiment holds it (the version stays registered)."""
    from llmrec.experiments import guard
    from llmrec.registry import aliases

    held = guard.experiment_guard(state, version.name, alias)
    if held is not None:
        return None, (
            f"{held}; version {version.version} is registered: later, python jobs/promote.py "
            f"--alias {alias} --version {version.version}"
        )
    before = aliases.set_alias(version.name, alias, version.version)
    if before == version.version:  # --alias candidate: registration moved it already
        return f"{version.name}: {alias} is version {before}", None
    was = f"version {before}" if before else "not set"
    return f"{version.name}: {alias} moved from {was} to version {version.version}", None


def verdict(compared: Any) -> str:
    """One line: the strongest baseline on test, and the model and the hybrid against it."""
    ours = compared[compared["x best baseline"] != ""]
    others = compared[compared["x best baseline"] == ""]
    if others.empty:
        return "no baseline to compare with"
    best = others.iloc[0]
    parts = [f"{r['method']} {float(r['x best baseline']):.2f}x" for _, r in ours.iterrows()]
    return (
        f"strongest baseline on test: {best['method']} (NDCG@10 {best['test NDCG@10']:.4f}); "
        + ", ".join(parts)
    )


if __name__ == "__main__":
    sys.exit(main())
