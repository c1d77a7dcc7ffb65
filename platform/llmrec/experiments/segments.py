"""The impression log's Parquet segments: the analysis format of answers and feedback.

Rows are exported as *segments* (``impressions/`` and ``events/`` under one folder), each a
range of row numbers claimed in a transaction, so that several replicas and the report job
can export concurrently without overlap; a claimed range whose file is missing (its writer
died) is written by the next export. :func:`read_log` reads them back.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llmrec.experiments.logfile import LogFile

IMPRESSIONS_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("timestamp", pa.float64()),
        ("experiment", pa.string()),
        ("variant", pa.string()),
        ("model_uri", pa.string()),
        ("model_version", pa.string()),
        ("unit", pa.string()),
        ("unit_kind", pa.string()),
        ("user_id", pa.string()),
        ("session_id", pa.string()),
        ("items", pa.list_(pa.string())),
        ("latency_ms", pa.float64()),
        ("explored", pa.list_(pa.int32())),
    ]
)
"""One row per answer (the analysis format of the ``impressions/`` segments); ``explored``:
the 1-based positions that were exploration slots (null in segments written before it)."""

EVENTS_SCHEMA = pa.schema(
    [
        ("request_id", pa.string()),
        ("user_id", pa.string()),
        ("item_id", pa.string()),
        ("event", pa.string()),
        ("value", pa.float64()),
        ("timestamp", pa.int64()),
        ("experiment", pa.string()),
        ("variant", pa.string()),
        ("model_version", pa.string()),
        ("unit", pa.string()),
        ("position", pa.int32()),
    ]
)
"""One row per attributed feedback event (the ``events/`` segments)."""

TABLES = {"impressions": IMPRESSIONS_SCHEMA, "events": EVENTS_SCHEMA}
JSON_COLUMNS = ("items", "explored")
"""Columns held as JSON text in SQLite."""
SEGMENT_ROWS = 200_000
"""The most rows in one Parquet segment."""


class Segments(LogFile):
    """The export of a log's rows to Parquet segments under ``segments_dir``."""

    segments_dir: Path

    def export(self) -> list[Path]:
        """Write every row not yet in a segment, and every claimed segment whose file is
        missing under ``segments_dir`` (its writer died, or it exported to another folder),
        as Parquet segments; returns the files written."""
        written = []
        for kind in TABLES:
            self._claim(kind)
            claimed = (
                self._conn()
                .execute(
                    "SELECT first_seq, last_seq, written FROM segments WHERE kind = ?", (kind,)
                )
                .fetchall()
            )
            for first, last, done in claimed:
                if not done or not self._segment_path(kind, first, last).exists():
                    written.append(self._write_segment(kind, first, last))
        return written

    def _segment_path(self, kind: str, first: int, last: int) -> Path:
        return self.segments_dir / kind / f"part-{first:012d}-{last:012d}.parquet"

    def _claim(self, kind: str) -> None:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            (done,) = conn.execute(
                "SELECT COALESCE(MAX(last_seq), 0) FROM segments WHERE kind = ?", (kind,)
            ).fetchone()
            (top,) = conn.execute(f"SELECT COALESCE(MAX(seq), 0) FROM {kind}").fetchone()
            for first in range(done + 1, top + 1, SEGMENT_ROWS):
                last = min(first + SEGMENT_ROWS - 1, top)
                conn.execute(
                    "INSERT INTO segments (kind, first_seq, last_seq) VALUES (?, ?, ?)",
                    (kind, first, last),
                )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _write_segment(self, kind: str, first: int, last: int) -> Path:
        """The rows ``first..last`` of ``kind`` as one file (same rows, same file: a segment
        written twice by two exporters is the same segment)."""
        schema = TABLES[kind]
        columns = [f.name for f in schema]
        rows = (
            self._conn()
            .execute(
                f"SELECT {', '.join(columns)} FROM {kind} WHERE seq BETWEEN ? AND ? ORDER BY seq",
                (first, last),
            )
            .fetchall()
        )
        data: dict[str, list[Any]] = {c: [r[i] for r in rows] for i, c in enumerate(columns)}
        for column in JSON_COLUMNS:
            if column in data:
                data[column] = [json.loads(x) for x in data[column]]
        final = self._segment_path(kind, first, last)
        folder = final.parent
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{final.name}.{uuid.uuid4().hex[:8]}.tmp"
        with open(tmp, "wb") as fh:
            pq.write_table(pa.table(data, schema=schema), fh)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(final)
        self._write(
            "UPDATE segments SET written = 1 WHERE kind = ? AND first_seq = ?", [(kind, first)]
        )
        return final


def read_log(segments_dir: str | Path, experiment: str | None = None) -> tuple[pa.Table, pa.Table]:
    """(impressions, attributed events) from the Parquet segments, of one experiment when
    ``experiment`` is given; empty tables in the schemas when there are none."""
    out = []
    for kind, schema in TABLES.items():
        files = sorted((Path(segments_dir) / kind).glob("part-*.parquet"))
        tables = [pq.read_table(f, schema=schema) for f in files]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        if experiment is not None:
            import pyarrow.compute as pc

            table = table.filter(pc.equal(table["experiment"], experiment))
        out.append(table)
    return out[0], out[1]


__all__ = ["EVENTS_SCHEMA", "IMPRESSIONS_SCHEMA", "SEGMENT_ROWS", "Segments", "read_log"]
