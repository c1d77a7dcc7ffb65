"""The data contract: one pyarrow schema per table, checked wherever data enters.

Column-level problems (a required column missing, a column of a type that cannot mean what
the contract says) stop with a :class:`ContractError` naming the file, the column, the
expected and the found type. Row-level problems (null ids, bad timestamps, unknown items,
exact duplicates) never stop a run: the rows are counted per reason and set aside in a
``rejected`` table, so that nothing is silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa

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
REJECTED_REASON = "reason"


class ContractError(ValueError):
    """A table does not follow the contract at column level (missing or mistyped column)."""

    def __init__(self, source: str, column: str, expected: str, found: str) -> None:
        super().__init__(f"{source}: column {column!r} expected {expected}, found {found}")
        self.source, self.column, self.expected, self.found = source, column, expected, found


@dataclass
class Checked:
    """A table that passed the contract, and the rows set aside with their reason."""

    table: pa.Table
    rejected: pd.DataFrame = field(default_factory=pd.DataFrame)

    def counts(self) -> dict[str, int]:
        """Rejected rows per reason."""
        if self.rejected.empty:
            return {}
        return {str(k): int(v) for k, v in self.rejected[REJECTED_REASON].value_counts().items()}


def check_interactions(table: pa.Table, source: str, item_ids: set[str] | None = None) -> Checked:
    """Check an interaction table against :data:`INTERACTIONS_SCHEMA`.

    Args:
        table: Raw rows as read (CSV columns may be all strings).
        source: The file or URI the rows came from, for error messages.
        item_ids: The catalogue's ids; interactions with other items are rejected
            (``unknown_item``). None skips the check.

    Returns:
        The conforming rows, and the rejected rows with a ``reason`` column
        (``null_user_id``, ``null_item_id``, ``bad_timestamp``, ``bad_value``,
        ``unknown_item``, ``duplicate``).

    Raises:
        ContractError: a required column is missing or has an unusable type.
    """
    _require(table, "interactions", source)
    df = table.to_pandas(types_mapper=_string_mapper)
    reasons = pd.Series(pd.NA, index=df.index, dtype="object")
    out = pd.DataFrame(index=df.index)
    for col in ("user_id", "item_id"):
        out[col] = _as_id(df[col], table.schema.field(col).type, source, col)
        reasons = reasons.mask(reasons.isna() & _blank(out[col]), f"null_{col}")
    out["timestamp"], bad_ts = _as_timestamp(df["timestamp"], table.schema, source)
    reasons = reasons.mask(reasons.isna() & bad_ts, "bad_timestamp")
    out["event"] = _as_text(df, "event", table.schema, source, default="interaction")
    out["value"], bad_value = _as_value(df, table.schema, source)
    reasons = reasons.mask(reasons.isna() & bad_value, "bad_value")
    out["query"] = _as_text(df, "query", table.schema, source, default=None)
    if item_ids is not None:
        unknown = ~out["item_id"].isin(item_ids) & out["item_id"].notna()
        reasons = reasons.mask(reasons.isna() & unknown, "unknown_item")
    dup = out.duplicated(keep="first") & reasons.isna()
    reasons = reasons.mask(dup, "duplicate")
    return _split(out, df, reasons, INTERACTIONS_SCHEMA)


def check_items(table: pa.Table, source: str) -> Checked:
    """Check an item table against :data:`ITEMS_SCHEMA`; extra columns are kept.

    Rejected reasons: ``null_item_id``, ``null_title``, ``duplicate_item_id`` (the first
    row of an id is kept).

    Raises:
        ContractError: a required column is missing or has an unusable type.
    """
    _require(table, "items", source)
    df = table.to_pandas(types_mapper=_string_mapper)
    out = df.copy()
    out["item_id"] = _as_id(df["item_id"], table.schema.field("item_id").type, source, "item_id")
    out["title"] = _as_text(df, "title", table.schema, source, default=None)
    out["text"] = _as_text(df, "text", table.schema, source, default=None)
    out["categories"] = _as_categories(df, table.schema, source)
    reasons = pd.Series(pd.NA, index=df.index, dtype="object")
    reasons = reasons.mask(_blank(out["item_id"]), "null_item_id")
    reasons = reasons.mask(reasons.isna() & _blank(out["title"]), "null_title")
    dup = out["item_id"].duplicated(keep="first") & reasons.isna()
    reasons = reasons.mask(dup, "duplicate_item_id")
    extra = [c for c in out.columns if c not in ITEMS_SCHEMA.names]
    return _split(out[ITEMS_SCHEMA.names + extra], df, reasons, ITEMS_SCHEMA)


def check_users(table: pa.Table, source: str) -> Checked:
    """Check a user table against :data:`USERS_SCHEMA`; attribute columns are kept.

    Rejected reasons: ``null_user_id``, ``duplicate_user_id`` (the first row of an id is
    kept).

    Raises:
        ContractError: ``user_id`` is missing or has an unusable type.
    """
    _require(table, "users", source)
    df = table.to_pandas(types_mapper=_string_mapper)
    out = df.copy()
    out["user_id"] = _as_id(df["user_id"], table.schema.field("user_id").type, source, "user_id")
    reasons = pd.Series(pd.NA, index=df.index, dtype="object")
    reasons = reasons.mask(_blank(out["user_id"]), "null_user_id")
    dup = out["user_id"].duplicated(keep="first") & reasons.isna()
    reasons = reasons.mask(dup, "duplicate_user_id")
    extra = [c for c in out.columns if c != "user_id"]
    return _split(out[["user_id", *extra]], df, reasons, USERS_SCHEMA)


def _require(table: pa.Table, kind: str, source: str) -> None:
    schema = {"interactions": INTERACTIONS_SCHEMA, "items": ITEMS_SCHEMA}.get(kind, USERS_SCHEMA)
    for col in _REQUIRED[kind]:
        if col not in table.column_names:
            raise ContractError(source, col, str(schema.field(col).type), "no such column")


def _string_mapper(dtype: pa.DataType) -> pd.ArrowDtype | None:
    return pd.ArrowDtype(dtype) if pa.types.is_string(dtype) else None


def _blank(s: pd.Series) -> pd.Series:
    return s.isna() | (s.astype("string").str.strip() == "")


def _as_id(s: pd.Series, typ: pa.DataType, source: str, col: str) -> pd.Series:
    if pa.types.is_integer(typ):  # integer ids are a lossless cast to string
        return s.astype("Int64").astype("string").astype(object).where(s.notna(), None)
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_null(typ)):
        raise ContractError(source, col, "string (or integer ids)", str(typ))
    return s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v).strip())


def _as_timestamp(s: pd.Series, schema: pa.Schema, source: str) -> tuple[pd.Series, pd.Series]:
    typ = schema.field("timestamp").type
    if pa.types.is_timestamp(typ):
        epoch = pd.Timestamp(0, tz="UTC")
        values = (pd.to_datetime(s, utc=True) - epoch) // pd.Timedelta(seconds=1)
    elif pa.types.is_integer(typ):
        values = s.astype("Int64")
    elif pa.types.is_string(typ) or pa.types.is_large_string(typ):  # CSV: parse each row
        values = pd.to_numeric(s.astype(object), errors="coerce")
        values = values.where(values == np.floor(values))
    else:
        raise ContractError(source, "timestamp", "int64 unix seconds (or timestamp)", str(typ))
    values = pd.to_numeric(values, errors="coerce")
    bad = values.isna() | (values < 0)
    return values.fillna(0).astype("int64"), bad


def _as_value(df: pd.DataFrame, schema: pa.Schema, source: str) -> tuple[pd.Series, pd.Series]:
    if "value" not in df.columns:
        return pd.Series(1.0, index=df.index, dtype="float32"), pd.Series(False, index=df.index)
    typ = schema.field("value").type
    if not (
        pa.types.is_integer(typ)
        or pa.types.is_floating(typ)
        or pa.types.is_string(typ)
        or pa.types.is_large_string(typ)
    ):
        raise ContractError(source, "value", "float32", str(typ))
    values = pd.to_numeric(df["value"].astype(object), errors="coerce")
    bad = values.isna() | ~np.isfinite(values.fillna(0).astype(float))
    return values.fillna(0).astype("float32"), bad


def _as_text(
    df: pd.DataFrame, col: str, schema: pa.Schema, source: str, default: str | None
) -> pd.Series:
    if col not in df.columns:
        return pd.Series(default, index=df.index, dtype=object)
    typ = schema.field(col).type
    if not (pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_null(typ)):
        raise ContractError(source, col, "string", str(typ))
    s = df[col].astype(object).where(df[col].notna(), None)
    if default is not None:
        s = s.where(s.notna(), default)
    return s


def _as_categories(df: pd.DataFrame, schema: pa.Schema, source: str) -> pd.Series:
    if "categories" not in df.columns:
        return pd.Series([[] for _ in range(len(df))], index=df.index, dtype=object)
    typ = schema.field("categories").type
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return df["categories"].map(lambda v: [] if v is None else [str(c) for c in v])
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return df["categories"].map(
            lambda v: (
                []
                if v is None or v is pd.NA
                else [c.strip() for c in str(v).split("|") if c.strip()]
            )
        )
    raise ContractError(source, "categories", "list<string> (or '|'-separated string)", str(typ))


def _split(out: pd.DataFrame, raw: pd.DataFrame, reasons: pd.Series, schema: pa.Schema) -> Checked:
    bad = reasons.notna()
    good = out[~bad].reset_index(drop=True)
    fields = list(schema) + [
        pa.field(c, pa.infer_type(good[c].head(1000).tolist()) if len(good) else pa.string())
        for c in good.columns
        if c not in schema.names
    ]
    table = pa.Table.from_pandas(good, schema=pa.schema(fields), preserve_index=False)
    rejected = raw[bad].astype(str).assign(**{REJECTED_REASON: reasons[bad].astype(str)})
    return Checked(table=table, rejected=rejected.reset_index(drop=True))
