"""From a source (demo, contract files, MovieLens) to validated contract Parquet and splits.

This is the one entry for data: every run reads its source here, checks it against the
contract, writes the clean tables and the rejected rows, and splits the interactions.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from llmrec.config import DataConfig
from llmrec.data.catalogue import Catalogue
from llmrec.data.contract import (
    REJECTED_ROW,
    REJECTED_SOURCE,
    Checked,
    ContractError,
    DataError,
    check_interactions,
    check_items,
    check_users,
)
from llmrec.data.demo import generate_demo
from llmrec.data.events import NEGATIVES_SCHEMA, EventSplit, split_events
from llmrec.data.files import Read
from llmrec.data.readers import RawData, is_movielens, read_contract_folder, read_movielens
from llmrec.data.splits import Split, drop_items, hold_out_items, leave_one_out

UNPARSABLE = "unparsable_row"
"""Reason of a CSV row that could not be split into the header's fields."""
REJECTED_TEXT = "rejected_text"
"""Column of the raw text of an unparsable CSV row in ``rejected/``."""


@dataclass
class Prepared:
    """Clean tables on disk, what was set aside, and the split.

    ``interactions`` are what training reads: the validated rows whose event is trained on
    as a positive (``data.events``, :mod:`llmrec.data.events`); ``interactions.parquet`` on
    disk keeps every validated row, whatever its event."""

    out_dir: Path
    interactions: pa.Table
    items: pa.Table
    rejected: dict[str, dict[str, int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    read: dict[str, int] = field(default_factory=dict)
    users: pa.Table | None = None
    """The optional user table (``user_id`` + attributes), when the source has one."""
    events: EventSplit | None = None
    """What the event policy did with the validated rows (None: every row is positive)."""
    columns: list[str] = field(default_factory=list)
    """One line per contract file: which column fed which contract column, which were
    ignored (:meth:`llmrec.data.columns.ColumnUse.line`)."""

    @property
    def catalogue(self) -> Catalogue:
        return Catalogue.from_table(self.items)

    @property
    def negatives(self) -> pa.Table:
        """The negative (user, item) pairs (:data:`llmrec.data.events.NEGATIVES_SCHEMA`)."""
        return self.events.negatives if self.events else NEGATIVES_SCHEMA.empty_table()

    def summary(self) -> str:
        """Human-readable: what each file's columns were used for, counts of rows read,
        kept and rejected, what the event policy did with the kept rows, and the readers'
        notes."""
        valid = self.events.rows if self.events else self.interactions.num_rows
        kept = {"items": self.items.num_rows, "interactions": valid}
        if self.users is not None:
            kept["users"] = self.users.num_rows
        lines = [
            *self.columns,
            ", ".join(
                f"{name}: {n} kept" + (f" of {self.read[name]} read" if name in self.read else "")
                for name, n in kept.items()
            ),
        ]
        if self.events is not None:
            lines.append(self.events.describe())
        for table, counts in self.rejected.items():
            for reason, n in sorted(counts.items()):
                lines.append(f"rejected {table}: {n} x {reason}")
        if any(self.rejected.values()):
            lines.append(f"rejected rows written to {self.out_dir / 'rejected'}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def load_source(source: str, demo: DataConfig | None = None, lenient: bool = False) -> RawData:
    """Read ``demo``, ``movielens:PATH``, a MovieLens folder/zip, or a contract folder (its
    columns mapped by ``data.columns``; with the items made opaque when
    ``data.opaque_items`` says so).

    Raises:
        DataSourceError: nothing usable at ``source``.
        DataError: a file cannot be read (the message names it, and the line where known),
            or ``data.columns`` does not fit the files (or is given for demo or MovieLens;
            with ``lenient``, a key a file cannot take is left out for that file, and
            ``data.columns`` for demo and MovieLens).
    """
    raw = _read_source(source, demo, lenient)
    return opaque_items(raw) if demo is not None and demo.opaque_items else raw


def opaque_items(raw: RawData) -> RawData:
    """The same data with each item's title replaced by ``item <id>``, no text and no
    categories: what is left to learn from is the interactions."""
    items = raw.items
    ids = items.column("item_id").cast(pa.string())
    opaque = pa.table(
        {
            "item_id": ids,
            "title": pa.array([f"item {i}" for i in ids.to_pylist()], pa.string()),
            "text": pa.nulls(items.num_rows, pa.string()),
            "categories": pa.array([[] for _ in range(items.num_rows)], pa.list_(pa.string())),
        }
    )
    return dataclasses.replace(raw, items=opaque)


def _read_source(source: str, demo: DataConfig | None = None, lenient: bool = False) -> RawData:
    columns = demo.columns if demo is not None else {}
    own = source == "demo" or source.startswith("movielens:") or is_movielens(source)
    if columns and own and not lenient:
        raise DataError(
            f"{source}: data.columns applies to a folder of interactions.* and items.*; "
            "demo and MovieLens data are read by their own readers (remove data.columns)"
        )
    if source == "demo":
        cfg = demo or DataConfig()
        d = generate_demo(cfg.demo_users, cfg.demo_items, cfg.demo_seed)
        return RawData(d.interactions, d.items, "demo:interactions", "demo:items")
    if source.startswith("movielens:"):
        return read_movielens(source.removeprefix("movielens:"))
    if is_movielens(source):
        return read_movielens(source)
    return read_contract_folder(source, columns=columns, lenient=lenient)


def output_dir(out_dir: str | Path) -> Path:
    """``out_dir``, created when missing.

    Raises:
        DataError: ``out_dir`` is an existing file (or cannot be created).
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DataError(f"{out}: is a file; the output must be a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    return out


def prepare(raw: RawData, out_dir: str | Path, events: Mapping[str, str] | None = None) -> Prepared:
    """Check the tables, write ``items.parquet``, ``interactions.parquet``,
    ``users.parquet`` (when the source has users) and ``rejected/``, and split the
    interactions by the event policy (``events``: ``data.events``; None: the defaults).

    Every row read is either kept or in ``rejected/`` with its reason, file and row; every
    kept row is in ``interactions.parquet`` whatever its event.

    Raises:
        ContractError: a column is missing or mistyped (rows are never the cause).
        DataError: ``out_dir`` is a file, a table kept no row at all, or no kept
            interaction is a positive.
    """
    out = output_dir(out_dir)
    mapped = {use.kind: use.mapped for use in raw.columns}
    with _named(mapped.get("items", {})):
        items = _traced(check_items(raw.items, raw.items_source), raw.items_read)
    known = set(items.table.column("item_id").to_pylist())
    with _named(mapped.get("interactions", {})):
        interactions = _traced(
            check_interactions(raw.interactions, raw.interactions_source, known),
            raw.interactions_read,
        )
    checked = {"items": items, "interactions": interactions}
    # Without pandas metadata: what pandas 3 writes there for list columns it cannot read
    # back (`list<item: null>[pyarrow]`); pandas and pyarrow read these files either way.
    pq.write_table(items.table.replace_schema_metadata(None), out / "items.parquet")
    pq.write_table(interactions.table.replace_schema_metadata(None), out / "interactions.parquet")
    if raw.users is not None:
        with _named(mapped.get("users", {})):
            checked["users"] = check_users(raw.users, raw.users_source or "users")
        pq.write_table(checked["users"].table.replace_schema_metadata(None), out / "users.parquet")
    elif (out / "users.parquet").exists():
        (out / "users.parquet").unlink()
    rejected_dir = out / "rejected"
    for name, c in checked.items():
        target = rejected_dir / f"{name}.parquet"
        if not c.rejected.empty:
            rejected_dir.mkdir(exist_ok=True)
            c.rejected.to_parquet(target, index=False)
        elif target.exists():
            target.unlink()
    sources = {
        "items": raw.items_source,
        "interactions": raw.interactions_source,
        "users": raw.users_source or "users",
    }
    for name, c in checked.items():
        if c.table.num_rows == 0 and name != "users":
            raise DataError(f"{sources[name]}: no usable {name}: {_nothing_kept(c, rejected_dir)}")
    split = split_events(interactions.table, events)
    if split.positives.num_rows == 0:
        raise DataError(
            f"{sources['interactions']}: no interaction to train on: the event policy "
            f"(data.events) takes none of the {split.rows} kept rows as a positive "
            f"({split.describe()})"
        )
    users = checked.get("users")
    return Prepared(
        out,
        split.positives,
        items.table,
        {name: c.counts() for name, c in checked.items()},
        raw.notes + items.notes + interactions.notes,
        {name: c.read for name, c in checked.items()},
        users.table if users is not None else None,
        split,
        [use.line() for use in raw.columns],
    )


@contextlib.contextmanager
def _named(mapped: Mapping[str, str]) -> Iterator[None]:
    """A contract error about a mapped column names the file's column and its key."""
    try:
        yield
    except ContractError as exc:
        if exc.column not in mapped or exc.key:
            raise
        source = mapped[exc.column]
        raise ContractError(exc.source, source, exc.expected, exc.found, exc.column) from None


def _nothing_kept(checked: Checked, rejected_dir: Path) -> str:
    if not checked.read:
        return "no rows read (a header and nothing else?)"
    counts = ", ".join(f"{n} x {r}" for r, n in sorted(checked.counts().items()))
    return f"all {checked.read} rows rejected ({counts}); see {rejected_dir}"


def _traced(checked: Checked, read: Read | None) -> Checked:
    """Rejected rows traced to their file and row, and unparsable CSV rows added to them."""
    if read is None:
        return checked
    rejected = checked.rejected
    if not rejected.empty and len(read.files) > 1:
        source_col = _column(rejected, REJECTED_SOURCE)
        row_col = _column(rejected, REJECTED_ROW)
        names, rows = read.locate(rejected[row_col].to_numpy() - 1)
        rejected = rejected.assign(**{source_col: names, row_col: rows})
    if read.unparsed:
        taken = set(checked.table.column_names) | set(rejected.columns)
        extra = pd.DataFrame(
            {
                checked.reason_column: UNPARSABLE,
                _column(rejected, REJECTED_SOURCE): [u.source for u in read.unparsed],
                _column(rejected, REJECTED_ROW): [u.line for u in read.unparsed],
                _free(REJECTED_TEXT, taken): [u.text for u in read.unparsed],
            }
        )
        rejected = pd.concat([rejected, extra], ignore_index=True)
    notes = list(checked.notes)
    for u in read.unparsed:
        if "\n" in u.text:
            notes.append(
                f"{u.source}: line {u.line}: a quoted field runs over "
                f"{u.text.count(chr(10)) + 1} lines (an unterminated quote?); the row is in "
                "rejected/ with its text"
            )
    return Checked(checked.table, rejected, notes, checked.reason_column)


def _column(rejected: pd.DataFrame, name: str) -> str:
    """The name ``name`` has in ``rejected`` (a leading ``_`` when the data took it)."""
    while "_" + name in rejected.columns:
        name = "_" + name
    return name


def _free(name: str, taken: set[str]) -> str:
    while name in taken:
        name = "_" + name
    return name


def split_and_save(
    prepared: Prepared, min_core: int, cold_share: float = 0.0, cold_seed: int = 0
) -> tuple[Split, frozenset[str]]:
    """Leave-one-out split and the cold items (``cold_share`` of them, held out of training
    entirely); writes ``train_sequences.parquet`` (the Ray Data input) without them."""
    split = leave_one_out(prepared.interactions, min_core)
    cold = hold_out_items(split, cold_share, cold_seed)
    sequences = drop_items(split.train_sequences(), cold)
    sequences.to_parquet(prepared.out_dir / "train_sequences.parquet", index=False)
    return split, cold


__all__ = ["Prepared", "load_source", "prepare", "split_and_save"]
