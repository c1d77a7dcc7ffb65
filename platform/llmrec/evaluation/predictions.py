"""Comparing with what a team has: another model's predictions read back and scored on the
split :func:`llmrec.evaluation.split_export.export_split` wrote out.

:func:`read_predictions` reads what it predicted (CSV or Parquet, ``user_id, item_id, score``
or ``user_id, item_id, rank``, optionally ``split``), and :func:`score_predictions` scores it
with the same protocol and masking as the baselines, one table row per split part: users
without a list count as misses (``missing_users``), items outside the ranked catalogue are
dropped and reported, items the user had seen are masked like ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from llmrec.evaluation.metrics import ranking_metrics, target_ranks, top_k_lists
from llmrec.evaluation.offline import MARKOV_LABEL, EvalPart, Protocol, list_metrics
from llmrec.modeling.baselines import interaction_matrix

PARTS = {"val": "val", "validation": "val", "test": "test"}
"""Values of a predictions file's ``split`` column and the part each names."""
K = 10
"""Length of the lists the beyond-accuracy measures read."""
BLOCK = 512
"""Users whose predictions are laid out as one dense ``[users, items]`` block at a time."""
RESERVED = ("popularity", "itemknn", MARKOV_LABEL, "ease + popularity")


class PredictionsError(ValueError):
    """A predictions file is unreadable or malformed; the message names the file and, where
    one is at fault, the column, the row and the value."""


@dataclass(frozen=True)
class Predictions:
    """One predictions file, read: per split part, rows of ``user_id``, ``item_id`` and
    ``value`` (higher is better: the score, or minus the rank) with their ``line`` in the
    file."""

    name: str
    path: str
    by: str
    """``score`` or ``rank``: what orders each user's items."""
    parts: dict[str, pd.DataFrame] = field(repr=False)


def check_name(name: str) -> str:
    """``name`` as a table label for predictions (stripped).

    Raises:
        PredictionsError: empty, or the label of a method the table computes itself.
    """
    label = name.strip()
    if not label:
        raise PredictionsError("--predictions takes NAME=PATH, e.g. sasrec=runs/sasrec.csv")
    if label in RESERVED or label.startswith(("llm ", "hybrid ", "cf ")) or "(" in label:
        raise PredictionsError(
            f"--predictions name {label!r} is (or looks like) the label of a method the table "
            "computes itself: choose another, e.g. 'our-sasrec'"
        )
    return label


def _read_table(path: Path) -> tuple[pd.DataFrame, str]:
    """The file as strings and numbers, and how its rows are named (``line`` or ``row``)."""
    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path), "row"
        if name.endswith((".csv", ".csv.gz", ".tsv", ".tsv.gz")):
            sep = "\t" if ".tsv" in name else ","
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False), "line"
    except Exception as exc:  # a parser's own words: which line, which byte
        kind = "Parquet" if name.endswith((".parquet", ".pq")) else "CSV"
        raise PredictionsError(f"{path}: cannot be read as {kind}: {exc}") from exc
    raise PredictionsError(
        f"{path}: unknown file type (expected .csv, .tsv or .parquet, optionally .csv.gz)"
    )


def _where(how: str, i: int) -> str:
    return f"line {i + 2}" if how == "line" else f"row {i + 1}"  # CSV line 1: the header


def _ids(path: Path, how: str, col: pd.Series, name: str) -> pd.Series:
    """A column of ids as stripped strings (integers as their decimal string)."""
    if pd.api.types.is_float_dtype(col):  # integer ids with a gap read back as floats
        whole = col.dropna()
        if (whole == np.floor(whole)).all():
            col = col.astype("Int64")
    bad = col.isna()
    out = col.astype(str).str.strip()
    bad |= out == ""
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise PredictionsError(f"{path}: column {name!r}, {_where(how, i)}: empty value")
    return out


def _numbers(path: Path, how: str, col: pd.Series, name: str) -> np.ndarray:
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise PredictionsError(
            f"{path}: column {name!r}, {_where(how, i)}: {col.iloc[i]!r} is not a finite number"
        )
    return values


