"""The data contract: one pyarrow schema per table, checked wherever data enters.

Column-level problems (a required column missing, a column of a type that cannot mean what
the contract says) stop with a :class:`ContractError` naming the file, the column, the
expected and the found type. Row-level problems (null ids, bad timestamps, unknown items,
exact duplicates) never stop a run: the rows are counted per reason and set aside in a
``rejected`` table, so that nothing is silently dropped. The reference is ``docs/data.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from llmrec.data.arrow import flags, is_text
from llmrec.data.timestamps import UnsupportedTimestamps, to_seconds

INTERACTIONS_SCHEMA = pa.schema(
    [
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("timestamp", pa.int64(), nullable=False),  # unix seconds
        pa.field("event", pa.string(), nullable=False),  # rating, click, purchase, ...
        pa.field("value", pa.float32(), nullable=False),  # rating or weight
        pa.field("query", pa.string(), nullable=True),  # free text the user typed, if any
    ]
)
"""Interaction log contract. ``event`` defaults to ``interaction`` and ``value`` to 1.0 when
the columns are absent; ``query`` defaults to null."""

ITEMS_SCHEMA = pa.schema(
    [
        pa.field("item_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("text", pa.string(), nullable=True),  # description
        pa.field("categories", pa.list_(pa.string()), nullable=False),
    ]
)
"""Item catalogue contract; extra columns are kept. ``categories`` may also arrive as one
``|``-separated string (CSV)."""

USERS_SCHEMA = pa.schema([pa.field("user_id", pa.string(), nullable=False)])
"""Optional user table contract: ``user_id`` plus any attribute columns (``gender``,
``age``, ``country``...), kept as they come; the group report reads them as text."""

_REQUIRED = {
    "interactions": ("user_id", "item_id", "timestamp"),
    "items": ("item_id", "title"),
    "users": ("user_id",),
}
REJECTED_REASON = "rejected_reason"
"""Column of a rejected row's reason. Rejected rows keep every column of the input; when the
input already has a column of this name (or of the two below), ours gets a leading ``_``."""
REJECTED_SOURCE = "rejected_source"
"""Column of the file a rejected row came from."""
REJECTED_ROW = "rejected_row"
"""Column of a rejected row's 1-based position among its file's data rows (CSV: the line
number for rows that could not be parsed)."""

_PANDAS_INDEX = re.compile(r"^__index_level_\d+__$")


class DataError(ValueError):
    """Data that cannot be used as given; the message names the file (and row or column)."""


class DataSourceError(DataError, FileNotFoundError):
    """A data source could not be found or recognised."""


class ContractError(DataError):
    """A table does not follow the contract at column level (missing or mistyped column)."""

    def __init__(
        self, source: str, column: str, expected: str, found: str, key: str | None = None
    ) -> None:
        """``key``: the contract column that ``column`` was mapped to (``data.columns``)."""
        mapped = f" (data.columns.{key})" if key else ""
        super().__init__(f"{source}: column {column!r}{mapped} expected {expected}, found {found}")
        self.source, self.column, self.expected, self.found = source, column, expected, found
        self.key = key


@dataclass
class Checked:
    """A table that passed the contract, the rows set aside with their reason, and notes on
    what was converted (printed for the user)."""

    table: pa.Table
    rejected: pd.DataFrame = field(default_factory=pd.DataFrame)
    notes: list[str] = field(default_factory=list)
    reason_column: str = REJECTED_REASON

    @property
    def read(self) -> int:
        """Rows read: kept plus rejected."""
        return self.table.num_rows + len(self.rejected)

    def counts(self) -> dict[str, int]:
        """Rejected rows per reason."""
        if self.rejected.empty:
            return {}
        counts = self.rejected[self.reason_column].value_counts()
        return {str(k): int(v) for k, v in counts.items()}


class _Reasons:
    """The first reason each row is rejected for (later checks never overwrite it)."""

    def __init__(self, n: int) -> None:
        self.bad = np.zeros(n, dtype=bool)
        self.why = np.full(n, None, dtype=object)

    def reject(self, mask: np.ndarray, reason: str) -> None:
        new = np.asarray(mask, dtype=bool) & ~self.bad
        self.why[new] = reason
        self.bad |= new


def check_interactions(table: pa.Table, source: str, item_ids: set[str] | None = None) -> Checked:
    """Check an interaction table against :data:`INTERACTIONS_SCHEMA`.

    Integer timestamps in milliseconds, microseconds or nanoseconds (told by their
    magnitude, see :data:`~llmrec.data.timestamps.TIMESTAMP_UNITS`) are converted to
    seconds, with a note.

    Args:
        table: Raw rows as read (CSV columns may be all strings).
        source: The file or URI the rows came from, for error messages.
        item_ids: The catalogue's ids; interactions with other items are rejected
            (``unknown_item``). None skips the check.

    Returns:
        The conforming rows, and the rejected rows with a reason (``null_user_id``,
        ``null_item_id``, ``bad_timestamp`` (not a whole non-negative number within int64),
        ``timestamp_unit_mismatch`` (a value of another unit than most of the column),
        ``bad_value``, ``unknown_item``, ``duplicate``).

    Raises:
        ContractError: a required column is missing or has an unusable type.
    """
    table = _plain(table, "interactions", source)
    rows = _Reasons(table.num_rows)
    users, items = (_ids(table, col, source) for col in ("user_id", "item_id"))
    rows.reject(_blank(users), "null_user_id")
    rows.reject(_blank(items), "null_item_id")
    try:
        seconds, notes = to_seconds(table.column("timestamp"), source, rows.reject)
    except UnsupportedTimestamps as exc:
        expected = "int64 unix seconds (or timestamp)"
        raise ContractError(source, "timestamp", expected, str(exc)) from None
    value = _values(table, source, rows)
    if item_ids is not None:
        known = pc.is_in(items, value_set=pa.array(sorted(item_ids), pa.string()))
        rows.reject(~flags(known, True), "unknown_item")
    columns = [
        users,
        items,
        seconds,
        _text(table, "event", source, "interaction"),
        value,
        _text(table, "query", source, None),
    ]
    frame = pa.Table.from_arrays(columns, names=INTERACTIONS_SCHEMA.names).to_pandas()
    rows.reject(frame.duplicated(keep="first").to_numpy(), "duplicate")
    return _split(columns, INTERACTIONS_SCHEMA, table, rows, source, notes)


def check_items(table: pa.Table, source: str) -> Checked:
    """Check an item table against :data:`ITEMS_SCHEMA`; extra columns are kept as they are.

    Rejected reasons: ``null_item_id``, ``null_title``, ``duplicate_item_id`` (the first
    usable row of an id is kept).

    Raises:
        ContractError: a required column is missing or has an unusable type.
    """
    table = _plain(table, "items", source)
    rows = _Reasons(table.num_rows)
    ids = _ids(table, "item_id", source)
    title = _text(table, "title", source, None)
    rows.reject(_blank(ids), "null_item_id")
    rows.reject(_blank(pc.utf8_trim_whitespace(title)), "null_title")
    usable = pd.Series(ids.to_pylist(), dtype=object)[~rows.bad]
    dup = np.zeros(table.num_rows, dtype=bool)
    dup[usable.index[usable.duplicated(keep="first").to_numpy()]] = True
    rows.reject(dup, "duplicate_item_id")
    extra = [c for c in table.column_names if c not in ITEMS_SCHEMA.names]
    columns = [ids, title, _text(table, "text", source, None), _categories(table, source)]
    schema = pa.schema([*ITEMS_SCHEMA, *(table.schema.field(c) for c in extra)])
    return _split([*columns, *(table.column(c) for c in extra)], schema, table, rows, source, [])


def check_users(table: pa.Table, source: str) -> Checked:
    """Check a user table against :data:`USERS_SCHEMA`; attribute columns are kept.

    Rejected reasons: ``null_user_id``, ``duplicate_user_id`` (the first usable row of an id
    is kept).

    Raises:
        ContractError: ``user_id`` is missing or has an unusable type.
    """
    table = _plain(table, "users", source)
    rows = _Reasons(table.num_rows)
    ids = _ids(table, "user_id", source)
    rows.reject(_blank(ids), "null_user_id")
    usable = pd.Series(ids.to_pylist(), dtype=object)[~rows.bad]
    dup = np.zeros(table.num_rows, dtype=bool)
    dup[usable.index[usable.duplicated(keep="first").to_numpy()]] = True
    rows.reject(dup, "duplicate_user_id")
    extra = [c for c in table.column_names if c != "user_id"]
    schema = pa.schema([*USERS_SCHEMA, *(table.schema.field(c) for c in extra)])
    return _split([ids, *(table.column(c) for c in extra)], schema, table, rows, source, [])


def _plain(table: pa.Table, kind: str, source: str) -> pa.Table:
    """Without pandas' index columns and metadata, dictionaries decoded, names checked."""
    names = table.column_names
    for name in sorted({n for n in names if names.count(n) > 1}):
        raise DataError(f"{source}: column {name!r} appears {names.count(name)} times")
    schema = {"interactions": INTERACTIONS_SCHEMA, "items": ITEMS_SCHEMA}.get(kind, USERS_SCHEMA)
    for col in _REQUIRED[kind]:
        if col not in names:
            raise ContractError(source, col, str(schema.field(col).type), "no such column")
    keep = [n for n in names if not _PANDAS_INDEX.match(n)]
    table = table.select(keep).replace_schema_metadata(None)
    for i, f in enumerate(table.schema):
        if pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, pc.cast(table.column(i), f.type.value_type))
    return table


