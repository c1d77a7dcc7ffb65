"""The impression log: every answer and every attributed feedback event, durably, for analysis.

:class:`ImpressionLog` is a SQLite file in WAL mode beside the history store, shared by every
ingress replica. An answer's row is committed before the answer is sent, with
``synchronous=NORMAL``: in WAL mode a commit is then in the operating system's hands
before the call returns, so it survives the death of any process (a killed replica), while
costing no disk flush on the request path; only a power cut or kernel crash may lose the
last answers' rows. Attributed feedback is committed with ``synchronous=FULL`` (flushed),
like the history store.

In the same transactions the log keeps each item's *evidence* (times shown, looks, clicks:
:mod:`llmrec.experiments.exploration`), which exploration reads per request. For analysis
the rows are exported as Parquet segments (:mod:`llmrec.experiments.segments`); the log
also keeps the running experiment and each experiment's bucket allocation
(:mod:`llmrec.experiments.experiment_state`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from llmrec.experiments.attribution import Attributed, Impression
from llmrec.experiments.experiment_state import ExperimentRecords, ExperimentState
from llmrec.experiments.exploration import TOTAL, EvidenceRows, clicks_of, tally
from llmrec.experiments.logfile import Statement
from llmrec.experiments.segments import (
    EVENTS_SCHEMA,
    IMPRESSIONS_SCHEMA,
    SEGMENT_ROWS,
    Segments,
    read_log,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS impressions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id TEXT NOT NULL UNIQUE, timestamp REAL NOT NULL, experiment TEXT NOT NULL,
    variant TEXT NOT NULL, model_uri TEXT NOT NULL, model_version TEXT NOT NULL,
    unit TEXT NOT NULL, unit_kind TEXT NOT NULL, user_id TEXT, session_id TEXT,
    items TEXT NOT NULL, shown INTEGER NOT NULL, latency_ms REAL NOT NULL,
    explored TEXT NOT NULL DEFAULT '[]'
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
CREATE TABLE IF NOT EXISTS item_evidence (
    item_id TEXT PRIMARY KEY, shown INTEGER NOT NULL DEFAULT 0,
    looked REAL NOT NULL DEFAULT 0, clicks INTEGER NOT NULL DEFAULT 0
);
"""

_IMPRESSION_COLUMNS = [f.name for f in IMPRESSIONS_SCHEMA]
_EVENT_COLUMNS = [f.name for f in EVENTS_SCHEMA]
_SHOWN = (
    "INSERT INTO item_evidence (item_id, shown, looked) VALUES (?, ?, ?) ON CONFLICT(item_id) "
    "DO UPDATE SET shown = shown + excluded.shown, looked = looked + excluded.looked"
)
_CLICKED = (
    "INSERT INTO item_evidence (item_id, clicks) VALUES (?, ?) ON CONFLICT(item_id) "
    "DO UPDATE SET clicks = clicks + excluded.clicks"
)


class ImpressionLog(Segments, ExperimentRecords):
    """Answers and attributed feedback in SQLite (thread-safe: a connection per thread),
    exported to Parquet segments under ``segments_dir``.

    Args:
        path: the SQLite file (created with its folder).
        segments_dir: the Parquet folder (``impressions/``, ``events/`` below it).
    """

    def __init__(self, path: str | Path, segments_dir: str | Path) -> None:
        super().__init__(path, _SCHEMA)
        self.segments_dir = Path(segments_dir)
        if "explored" not in self._columns("impressions"):  # a log from before exploration
            self._write(
                "ALTER TABLE impressions ADD COLUMN explored TEXT NOT NULL DEFAULT '[]'", [()]
            )

    # -- answers and feedback ----------------------------------------------------------------

    def record(self, impressions: Iterable[Impression]) -> None:
        """Commit answers and their items' evidence (one transaction); survives any
        process's death once returned."""
        given = list(impressions)
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
                json.dumps(list(i.explored)),
                len(i.items),
            )
            for i in given
        ]
        shown = [(item, n, looked) for item, (n, looked) in tally(given).items()]
        statements: list[Statement] = [
            (
                f"INSERT INTO impressions ({', '.join(_IMPRESSION_COLUMNS)}, shown) "
                f"VALUES ({', '.join('?' * (len(_IMPRESSION_COLUMNS) + 1))})",
                rows,
            ),
            (_SHOWN, shown),
        ]
        self._write_all(statements)

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
                values["explored"] = tuple(json.loads(values["explored"]))
                out[values["request_id"]] = Impression(**values)
        return out

    def record_events(self, events: Iterable[Attributed]) -> None:
        """Commit attributed feedback, and the clicked items' evidence, durably (flushed,
        like the history store)."""
        given = list(events)
        rows = [tuple(getattr(e, c) for c in _EVENT_COLUMNS) for e in given]
        insert = (
            f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) "
            f"VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
        )
        self._write_all([(insert, rows), (_CLICKED, list(clicks_of(given).items()))], full=True)

    def evidence(self, item_ids: Sequence[str]) -> EvidenceRows:
        """Each item's (times shown, looks, attributed clicks) since the log has counted
        them, row by row, and the totals over every item."""
        ids = [*dict.fromkeys(item_ids), TOTAL]
        found: dict[str, tuple[float, float, float]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            for item, shown, looked, clicks in self._conn().execute(
                "SELECT item_id, shown, looked, clicks FROM item_evidence "
                f"WHERE item_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            ):
                found[item] = (shown, looked, clicks)
        rows = np.array([found.get(i, (0, 0.0, 0)) for i in item_ids], dtype=float)
        rows = rows.reshape(len(item_ids), 3)
        total = found.get(TOTAL, (0, 0.0, 0))
        return EvidenceRows(rows[:, 0], rows[:, 1], rows[:, 2], total[1], total[2])

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


__all__ = [
    "EVENTS_SCHEMA",
    "IMPRESSIONS_SCHEMA",
    "SEGMENT_ROWS",
    "ExperimentState",
    "ImpressionLog",
    "read_log",
]