def read_predictions(name: str, path: str | Path) -> Predictions:
    """Read a predictions file: ``user_id``, ``item_id`` and ``score`` (higher is better) or
    ``rank`` (lower is better; with both, ``score`` is used), one row per user and item; an
    optional ``split`` column (``val``/``validation`` or ``test``) says which part a row
    predicts, without it every row is a test prediction. Top lists of any length, or every
    item. CSV (``.csv``, ``.tsv``, gzipped or not) or Parquet.

    Raises:
        PredictionsError: no such file, an unknown type, a missing column, an empty id, a
            score that is not a finite number, an unknown split, a repeated user and item.
    """
    label = check_name(name)
    p = Path(path)
    if not p.is_file():
        raise PredictionsError(f"{p}: no such file (--predictions {label}={path})")
    df, how = _read_table(p)
    df = df.rename(columns={c: str(c).strip() for c in df.columns})
    has = ", ".join(map(str, df.columns)) or "none"
    expected = "user_id, item_id, and score (higher is better) or rank (1 is best)"
    for column in ("user_id", "item_id"):
        if column not in df.columns:
            raise PredictionsError(
                f"{p}: no column {column!r} (it has: {has}); expected {expected}, optionally split"
            )
    by = "score" if "score" in df.columns else "rank" if "rank" in df.columns else ""
    if not by:
        raise PredictionsError(
            f"{p}: no column 'score' or 'rank' (it has: {has}); expected {expected}"
        )
    if df.empty:
        raise PredictionsError(f"{p}: no rows")
    users = _ids(p, how, df["user_id"], "user_id")
    items = _ids(p, how, df["item_id"], "item_id")
    values = _numbers(p, how, df[by], by)
    if "split" in df.columns:
        raw = df["split"].astype(str).str.strip()
        parts = raw.str.lower().map(PARTS)
        if parts.isna().any():
            i = int(np.flatnonzero(parts.isna().to_numpy())[0])
            raise PredictionsError(
                f"{p}: column 'split', {_where(how, i)}: {raw.iloc[i]!r} is not one of "
                f"{', '.join(PARTS)}"
            )
    else:
        parts = pd.Series("test", index=df.index)
    rows = pd.DataFrame(
        {
            "part": parts.to_numpy(),
            "user_id": users.to_numpy(),
            "item_id": items.to_numpy(),
            "value": values if by == "score" else -values,
            "line": np.arange(len(df)),
        }
    )
    key = ["part", "user_id", "item_id"]
    repeated = rows.duplicated(key, keep="first")
    if repeated.any():
        second = rows[repeated].iloc[0]
        same = (rows[key] == second[key]).all(axis=1)
        first = rows[same].iloc[0]
        raise PredictionsError(
            f"{p}: {_where(how, second.line)} repeats user {second.user_id!r} and item "
            f"{second.item_id!r} of {_where(how, first.line)} (one row per user and item"
            + (" and split)" if "split" in df.columns else ")")
        )
    found = {
        part: g.drop(columns="part").reset_index(drop=True) for part, g in rows.groupby("part")
    }
    return Predictions(label, str(path), by, found)


@dataclass
class Scored:
    """What scoring a predictions file on the protocol gave."""

    rows: list[dict[str, object]]
    """Table rows: ``val``, ``test``, ``test_cold`` (those the file has), with
    ``missing_users``."""
    ranks: dict[str, np.ndarray]
    """Per part, the 0-based rank of each scored user's target (misses ranked last)."""
    notes: list[str]


def _count(k: int, word: str) -> str:
    return f"{k:,} {word}" + ("" if k == 1 else "s")