def _blank(strings: pa.ChunkedArray) -> np.ndarray:
    return flags(pc.equal(pc.utf8_length(strings), 0), True)


def _ids(table: pa.Table, col: str, source: str) -> pa.ChunkedArray:
    values = table.column(col)
    if pa.types.is_integer(values.type):  # integer ids are a lossless cast to string
        return pc.cast(values, pa.string())
    if not is_text(values.type):
        raise ContractError(source, col, "string (or integer ids)", str(values.type))
    return pc.utf8_trim_whitespace(pc.cast(values, pa.string()))


def _text(table: pa.Table, col: str, source: str, default: str | None) -> pa.ChunkedArray:
    if col not in table.column_names:
        return pa.chunked_array([pa.array([default] * table.num_rows, pa.string())])
    values = table.column(col)
    if not is_text(values.type):
        raise ContractError(source, col, "string", str(values.type))
    values = pc.cast(values, pa.string())
    return values if default is None else pc.fill_null(values, default)


def _values(table: pa.Table, source: str, rows: _Reasons) -> pa.Array:
    if "value" not in table.column_names:
        return pa.array(np.ones(table.num_rows, dtype=np.float32))
    col = table.column("value")
    typ = col.type
    if pa.types.is_integer(typ) or pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        numbers = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
    elif is_text(typ):
        text = pc.utf8_trim_whitespace(pc.cast(col, pa.string())).to_pandas()
        numbers = pd.to_numeric(text.astype(object), errors="coerce").to_numpy(dtype=np.float64)
    else:
        raise ContractError(source, "value", "float32", str(typ))
    with np.errstate(over="ignore", invalid="ignore"):
        as_float32 = np.asarray(numbers, dtype=np.float64).astype(np.float32)
    bad = ~np.isfinite(as_float32)
    rows.reject(bad, "bad_value")
    return pa.array(np.where(bad, np.float32(0), as_float32), pa.float32())


