"""Your columns: which column of a file feeds which contract column (``data.columns``), and
what the console says about every column of a contract folder's files.

A file whose columns are named as in the contract needs no mapping. Otherwise
``data.columns`` names the source column of a contract column, e.g.
``{user_id: customer, value: rating, text: [description, bullet_points]}``: the column is
read under its contract name (``text`` may join several columns into the item text). A key
applies to every table that has that contract column (``item_id``: interactions and items,
``user_id``: interactions and users); ``items.item_id: sku`` applies to one table only.

Nothing is dropped without a word: each file gets one line on the console, e.g.
``interactions.csv: user_id, item_id, timestamp, value<-rating; ignored: session``, and a
column that looks like an absent contract column (``rating`` without ``value``,
``description`` without ``text``) gets a note saying how to map it; it is never mapped by
guess. A mapping that names an unknown contract column or a column the file lacks stops with
an error naming the file, the key and the column.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from llmrec.config import DATA_COLUMNS
from llmrec.data.contract import (
    INTERACTIONS_SCHEMA,
    ITEMS_SCHEMA,
    USERS_SCHEMA,
    ContractError,
    DataError,
)

Columns = Mapping[str, str | Sequence[str]]
"""``data.columns``: contract column (or ``table.column``) -> source column(s)."""

REQUIRED: dict[str, tuple[str, ...]] = {
    "interactions": ("user_id", "item_id", "timestamp"),
    "items": ("item_id", "title"),
    "users": ("user_id",),
}
DEFAULTS = {"event": "interaction", "value": "1.0"}
"""What an absent optional column is read as (shown on the console); the rest: null/empty."""
JOINED = ("text",)
"""Contract columns that may take several source columns (joined, in order)."""
_SCHEMAS = {"interactions": INTERACTIONS_SCHEMA, "items": ITEMS_SCHEMA, "users": USERS_SCHEMA}
ALIASES: dict[str, tuple[str, ...]] = {
    "user_id": ("user", "userid", "uid", "customer", "customerid", "visitor", "visitorid"),
    "item_id": ("item", "itemid", "product", "productid", "sku", "movieid", "asin"),
    "timestamp": ("time", "ts", "datetime", "date", "eventtime", "createdat", "unixtime"),
    "event": ("eventtype", "action", "behavior", "behaviour", "interaction", "type"),
    "value": ("rating", "ratings", "score", "stars", "weight", "count", "quantity"),
    "query": ("search", "searchquery", "searchterm", "querytext"),
    "title": ("name", "itemname", "productname", "productitle", "producttitle", "headline"),
    "text": ("description", "desc", "summary", "body", "content", "overview", "details"),
    "categories": ("category", "genre", "genres", "tags", "categorypath", "section"),
}
"""Names (lower case, without ``_``, ``-`` and spaces) that suggest a contract column: an
absent contract column's look-alike is named in a note, never mapped by guess."""
_SENTENCE_END = ".!?。！？…"


@dataclass(frozen=True)
class ColumnUse:
    """What one table's columns were used for.

    ``used``: contract column -> its source columns (the column itself when not mapped), in
    contract order; ``ignored``: columns read past (interactions) or displaced by a mapping;
    ``kept``: the other columns, kept as they are (items, users)."""

    kind: str
    name: str
    used: dict[str, tuple[str, ...]]
    absent: tuple[str, ...] = ()
    ignored: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def mapped(self) -> dict[str, str]:
        """Contract column -> the source column(s) it was read from, for the mapped ones."""
        return {c: "+".join(s) for c, s in self.used.items() if s != (c,)}

    def line(self) -> str:
        """e.g. ``interactions.csv: user_id, item_id, timestamp, value<-rating; absent:
        event (interaction), query; ignored: session, device``."""
        used = ", ".join(c if s == (c,) else f"{c}<-{'+'.join(s)}" for c, s in self.used.items())
        parts = [f"{self.name}: {used}"]
        if self.absent:
            absent = (f"{c} ({DEFAULTS[c]})" if c in DEFAULTS else c for c in self.absent)
            parts.append("absent: " + ", ".join(absent))
        if self.kept:
            label = "kept, not item text" if self.kind == "items" else "kept"
            parts.append(f"{label}: " + ", ".join(self.kept))
        if self.ignored:
            parts.append("ignored: " + ", ".join(self.ignored))
        return "; ".join(parts)


