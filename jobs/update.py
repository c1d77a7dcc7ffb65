"""Update the champion with what happened since its data: feedback, new logs, new items.

python jobs/update.py                              # feedback folder + live items since the cut-off
python jobs/update.py --data path/or/s3://new-logs --items new_items.parquet
RAY_AUTH_MODE=token ray job submit --working-dir . -- python jobs/update.py \\
    --set update.auto_promote=true

The champion's lineage tags say what it was trained on and until when; the events after
that cut-off (its sources read again, serving's feedback folder, --data) are the new data,
the items no earlier version had (--items, the items added live) the new catalogue rows.
Nothing new: says so and registers nothing. Otherwise the champion is fine-tuned on the new
interactions mixed with replayed older ones (update.replay_ratio, update.epochs), the
newest update.holdout share held back to compare candidate and champion on; the candidate
is registered with its lineage (parent_version, data_window_start/end, update_strategy)
and the comparison in its card; update.auto_promote=true runs the promotion gate on it.
While a variant of the experiment serving runs (read from its impression log, --state)
follows champion, the gate does not move champion and says so (--force: it may).
"""

from __future__ import annotations

import argparse
import sys
import time

from _common import add_config_args, add_guard_args, check_cluster, init_ray, load, state_path
from llmrec import console


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    add_config_args(parser)
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="SOURCE",
        help="new interaction logs: a contract or MovieLens folder, or Parquet/CSV rows\n"
        "(repeatable; local paths or URIs)",
    )
    parser.add_argument(
        "--items",
        action="append",
        default=[],
        metavar="SOURCE",
        help="new or changed catalogue rows in the item contract (repeatable)",
    )
    add_guard_args(parser)
    args = parser.parse_args(argv)
    console.setup(args.verbose)
    cfg = load(args)  # before torch, Ray and MLflow are imported: config errors come fast
    state = state_path(args)
    start = time.perf_counter()
    with console.report_errors(args.verbose):
        from llmrec.workflows.update import learn
        from llmrec.workflows.update_plan import plan

        planned = plan(cfg, args.data, args.items)
        if isinstance(planned, str):
            print(f"\n{planned}")
            return 0
        check_cluster(planned[0], init_ray(cfg.ray.address, cfg.ray.num_cpus))
        result = learn(cfg, *planned, experiment_state=state)
    print(f"\n{result.message}")
    for who, m in result.comparison.items():
        print(
            f"{who:>9}: held-back NDCG@10 {m['hybrid_ndcg_at_10']:.4f} (hybrid), "
            f"{m['llm_ndcg_at_10']:.4f} (LLM alone), HR@10 {m['hybrid_hr_at_10']:.4f}"
        )
    if result.gate is not None:
        print(f"promotion gate: {result.gate.reason}")
    print(f"training {result.train_seconds:.0f} s, whole job {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