def _categories(table: pa.Table, source: str) -> pa.Array:
    kind = pa.list_(pa.string())
    if "categories" not in table.column_names:
        return pa.array([[] for _ in range(table.num_rows)], kind)
    col = table.column("categories")
    typ = col.type
    if pa.types.is_list(typ) or pa.types.is_large_list(typ) or pa.types.is_null(typ):
        values = [
            [str(c).strip() for c in v if c is not None and str(c).strip()] if v else []
            for v in col.to_pylist()
        ]
    elif is_text(typ):
        values = [
            [c.strip() for c in v.split("|") if c.strip()] if v else [] for v in col.to_pylist()
        ]
    else:
        raise ContractError(
            source, "categories", "list<string> (or '|'-separated string)", str(typ)
        )
    return pa.array(values, kind)


def _free(name: str, taken: set[str]) -> str:
    while name in taken:
        name = "_" + name
    return name


def _split(
    columns: list[pa.Array | pa.ChunkedArray],
    schema: pa.Schema,
    raw: pa.Table,
    rows: _Reasons,
    source: str,
    notes: list[str],
) -> Checked:
    keep = pa.array(~rows.bad)
    table = pa.Table.from_arrays([c.filter(keep) for c in columns], schema=schema)
    taken = set(raw.column_names)
    reason = _free(REJECTED_REASON, taken)
    at = np.flatnonzero(rows.bad)
    if not len(at):
        return Checked(table, pd.DataFrame(), notes, reason)
    bad = raw.take(pa.array(at))
    data: dict[str, object] = {name: _strings(bad.column(name)) for name in bad.column_names}
    data[reason] = rows.why[at].tolist()
    data[_free(REJECTED_SOURCE, taken)] = [source] * len(at)
    data[_free(REJECTED_ROW, taken)] = at + 1
    return Checked(table, pd.DataFrame(data), notes, reason)


def _strings(col: pa.ChunkedArray) -> list[str | None]:
    """A column of rejected rows as text (nulls stay null), whatever its type."""
    try:
        return pc.cast(col, pa.string()).to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return [None if v is None else str(v) for v in col.to_pylist()]