def mapping_for(columns: Columns, kind: str, where: str) -> dict[str, tuple[tuple[str, ...], bool]]:
    """The part of ``columns`` that applies to table ``kind``: contract column -> (source
    columns, whether the key named the table).

    Raises:
        DataError: a key that names no contract column, or a value that is not a column
            name (a list of them for ``text``); the message starts with ``where``.
    """
    out: dict[str, tuple[tuple[str, ...], bool]] = {}
    for key, value in columns.items():
        table, dot, column = str(key).rpartition(".")
        tables = [table] if dot else [t for t, cols in DATA_COLUMNS.items() if column in cols]
        if not tables or any(column not in DATA_COLUMNS.get(t, ()) for t in tables):
            raise DataError(f"{where}: data.columns.{key} (column {value!r}): {unknown_key(key)}")
        sources = _sources(key, column, value, where)
        if kind in tables and (dot or column not in out):
            out[column] = (sources, bool(dot))
    return out


def unknown_key(key: str) -> str:
    """Why ``key`` is not a key of ``data.columns``, with the keys that are."""
    known = ", ".join(dict.fromkeys(c for cols in DATA_COLUMNS.values() for c in cols))
    return (
        f"{key!r} is not a contract column (expected one of {known}, or TABLE.COLUMN for one "
        f"table: {', '.join(DATA_COLUMNS)})"
    )


def _sources(key: str, column: str, value: object, where: str) -> tuple[str, ...]:
    many = isinstance(value, list | tuple)
    names = tuple(value) if isinstance(value, list | tuple) else (value,)
    if (
        not names
        or (many and column not in JOINED)
        or not all(isinstance(n, str) and n.strip() for n in names)
    ):
        what = "a column name or a list of them" if column in JOINED else "a column name"
        raise DataError(f"{where}: data.columns.{key} must be {what}, got {value!r}")
    return tuple(dict.fromkeys(str(n) for n in names))


def apply_columns(
    table: pa.Table,
    kind: str,
    source: str,
    name: str,
    columns: Columns | None = None,
    lenient: bool = False,
) -> tuple[pa.Table, ColumnUse]:
    """Table ``kind`` with its source columns read under their contract names, and what was
    used for what.

    Args:
        table: The file's rows as read.
        source: The file, for messages (a path or URI).
        name: The file as the console line names it (``interactions.csv``).
        columns: ``data.columns`` (None or empty: the file's own names).
        lenient: A mapped column the file lacks is no error: the key is left out for this
            file (an update's logs, perhaps in the contract's names already); a required
            contract column must still be there.

    Raises:
        ContractError: a required contract column is missing (the message lists the file's
            columns and says how to map one), or a column joined into ``text`` is not text.
        DataError: a mapped column the file does not have (the message names the file, the
            key and the column, and lists the file's columns), a column mapped twice, or a
            column name that appears twice.
    """
    names = table.column_names
    for dup in sorted({n for n in names if names.count(n) > 1}):
        raise DataError(f"{source}: column {dup!r} appears {names.count(dup)} times")
    wanted = _resolve(mapping_for(columns or {}, kind, source), kind, source, names, lenient)
    notes: list[str] = []
    title = wanted.get("title", ("title",) if "title" in names else ())
    if "text" in wanted and title and title[0] in wanted["text"]:
        others = tuple(s for s in wanted["text"] if s != title[0])
        if others:
            wanted["text"] = others
        else:
            del wanted["text"]
        notes.append(
            f"{name}: text: {title[0]!r} left out of the text: the title always starts an "
            "item's text"
        )
    consumed = {s for sources in wanted.values() for s in sources}
    contract = _SCHEMAS[kind].names
    arrays: dict[str, pa.ChunkedArray | pa.Array] = {}
    used: dict[str, tuple[str, ...]] = {}
    for col in contract:
        if col in wanted:
            sources = wanted[col]
            if len(sources) == 1:
                arrays[col] = table.column(sources[0])
            else:
                arrays[col] = joined_text(table, sources, source, col)
            used[col] = sources
        elif col in names and col not in consumed:
            arrays[col] = table.column(col)
            used[col] = (col,)
    displaced = [c for c in names if c in contract and c in wanted and c not in consumed]
    rest = [c for c in names if c not in contract and c not in consumed]
    for col in REQUIRED[kind]:
        if col not in used:
            raise ContractError(
                source, col, str(_SCHEMAS[kind].field(col).type), _missing(col, names)
            )
    absent = tuple(c for c in contract if c not in used)
    notes += [
        _hint(kind, name, col, alias)
        for col in absent
        for alias in rest
        if _plain(alias) in (_plain(col), *ALIASES.get(col, ()))
    ]
    out = pa.Table.from_arrays(
        [*arrays.values(), *(table.column(c) for c in rest)], names=[*arrays, *rest]
    )
    drop = kind == "interactions"
    use = ColumnUse(
        kind,
        name,
        used,
        absent,
        ignored=tuple(rest if drop else []) + tuple(displaced),
        kept=() if drop else tuple(rest),
        notes=tuple(notes),
    )
    return out, use


