"""The impression log: every answer and every attributed feedback event, durably, for analysis.

:class:`ImpressionLog` is a SQLite file in WAL mode beside the history store, shared by every
ingress replica. An answer's row is committed before the answer is sent, with
``synchronous=NORMAL``: in WAL mode a commit is then in the operating system's hands
before the call returns, so it survives the death of any process (a killed replica), while
costing no disk flush on the request path; only a power cut or kernel crash may lose the
last answers' rows. Attributed feedback is committed with ``synchronous=FULL`` (flushed),
like the history store.

For analysis the rows are exported as Parquet *segments* (``impressions/`` and ``events/``
under one folder), each a range of row numbers claimed in a transaction, so that several
replicas and the report job can export concurrently without overlap; a claimed range whose
file is missing (its writer died) is written by the next export. The log also keeps the
running experiment (:class:`ExperimentState`) and each experiment's bucket allocation.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from llmrec.api.experiment import ExperimentSpec
from llmrec.experiments.assignment import Allocation, allocate
from llmrec.experiments.attribution import Attributed, Impression
from llmrec.serving.history import thread_connection

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
    ]
)
"""One row per answer (the analysis format of the ``impressions/`` segments)."""

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

_TABLES = {"impressions": IMPRESSIONS_SCHEMA, "events": EVENTS_SCHEMA}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS impressions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE, timestamp REAL NOT NULL, experiment TEXT NOT NULL,
    variant TEXT NOT NULL, model_uri TEXT NOT NULL, model_version TEXT NOT NULL,
    unit TEXT NOT NULL, unit_kind TEXT NOT NULL, user_id TEXT, session_id TEXT,
    items TEXT NOT NULL, shown INTEGER NOT NULL, latency_ms REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS impressions_experiment ON impressions (experiment, variant);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL, user_id TEXT NOT NULL, item_id TEXT NOT NULL,
    event TEXT NOT NULL, value REAL NOT NULL, timestamp INTEGER NOT NULL,
    experiment TEXT NOT NULL, variant TEXT NOT NULL, model_version TEXT NOT NULL,
    unit TEXT NOT NULL, position INTEGER
);
CREATE INDEX IF NOT EXISTS events_experiment ON events (experiment, variant);
CREATE TABLE IF NOT EXISTS segments (
    kind TEXT NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    written INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (kind, first_seq)
);
CREATE TABLE IF NOT EXISTS allocations (experiment TEXT PRIMARY KEY, allocation TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiment_state (
    id INTEGER PRIMARY KEY CHECK (id = 1), current TEXT, configured TEXT, updated REAL
);
"""

_IMPRESSION_COLUMNS = [f.name for f in IMPRESSIONS_SCHEMA]
_EVENT_COLUMNS = [f.name for f in EVENTS_SCHEMA]
SEGMENT_ROWS = 200_000
"""The most rows in one Parquet segment."""


