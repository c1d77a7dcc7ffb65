"""The split written out, for a team to train its own model on and predict with.

:func:`export_split` writes the exact parts this platform evaluates on (training
interactions, validation and test targets, the items masked when ranking each user, the
ranked catalogue, the users scored) in the interaction contract's columns
(:data:`SPLIT_FILES`), so that a team's own SASRec or EASE is trained and asked for
predictions on the same split; :mod:`llmrec.evaluation.predictions` reads those predictions
back and scores them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.data.splits import Split
from llmrec.evaluation.offline import Protocol
from llmrec.evaluation.predictions import PredictionsError

SPLIT_FILES = {
    "train.parquet": "training interactions: each user's interactions before the validation "
    "target, cold items left out; what a model is fitted on for validation",
    "validation.parquet": "one row per user: the validation target (a model fitted for test "
    "sees train + validation, cold items left out)",
    "test.parquet": "one row per user: the test target",
    "masked.parquet": "split, user_id, item_id: the items masked when ranking for that user "
    "and part (their history; the target itself is never masked)",
    "items.parquet": "the ranked catalogue (the items left after k-core filtering), in order: "
    "item_id, title, cold (held out of training entirely)",
    "users.parquet": "user_id, scored (in the --max-users sample, or every user)",
    "split.jsonl": "one JSON line per user: user_id, history (the training part), val, test "
    "(benchmarks/rectools_sasrec.py reads it)",
}


def split_lines(split: Split) -> list[dict[str, object]]:
    """One record per user: ``user_id``, ``history`` (the training part, oldest first),
    ``val`` and ``test`` (the targets), as ``benchmarks/export_split.py`` writes them."""
    val, test = split.part("val"), split.part("test")
    return [
        {"user_id": u, "history": list(h), "val": v, "test": t}
        for u, h, v, t in zip(
            val["user_id"], val["history"], val["target"], test["target"], strict=True
        )
    ]


def _interactions(seq: pd.DataFrame, cut: slice | int) -> pd.DataFrame:
    """The contract's interaction columns of each user's positions ``cut``."""
    if isinstance(cut, int):
        pick = [[s[cut]] for s in seq["items"]]
        take = {c: [[s[cut]] for s in seq[c]] for c in ("timestamps", "values", "queries")}
    else:
        pick = [list(s[cut]) for s in seq["items"]]
        take = {c: [list(s[cut]) for s in seq[c]] for c in ("timestamps", "values", "queries")}
    lengths = [len(p) for p in pick]
    return pd.DataFrame(
        {
            "user_id": np.repeat(seq["user_id"].to_numpy(), lengths),
            "item_id": pd.Series([i for p in pick for i in p], dtype=object),
            "timestamp": np.array([t for p in take["timestamps"] for t in p], dtype=np.int64),
            "value": np.array([v for p in take["values"] for v in p], dtype=np.float32),
            "query": pd.Series([q for p in take["queries"] for q in p], dtype=object),
        }
    )


def export_split(
    protocol: Protocol, out_dir: str | Path, about: Mapping[str, object] | None = None
) -> Path:
    """Write the protocol's split to ``out_dir`` (:data:`SPLIT_FILES`, and ``split.json``:
    the counts, ``about`` and what each file holds); returns the folder."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise PredictionsError(f"{out}: exists and is not a folder (--export-split DIR)")
    out.mkdir(parents=True, exist_ok=True)
    seq = protocol.split.sequences
    cold = set(protocol.cold)
    train = _interactions(seq, slice(None, -2))
    train = train[~train["item_id"].isin(cold)].reset_index(drop=True)
    train.to_parquet(out / "train.parquet", index=False)
    _interactions(seq, -2).to_parquet(out / "validation.parquet", index=False)
    _interactions(seq, -1).to_parquet(out / "test.parquet", index=False)
    masked = []
    for split in ("val", "test"):
        rows = protocol.split.part(split)
        users = np.repeat(rows["user_id"].to_numpy(), rows["history"].map(len).to_numpy())
        items = [i for h in rows["history"] for i in h]
        masked.append(pd.DataFrame({"split": split, "user_id": users, "item_id": items}))
    pd.concat(masked, ignore_index=True).drop_duplicates().to_parquet(
        out / "masked.parquet", index=False
    )
    catalogue = protocol.catalogue
    pd.DataFrame(
        {
            "item_id": list(catalogue.ids),
            "title": [catalogue.items[i].title for i in catalogue.ids],
            "cold": [i in cold for i in catalogue.ids],
        }
    ).to_parquet(out / "items.parquet", index=False)
    scored = set(protocol.scored(protocol.part("test")).rows["user_id"])
    pd.DataFrame(
        {"user_id": seq["user_id"], "scored": [u in scored for u in seq["user_id"]]}
    ).to_parquet(out / "users.parquet", index=False)
    with (out / "split.jsonl").open("w", encoding="utf-8") as f:
        for record in split_lines(protocol.split):
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
    meta = {
        **(about or {}),
        "users": protocol.split.num_users,
        "scored_users": len(scored),
        "max_users": protocol.max_users,
        "seed": protocol.seed,
        "items": len(catalogue),
        "cold_items": len(cold),
        "train_interactions": len(train),
        "files": SPLIT_FILES,
        "predictions": "user_id,item_id,score (higher is better) or user_id,item_id,rank "
        "(1 is best), optionally split (val or test; without it: test); CSV or Parquet; "
        "python jobs/evaluate.py ... --predictions NAME=PATH",
    }
    (out / "split.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    return out


__all__ = ["SPLIT_FILES", "export_split", "split_lines"]
