"""Property tests of the data contract: random bad rows never raise a traceback, and every row
read is kept or rejected (kept + rejected = read), for interactions and items."""

from __future__ import annotations

import csv
import io
import math
import tempfile
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from llmrec.data.contract import DataError, check_interactions, check_items
from llmrec.data.prepare import load_source, prepare

INTERACTION_REASONS = {
    "null_user_id",
    "null_item_id",
    "bad_timestamp",
    "timestamp_unit_mismatch",
    "bad_value",
    "unknown_item",
    "duplicate",
    "unparsable_row",
}
ITEM_REASONS = {"null_item_id", "null_title", "duplicate_item_id", "unparsable_row"}
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ids = st.one_of(
    st.sampled_from(["i1", "i2", "i3", " i1 ", "", "  ", "用户", "Ève", "i,1", 'say "hi"']),
    st.text(max_size=6),
    st.none(),
)
stamps = st.one_of(
    st.integers(min_value=-(10**20), max_value=10**20).map(str),
    st.sampled_from(["1.7e9", "1700000000.5", "yesterday", "", "nan", "-0", "1e400"]),
    st.integers(min_value=0, max_value=2_000_000_000).map(str),
    st.integers(min_value=10**12, max_value=2 * 10**12).map(str),
    st.none(),
)
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["4", "five", "", "1e39", "-inf", " 3 "]),
    st.none(),
)
texts = st.one_of(st.text(max_size=12), st.none())


def _table(rows: list[tuple[object, ...]], names: list[str]) -> pa.Table:
    return pa.table({n: pa.array([r[i] for r in rows], pa.string()) for i, n in enumerate(names)})


@SETTINGS
@given(st.lists(st.tuples(ids, ids, stamps, values, texts), max_size=30))
def test_random_interactions_are_kept_or_rejected(rows):
    names = ["user_id", "item_id", "timestamp", "value", "query"]
    checked = check_interactions(_table(rows, names), "log.csv", item_ids={"i1", "i2", "用户"})
    assert checked.table.num_rows + len(checked.rejected) == len(rows)
    assert set(checked.counts()) <= INTERACTION_REASONS
    assert all(t >= 0 for t in checked.table.column("timestamp").to_pylist())
    assert all(math.isfinite(v) for v in checked.table.column("value").to_pylist())
    assert checked.table.column("user_id").null_count == 0


@SETTINGS
@given(st.lists(st.tuples(ids, texts, texts, texts, texts), max_size=30))
def test_random_items_are_kept_or_rejected(rows):
    names = ["item_id", "title", "text", "categories", "reason"]
    checked = check_items(_table(rows, names), "items.csv")
    assert checked.table.num_rows + len(checked.rejected) == len(rows)
    assert set(checked.counts()) <= ITEM_REASONS
    kept = checked.table.column("item_id").to_pylist()
    assert len(kept) == len(set(kept))
    # the input's own "reason" column is never overwritten by ours
    assert checked.rejected.empty or "rejected_reason" in checked.rejected.columns


def _csv(header: list[str], records: list[list[str]], ragged: list[str]) -> str:
    buffer = io.StringIO()
    # "\r\n": the writer quotes a field holding either character; with "\n" it left a bare
    # "\r" unquoted, which CSV reads as a line break (two records for one written)
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    writer.writerows(records)
    return buffer.getvalue() + "".join(line + "\n" for line in ragged)


field = st.one_of(ids.map(lambda v: v or ""), stamps.map(lambda v: v or ""))
ragged_line = st.lists(st.sampled_from(["u", "i1", "17", ""]), min_size=4, max_size=6).map(",".join)


@pytest.mark.filterwarnings("ignore")
@SETTINGS
@given(
    st.lists(st.lists(field, min_size=3, max_size=3), max_size=20),
    st.lists(ragged_line, max_size=3),
    st.lists(st.lists(ids.map(lambda v: v or ""), min_size=2, max_size=2), max_size=8),
)
def test_random_csv_files_through_prepare_never_raise_a_traceback(records, ragged, items):
    """Every data line written is read: kept, or in rejected/ (ragged lines included); the
    only error is a one-line DataError (no usable rows at all)."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        (src / "interactions.csv").write_text(
            _csv(["user_id", "item_id", "timestamp"], records, ragged), encoding="utf-8"
        )
        (src / "items.csv").write_text(_csv(["item_id", "title"], items, []), encoding="utf-8")
        try:
            prepared = prepare(load_source(str(src)), Path(tmp) / "out")
        except DataError as exc:
            assert "\n" not in str(exc) and "no usable" in str(exc)
            return
        for name, written in (("interactions", len(records) + len(ragged)), ("items", len(items))):
            kept = getattr(prepared, name).num_rows
            rejected = sum(prepared.rejected[name].values())
            assert kept + rejected == prepared.read[name] == written