class ImpressionLog:
    """Answers and attributed feedback in SQLite (thread-safe: a connection per thread),
    exported to Parquet segments under ``segments_dir``.

    Args:
        path: the SQLite file (created with its folder).
        segments_dir: the Parquet folder (``impressions/``, ``events/`` below it).
    """

    def __init__(self, path: str | Path, segments_dir: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.segments_dir = Path(segments_dir)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path, "NORMAL")

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]], full: bool = False) -> None:
        conn = self._conn()
        if full:
            conn.execute("PRAGMA synchronous=FULL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            if full:
                conn.execute("PRAGMA synchronous=NORMAL")

    # -- answers and feedback ----------------------------------------------------------------

    def record(self, impressions: Iterable[Impression]) -> None:
        """Commit answers (one transaction); survives any process's death once returned."""
        rows = [
            (
                i.request_id,
                i.timestamp,
                i.experiment,
                i.variant,
                i.model_uri,
                i.model_version,
                i.unit,
                i.unit_kind,
                i.user_id,
                i.session_id,
                json.dumps(i.items, ensure_ascii=False),
                i.latency_ms,
                len(i.items),
            )
            for i in impressions
        ]
        self._write(
            f"INSERT INTO impressions ({', '.join(_IMPRESSION_COLUMNS)}, shown) "
            f"VALUES ({', '.join('?' * (len(_IMPRESSION_COLUMNS) + 1))})",
            rows,
        )

    def lookup(self, request_ids: Iterable[str]) -> dict[str, Impression]:
        """The logged answers among ``request_ids``."""
        ids = list(dict.fromkeys(request_ids))
        out: dict[str, Impression] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            rows = (
                self._conn()
                .execute(
                    f"SELECT {', '.join(_IMPRESSION_COLUMNS)} FROM impressions "
                    f"WHERE request_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
                .fetchall()
            )
            for row in rows:
                values = dict(zip(_IMPRESSION_COLUMNS, row, strict=True))
                values["items"] = tuple(json.loads(values["items"]))
                out[values["request_id"]] = Impression(**values)
        return out

    def record_events(self, events: Iterable[Attributed]) -> None:
        """Commit attributed feedback durably (flushed, like the history store)."""
        rows = [tuple(getattr(e, c) for c in _EVENT_COLUMNS) for e in events]
        self._write(
            f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})",
            rows,
            full=True,
        )

    def counts(self, experiment: str) -> dict[str, dict[str, Any]]:
        """Live counts per variant of ``experiment``: requests, units (users), items shown,
        events by kind and the sum of their values."""
        conn = self._conn()
        out: dict[str, dict[str, Any]] = {}
        for variant, requests, units, shown in conn.execute(
            "SELECT variant, COUNT(*), COUNT(DISTINCT unit), SUM(shown) FROM impressions "
            "WHERE experiment = ? GROUP BY variant",
            (experiment,),
        ):
            out[variant] = {
                "requests": requests,
                "users": units,
                "impressions": shown or 0,
                "events": {},
                "value": 0.0,
            }
        for variant, event, n, value in conn.execute(
            "SELECT variant, event, COUNT(*), SUM(value) FROM events WHERE experiment = ? "
            "GROUP BY variant, event",
            (experiment,),
        ):
            row = out.setdefault(
                variant,
                {"requests": 0, "users": 0, "impressions": 0, "events": {}, "value": 0.0},
            )
            row["events"][event] = n
            row["value"] += float(value or 0.0)
        return out

    # -- Parquet segments ------------------------------------------------------------------

    def export(self) -> list[Path]:
        """Write every row not yet in a segment, and every claimed segment whose file is
        missing under ``segments_dir`` (its writer died, or it exported to another folder),
        as Parquet segments; returns the files written."""
        written = []
        for kind in _TABLES:
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
        schema = _TABLES[kind]
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
        if kind == "impressions":
            data["items"] = [json.loads(x) for x in data["items"]]
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

    # -- experiments -----------------------------------------------------------------------

    def allocation(self, spec: ExperimentSpec) -> Allocation:
        """The experiment's buckets for its current weights: the stored allocation, moved as
        little as possible when the weights changed (stored for every replica)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute(
                "SELECT allocation FROM allocations WHERE experiment = ?", (spec.name,)
            ).fetchone()
            previous = Allocation.from_json(row[0]) if row else None
            if previous is not None and previous.weights == spec.weights():
                conn.execute("COMMIT")
                return previous
            new = allocate(spec.weights(), previous)
            conn.execute(
                "INSERT OR REPLACE INTO allocations (experiment, allocation) VALUES (?, ?)",
                (spec.name, new.to_json()),
            )
            conn.execute("COMMIT")
            return new
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def variants(self, experiment: str) -> list[str]:
        """The experiment's variants in its spec's order (the control first), as last run."""
        row = (
            self._conn()
            .execute("SELECT allocation FROM allocations WHERE experiment = ?", (experiment,))
            .fetchone()
        )
        return [name for name, _ in Allocation.from_json(row[0]).weights] if row else []

    @property
    def experiments(self) -> ExperimentState:
        return ExperimentState(self)


class ExperimentState:
    """The running experiment, shared by the ingress replicas through the log's file.

    The latest decision wins: a new experiment in the serve config (``args`` or
    ``user_config``) replaces what runs; ``PUT``/``DELETE /admin/experiment`` replace it
    too, and outlive a restart with an unchanged config.
    """

    def __init__(self, log: ImpressionLog) -> None:
        self.log = log

    def _row(self) -> tuple[str | None, str | None]:
        row = (
            self.log._conn()
            .execute("SELECT current, configured FROM experiment_state WHERE id = 1")
            .fetchone()
        )
        return (row[0], row[1]) if row else (None, None)

    def current(self) -> ExperimentSpec | None:
        current, _ = self._row()
        return ExperimentSpec.model_validate_json(current) if current else None

    def configured(self, spec: ExperimentSpec | None) -> ExperimentSpec | None:
        """The serve config asks for ``spec``: it runs if the config changed since it was
        last seen; otherwise whatever was set since (by the API) keeps running."""
        text = spec.model_dump_json() if spec else None
        current, configured = self._row()
        if configured != text:
            self._set(text, text)
            return spec
        return ExperimentSpec.model_validate_json(current) if current else None

    def set(self, spec: ExperimentSpec | None) -> None:
        """Run ``spec`` (None: no experiment) from now on (the admin API)."""
        _, configured = self._row()
        self._set(spec.model_dump_json() if spec else None, configured)

    def _set(self, current: str | None, configured: str | None) -> None:
        self.log._write(
            "INSERT OR REPLACE INTO experiment_state (id, current, configured, updated) "
            "VALUES (1, ?, ?, ?)",
            [(current, configured, time.time())],
            full=True,
        )


def read_log(segments_dir: str | Path, experiment: str | None = None) -> tuple[pa.Table, pa.Table]:
    """(impressions, attributed events) from the Parquet segments, of one experiment when
    ``experiment`` is given; empty tables in the schemas when there are none."""
    out = []
    for kind, schema in _TABLES.items():
        files = sorted((Path(segments_dir) / kind).glob("part-*.parquet"))
        tables = [pq.read_table(f, schema=schema) for f in files]
        table = pa.concat_tables(tables) if tables else schema.empty_table()
        if experiment is not None:
            import pyarrow.compute as pc

            table = table.filter(pc.equal(table["experiment"], experiment))
        out.append(table)
    return out[0], out[1]


__all__ = [
    "EVENTS_SCHEMA",
    "IMPRESSIONS_SCHEMA",
    "ExperimentState",
    "ImpressionLog",
    "read_log",
]
