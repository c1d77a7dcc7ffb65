"""What arrived since a version was trained: its own data source plus new logs, serving's
feedback folder, new catalogue rows and the items added live, read as one source.

The result is a :class:`~llmrec.data.readers.RawData` that :func:`llmrec.data.prepare.prepare`
checks like any other: feedback naming an item that no catalogue row knows is rejected
(``unknown_item``), counted and written to ``rejected/`` with the file and row it came from;
an item given by several sources takes its newest row (live > ``--items`` > logs' items > the
version's source), and the rows it replaces are counted in a note, not rejected.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from llmrec.config import DataConfig
from llmrec.data.columns import ColumnUse
from llmrec.data.contract import DataSourceError
from llmrec.data.files import Read, concat, read_rows
from llmrec.data.prepare import load_source
from llmrec.data.readers import RawData


@dataclass
class Sources:
    """Where a version's data comes from: ``base`` (its first ancestor's ``data.source``),
    then what updates added: ``logs`` (contract or MovieLens folders, or interaction rows),
    ``feedback`` folders, ``items`` (catalogue rows) and ``live`` (serving's live catalogue
    records)."""

    base: str
    logs: list[str] = field(default_factory=list)
    feedback: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    live: list[str] = field(default_factory=list)

    def with_(self, other: Sources) -> Sources:
        """Both sets of sources, each once (this one's base)."""

        def both(a: list[str], b: list[str]) -> list[str]:
            return list(dict.fromkeys([*a, *b]))

        return Sources(
            self.base,
            both(self.logs, other.logs),
            both(self.feedback, other.feedback),
            both(self.items, other.items),
            both(self.live, other.live),
        )

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Sources:
        return cls(
            str(raw["base"]),
            *(list(raw.get(k, [])) for k in ("logs", "feedback", "items", "live")),
        )


@dataclass
class Incoming:
    """The sources read, in the order their rows were joined."""

    interactions: list[tuple[str, pa.Table, Read | None]] = field(default_factory=list)
    items: list[tuple[str, pa.Table]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    columns: list[ColumnUse] = field(default_factory=list)
    """What each contract file's columns were used for (``data.columns``)."""


def gather(
    sources: Sources,
    data_cfg: DataConfig,
    live_tables: list[tuple[str, pa.Table]] = (),  # type: ignore[assignment]
) -> Incoming:
    """Read every source: the ``base`` with ``data_cfg``, the logs, the feedback folders,
    the item files, then ``live_tables`` (the live records' items, read by the caller).

    A log is a contract folder or MovieLens (interactions and items) or interaction rows
    alone (Parquet/CSV files or folders). A missing feedback folder is an empty one. A
    contract folder log is read with the base's ``data.columns``, a key that a file of it
    cannot take (a log already in the contract's names) left out for that file.

    Raises:
        DataSourceError / DataError: a source that is not there or cannot be read.
    """
    out = Incoming()
    _add_source(out, sources.base, data_cfg)
    for log in sources.logs:
        try:
            _add_source(out, log, DataConfig(columns=data_cfg.columns), lenient=True)
        except DataSourceError as exc:
            if not Path(log).exists() and "://" not in log:
                raise
            read = read_rows(log, strict=False)  # interaction rows alone
            out.interactions.append((log, read.table, read))
            out.notes.append(f"{log}: read as interaction rows ({exc})")
    for folder in map(Path, sources.feedback):
        if any(folder.glob("feedback-*.parquet")):
            read = read_rows(str(folder), strict=False)
            out.interactions.append((str(folder), read.table, read))
        else:
            out.notes.append(f"{folder}: no feedback files")
    for path in sources.items:
        out.items.append((path, read_rows(path, strict=False).table))
    for name, table in live_tables:
        if table.num_rows:
            out.items.append((name, table))
    return out


def _add_source(out: Incoming, source: str, data_cfg: DataConfig, lenient: bool = False) -> None:
    raw = load_source(source, data_cfg, lenient)
    out.interactions.append((source, raw.interactions, raw.interactions_read))
    out.items.append((source, raw.items))
    out.notes += raw.notes
    out.columns += raw.columns


def as_raw(incoming: Incoming) -> RawData:
    """One :class:`RawData`: the interactions of every source (each row traceable to its
    file and row), the items with the newest row of each id."""
    tables, files, unparsed = [], [], []
    for name, table, read in incoming.interactions:
        tables.append(table)
        if read is not None and sum(n for _, n in read.files) == table.num_rows:
            files += read.files
            unparsed += read.unparsed
        else:
            files.append((name, table.num_rows))
    interactions = concat(tables)
    notes = list(incoming.notes)
    kept: list[pa.Table] = []
    taken: set[str] = set()
    for name, table in reversed(incoming.items):  # the newest source first
        ids = pc.cast(table.column("item_id"), pa.string())
        newer = pc.fill_null(pc.is_in(ids, value_set=pa.array(sorted(taken), pa.string())), False)
        replaced = int(pc.sum(newer).as_py() or 0)
        if replaced:
            notes.append(f"{name}: {replaced} items replaced by newer catalogue rows")
            table = table.filter(pc.invert(newer))
        taken |= {i for i in ids.to_pylist() if i is not None}
        kept.append(table)
    items = concat(list(reversed(kept)))
    read = Read(interactions, files, unparsed)
    first = incoming.interactions[0][0]
    return RawData(
        interactions,
        items,
        first,
        incoming.items[0][0],
        read if len(files) > 1 else None,
        None,
        notes,
        columns=list(incoming.columns),
    )


__all__ = ["Incoming", "Sources", "as_raw", "gather"]