def check_used(columns: Columns | None, uses: Sequence[ColumnUse], where: str) -> None:
    """Stop when a key of ``columns`` fed no file: a key of a column several tables share
    (``item_id: sku``) whose files all read their own ``item_id``.

    Raises:
        DataError: naming the folder (``where``), the key and its column.
    """
    for key, value in (columns or {}).items():
        if "." in key or key in JOINED:
            continue
        if not any(key in use.mapped for use in uses):
            files = ", ".join(use.name for use in uses if key in use.used)
            raise DataError(
                f"{where}: data.columns.{key} names column {value!r}, which no file has "
                f"({files} read their own {key!r} column)"
            )


def _resolve(
    mapping: dict[str, tuple[tuple[str, ...], bool]],
    kind: str,
    source: str,
    names: list[str],
    lenient: bool,
) -> dict[str, tuple[str, ...]]:
    """Mapped contract column -> its source columns, each checked to be in the file. An
    unqualified key of a column that several tables share (``item_id``) falls back to the
    contract's own column in a file that lacks the mapped one but has that column; with
    ``lenient`` every key a file cannot take is left out for that file."""
    out: dict[str, tuple[str, ...]] = {}
    owner: dict[str, str] = {}
    for col, (sources, qualified) in mapping.items():
        missing = [s for s in sources if s not in names]
        shared = sum(col in cols for cols in DATA_COLUMNS.values()) > 1
        if missing and (lenient or (shared and not qualified and col in names)):
            continue
        if missing:
            key = f"{kind}.{col}" if qualified else col
            have = ", ".join(repr(n) for n in names) or "none"
            raise DataError(
                f"{source}: data.columns.{key} names column {missing[0]!r}, which the file "
                f"does not have (its columns: {have})"
            )
        for s in sources:
            if col not in JOINED and s in owner and owner[s] not in JOINED:
                raise DataError(
                    f"{source}: column {s!r} is mapped twice (data.columns.{owner[s]} and "
                    f"data.columns.{col}); a column feeds one contract column"
                )
            owner.setdefault(s, col)
        out[col] = sources
    return out


def _plain(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def _missing(col: str, names: list[str]) -> str:
    alike = [n for n in names if _plain(n) in (_plain(col), *ALIASES.get(col, ()))]
    have = ", ".join(repr(n) for n in names) or "none"
    which = f"{alike[0]!r}" if alike else "one"
    return (
        f"no such column (its columns: {have}; map {which} with "
        f"data.columns.{col}={alike[0] if alike else 'COLUMN'})"
    )


def _hint(kind: str, name: str, col: str, alias: str) -> str:
    if kind == "items" and col in ("text", "categories"):
        what = "item text" if col == "text" else "categories"
        return (
            f"{name}: column {alias!r} is kept but is not the {what}; map it with "
            f"data.columns.{col}={alias}"
        )
    return f"{name}: column {alias!r} ignored; map it with data.columns.{col}={alias}"


def joined_text(table: pa.Table, sources: Sequence[str], source: str, key: str) -> pa.Array:
    """Several columns as one text per row: ``"description: Warm wool. material: Merino."``:
    each non-blank value after its column's name, in the given order, ended as a sentence;
    null when every value is blank."""
    parts = [_as_text(table.column(s), s, source, key) for s in sources]
    rows = []
    for values in zip(*parts, strict=True):
        said = [f"{s}: {_sentence(v)}" for s, v in zip(sources, values, strict=True) if v]
        rows.append(" ".join(said) if said else None)
    return pa.array(rows, pa.string())


def _as_text(col: pa.ChunkedArray, name: str, source: str, key: str) -> list[str | None]:
    typ = col.type
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return [
            ", ".join(str(x).strip() for x in v if x is not None and str(x).strip()) or None
            if v
            else None
            for v in col.to_pylist()
        ]
    try:
        text = pc.cast(col, pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        raise ContractError(
            source, name, "text (string, number or list of strings)", str(typ), key=key
        ) from None
    return [v.strip() or None if v is not None else None for v in text.to_pylist()]


def _sentence(text: str) -> str:
    return text if text[-1] in _SENTENCE_END else text + "."


__all__ = [
    "ALIASES",
    "ColumnUse",
    "Columns",
    "apply_columns",
    "check_used",
    "joined_text",
    "mapping_for",
]
