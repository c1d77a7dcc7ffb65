"""Fine-tune the LLM scorer on Ray and register it in MLflow.

python jobs/finetune.py                                  # demo data, local Ray
python jobs/finetune.py --config jobs/configs/ml100k.yaml --set data.source=../shared/data/ml-100k
RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/finetune.py
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from _common import add_config_args, fail, init_ray, quiet


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
    args = parser.parse_args(argv)
    if args.resume:
        args.overrides.append(f"train.run_name={args.resume}")
    if args.init_from:
        args.overrides.append(f"train.init_from={args.init_from}")
    quiet()
    from llmrec.config import ConfigError, load_config
    from llmrec.data.contract import ContractError
    from llmrec.data.readers import DataSourceError
    from llmrec.registry import ModelNotFoundError
    from llmrec.workflow import IncompatibleInitError

    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as exc:
        fail(str(exc))
    if args.resume:
        run_dir = Path(cfg.train.storage_path) / args.resume
        if "://" not in cfg.train.storage_path and not run_dir.is_dir():
            fail(f"--resume {args.resume}: no such run in {cfg.train.storage_path} ({run_dir})")
    start = time.perf_counter()
    init_ray(cfg.ray.address, cfg.ray.num_cpus)
    from llmrec.workflow import finetune

    try:
        result = finetune(cfg)
    except (ContractError, DataSourceError, ModelNotFoundError, IncompatibleInitError) as exc:
        fail(str(exc))
    v = result.version
    m = result.metrics
    print(f"\nregistered {v.name} version {v.version} (aliases: {', '.join(v.aliases) or 'none'})")
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
    if result.gate is not None:
        print(f"promotion gate: {result.gate.reason}")
    print(f"training {result.train_seconds:.0f} s, whole job {time.perf_counter() - start:.0f} s")
    print(
        "\nnext:\n  serve run serve_deployments:app\n"
        "  curl -s -X POST localhost:8000/recommend -H 'content-type: application/json' "
        '-d \'{"user_id": "u0001", "k": 5}\'\n'
        "  mlflow ui --backend-store-uri sqlite:///mlflow.db"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
