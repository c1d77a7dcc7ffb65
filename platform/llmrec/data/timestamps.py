"""Reading a timestamp column of any type as unix seconds (the contract's ``timestamp``)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from llmrec.data.arrow import flags, is_text

TIMESTAMP_UNITS: tuple[tuple[str, int], ...] = (
    ("seconds", 1),
    ("milliseconds", 10**3),
    ("microseconds", 10**6),
    ("nanoseconds", 10**9),
)
"""Integer timestamps are read in the unit their magnitude says: unix seconds stay below
``10**11`` (the year 5138), and each finer unit is 1000 times the last."""
_SECONDS_LIMIT = 10**11
_INT64_MAX = 2**63 - 1


class UnsupportedTimestamps(TypeError):
    """A column type that cannot hold timestamps."""


def to_seconds(
    col: pa.ChunkedArray, source: str, reject: Callable[[np.ndarray, str], None]
) -> tuple[pa.Array, list[str]]:
    """Unix seconds of a timestamp column, whatever its type (timestamps, dates, integers in
    the unit their magnitude says, text); rows that cannot be read are passed to ``reject``
    with their reason, and a conversion is described in the notes.

    Raises:
        UnsupportedTimestamps: a column type that cannot hold timestamps (its name).
    """
    typ = col.type
    if pa.types.is_timestamp(typ) or pa.types.is_date(typ):
        return _typed(col, reject), []
    if pa.types.is_integer(typ):
        if pa.types.is_unsigned_integer(typ):
            col = pc.cast(col, pa.uint64())
            ok = flags(pc.less_equal(col, pa.scalar(_INT64_MAX, pa.uint64())), False)
        else:
            ok = flags(pc.greater_equal(col, pa.scalar(0, typ)), False)
        values = pc.if_else(pa.array(ok), col, pa.scalar(0, col.type))
        values = pc.cast(values, pa.int64()).to_numpy()
    elif is_text(typ):  # CSV: parse each row
        values, ok = _parse(pc.utf8_trim_whitespace(pc.cast(col, pa.string())))
    else:
        raise UnsupportedTimestamps(str(typ))
    reject(~ok, "bad_timestamp")
    values = np.where(ok, values, 0).astype(np.int64)
    unit = np.zeros(len(values), dtype=np.int64)
    for limit in (_SECONDS_LIMIT, _SECONDS_LIMIT * 10**3, _SECONDS_LIMIT * 10**6):
        unit += values >= limit
    if not ok.any():
        return pa.array(values, pa.int64()), []
    common = int(np.bincount(unit[ok]).argmax())
    reject(ok & (unit != common), "timestamp_unit_mismatch")
    if common == 0:
        return pa.array(values, pa.int64()), []
    name, factor = TIMESTAMP_UNITS[common]
    median = int(np.median(values[ok & (unit == common)]))
    when = datetime.fromtimestamp(median // factor, tz=timezone.utc).strftime("%Y-%m-%d")
    note = (
        f"{source}: timestamps are in {name} (median {median} is {when}; as seconds it would "
        f"be ~{1970 + median // 31_556_952:,}): converted to seconds; events within the same "
        "second are ordered by item id"
    )
    return pa.array(values // factor, pa.int64()), [note]


def _typed(col: pa.ChunkedArray, reject: Callable[[np.ndarray, str], None]) -> pa.Array:
    typ = col.type
    factor = {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}.get(getattr(typ, "unit", "s"), 1)
    if pa.types.is_date(typ):
        col = pc.cast(pc.cast(col, pa.date32()), pa.timestamp("s"))
    raw = pc.cast(col, pa.int64())
    valid = flags(pc.is_valid(raw), False)
    values = np.floor_divide(pc.fill_null(raw, 0).to_numpy(zero_copy_only=False), factor)
    bad = ~valid | (values < 0)
    reject(bad, "bad_timestamp")
    return pa.array(np.where(bad, 0, values).astype(np.int64), pa.int64())


def _parse(text: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Whole non-negative numbers within int64, exactly for digit strings ("1700000000",
    19 digits at most), and through float for the rest ("1.7e9", "1700000000.0")."""
    digits = flags(pc.match_substring_regex(text, r"^[0-9]{1,19}$"), False)
    as_uint = pc.cast(pc.if_else(pa.array(digits), text, "0"), pa.uint64())
    exact = digits & flags(pc.less_equal(as_uint, pa.scalar(_INT64_MAX, pa.uint64())), False)
    zero = pa.scalar(0, pa.uint64())
    values = pc.cast(pc.if_else(pa.array(exact), as_uint, zero), pa.int64()).to_numpy().copy()
    rest = ~digits & flags(pc.is_valid(text), False)
    ok = exact.copy()
    if rest.any():
        strings = pd.Series(text.to_pylist(), dtype=object)[rest]
        floats = pd.to_numeric(strings, errors="coerce").to_numpy(dtype=np.float64)
        with np.errstate(invalid="ignore"):
            good = np.isfinite(floats) & (floats >= 0) & (floats < 2.0**63)
            good &= floats == np.floor(floats)
        where = np.flatnonzero(rest)
        values[where[good]] = floats[good].astype(np.int64)
        ok[where[good]] = True
    return values, ok


__all__ = ["TIMESTAMP_UNITS", "UnsupportedTimestamps", "to_seconds"]