def _ranked(
    part: EvalPart, num_items: int, users: np.ndarray, items: np.ndarray, values: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's target rank and top-K list, exactly as the protocol ranks a score matrix:
    the listed items by their values (ties kept), every unlisted item below them all."""
    n = len(part.targets)
    k = min(K, num_items)
    order = np.argsort(users, kind="stable")
    users, items, values = users[order], items[order], values[order]
    ranks = np.empty(n, dtype=np.int64)
    top = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        lo, hi = np.searchsorted(users, [start, stop])
        block = np.zeros((stop - start, num_items), dtype=np.float32)
        block[users[lo:hi] - start, items[lo:hi]] = values[lo:hi]
        masked = part.histories[start:stop]
        ranks[start:stop] = target_ranks(block, part.targets[start:stop], masked)
        top[start:stop] = top_k_lists(block, masked, k)
    return ranks, top


def _row(
    protocol: Protocol,
    part: EvalPart,
    split: str,
    name: str,
    ranks: np.ndarray,
    top: np.ndarray,
    full: np.ndarray,
    missing: int,
) -> dict[str, object]:
    """A table row: accuracy over every user of ``part``, the list measures over the users
    whose list is full (``full``)."""
    row: dict[str, object] = {"method": name, "split": split, **ranking_metrics(ranks)}
    users = np.flatnonzero(full)
    if len(users):
        row |= list_metrics(protocol, part, top[users], users=users)
    row["missing_users"] = missing
    return row


def score_predictions(protocol: Protocol, preds: Predictions) -> Scored:
    """Score ``preds`` on the protocol's scored users (all, or its seeded sample): a user's
    listed items are ranked by their values (ties count against the target), every other item
    below them, the user's history masked (the target never); a user without a list ranks
    the target last (a miss). The list measures read the users whose list holds at least
    :data:`K` rankable items. Rows of users outside the split, of items outside the ranked
    catalogue and of seen items are counted in the notes."""
    n = len(protocol.catalogue)
    index = protocol.catalogue.index
    known_users = set(protocol.split.sequences["user_id"])
    rows: list[dict[str, object]] = []
    ranks_by_part: dict[str, np.ndarray] = {}
    notes = []
    head = f"{preds.name} ({preds.path}, by {preds.by})"
    for split, word in (("val", "validation"), ("test", "test")):
        if split not in preds.parts:
            why = "no split column: every row is a test prediction" if split == "val" else ""
            notes.append(f"{head}, {word}: no rows" + (f" ({why})" if why else ""))
            continue
        df = preds.parts[split]
        full_part = protocol.part(split)
        part = protocol.scored(full_part)
        position = {u: i for i, u in enumerate(part.rows["user_id"])}
        row_of = df["user_id"].map(position)
        col_of = df["item_id"].map(index)
        outside = ~df["user_id"].isin(known_users)
        in_sample = row_of.notna()
        unknown = in_sample & col_of.isna()
        keep = (in_sample & col_of.notna()).to_numpy()
        users = row_of[keep].to_numpy(dtype=np.int64)
        items = col_of[keep].to_numpy(dtype=np.int64)
        # order kept, ties kept, exact in float32: each user's values as dense ranks from 1
        dense = (
            pd.Series(df["value"].to_numpy()[keep])
            .groupby(users)
            .rank(method="dense")
            .to_numpy(dtype=np.float32)
        )
        ranks, top = _ranked(part, n, users, items, dense)
        seen = np.zeros(len(users), dtype=bool)
        if len(users):
            history = interaction_matrix(part.histories, n)
            seen = np.asarray(history[users, items]).ravel() > 0
            seen &= items != part.targets[users]
        rankable = np.bincount(users[~seen], minlength=len(part.targets))
        listed = np.bincount(users, minlength=len(part.targets)) > 0
        full = rankable >= min(K, n)
        rows.append(_row(protocol, part, split, preds.name, ranks, top, full, int((~listed).sum())))
        if split == "test" and len(part.cold_rows):
            cold = part.subset(part.cold_rows, "test_cold")
            c = part.cold_rows
            warm = np.setdiff1d(np.flatnonzero(full), c)
            cold_items = np.array([index[i] for i in protocol.cold if i in index], dtype=np.int64)
            row = _row(
                protocol, cold, "test_cold", preds.name, ranks[c], top[c], full[c],
                int((~listed[c]).sum()),
            )  # fmt: skip
            row["cold_share"] = float(np.isin(top[warm], cold_items).mean()) if len(warm) else 0.0
            rows.append(row)
        ranks_by_part[split] = ranks
        total = len(part.targets)
        line = [
            f"{head}, {word}: {int(listed.sum()):,} of {total:,} users scored with a list, "
            f"{int((~listed).sum()):,} missing (counted as misses)"
        ]
        if unknown.any():
            examples = ", ".join(repr(i) for i in df.loc[unknown, "item_id"].unique()[:3])
            line.append(
                f"{_count(int(unknown.sum()), 'row')} of "
                f"{_count(df.loc[unknown, 'item_id'].nunique(), 'item')} outside the ranked "
                f"catalogue dropped (e.g. {examples})"
            )
        if seen.any():
            line.append(f"{_count(int(seen.sum()), 'row')} of items the user had seen masked")
        short = int((listed & ~full).sum())
        if short:
            line.append(
                f"{_count(short, 'user')} with fewer than {min(K, n)} rankable items (in the "
                "accuracy, left out of the list measures)"
            )
        if outside.any():
            users_out = _count(df.loc[outside, "user_id"].nunique(), "user")
            line.append(f"rows of {users_out} not in the split ignored")
        if total < len(full_part.targets):
            off = df["user_id"].isin(set(full_part.rows["user_id"])) & ~in_sample
            if off.any():
                users_off = _count(df.loc[off, "user_id"].nunique(), "user")
                line.append(f"rows of {users_off} outside the --max-users sample ignored")
        notes.append("; ".join(line))
    return Scored(rows, ranks_by_part, notes)


def missing_column(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with ``missing_users`` an integer column (0 where a method scores every
    user), when any row has it."""
    if "missing_users" not in table.columns:
        return table
    return table.assign(missing_users=table["missing_users"].fillna(0).astype(np.int64))


__all__ = [
    "PARTS",
    "Predictions",
    "PredictionsError",
    "Scored",
    "check_name",
    "missing_column",
    "read_predictions",
    "score_predictions",
]
