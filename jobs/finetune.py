"""Fine-tune the LLM scorer on Ray and register it in MLflow.

python jobs/finetune.py                                  # demo data, local Ray
python jobs/finetune.py --config jobs/configs/ml100k.yaml --set data.source=../shared/data/ml-100k
RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/finetune.py
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import add_config_args, fail, init_ray, quiet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_config_args(parser)
    args = parser.parse_args(argv)
    quiet()
    from llmrec.config import ConfigError, load_config
    from llmrec.data.contract import ContractError
    from llmrec.data.readers import DataSourceError

    try:
        cfg = load_config(args.config, args.overrides)
    except (ConfigError, FileNotFoundError) as exc:
        fail(str(exc))
    start = time.perf_counter()
    init_ray(cfg.ray.address, cfg.ray.num_cpus)
    from llmrec.workflow import finetune

    try:
        result = finetune(cfg)
    except (ContractError, DataSourceError) as exc:
        fail(str(exc))
    v = result.version
    m = result.metrics
    print(f"\nregistered {v.name} version {v.version} (aliases: {', '.join(v.aliases) or 'none'})")
    print(
        f"validation: HR@10 {m['val_hr_at_10']:.4f}  NDCG@10 {m['val_ndcg_at_10']:.4f}  "
        f"test: HR@10 {m['test_hr_at_10']:.4f}  NDCG@10 {m['test_ndcg_at_10']:.4f}"
    )
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
