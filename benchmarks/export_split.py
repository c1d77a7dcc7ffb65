"""Write a data set's evaluation split as JSON lines, for a library run in its own environment.

    python benchmarks/export_split.py --config jobs/configs/games.yaml --out runs/split-games.jsonl

One line per user: ``user_id``, ``history`` (the training part, oldest first), ``val`` (the
validation target) and ``test`` (the test target), the item ids of the EVALUATION.md split
this platform evaluates on (5-core, sorted by time then item id, leave-one-out). A library
with pins that clash with this project's (RecTools pins numpy < 2) reads this file and is
measured on exactly the same split (``benchmarks/rectools_sasrec.py``).

The records come from ``llmrec.evaluation.split_export.split_lines``; ``jobs/evaluate.py
--export-split DIR`` writes the same file as ``DIR/split.jsonl`` beside the split's parts in
the interaction contract's columns (docs/evaluation.md, "Comparing with what you have").
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))
from _common import add_config_args, load, quiet


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_config_args(parser)
    parser.add_argument("--out", required=True, help="the JSON lines file to write")
    args = parser.parse_args(argv)
    quiet()
    cfg = load(args)
    from llmrec.data.prepare import load_source, prepare
    from llmrec.data.splits import leave_one_out
    from llmrec.evaluation.split_export import split_lines

    prepared = prepare(
        load_source(cfg.data.source, cfg.data),
        tempfile.mkdtemp(prefix="llmrec-split-"),
        cfg.data.events,
    )
    split = leave_one_out(prepared.interactions, cfg.data.min_core)
    records = split_lines(split)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for row in records:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"{cfg.data.source}: {len(records)} users, {len(split.item_ids())} items -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
