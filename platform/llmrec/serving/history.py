"""Per-user interaction history for building queries at request time, and the feedback log.

:class:`HistoryStore` is a SQLite file in WAL mode: many readers (every ingress replica) and
one writer at a time, each feedback event committed with ``synchronous=FULL`` before the
HTTP answer. It is seeded once per model version from the training logs shipped with the
version. :class:`FeedbackLog` appends accepted events as Parquet files in the interaction
contract, so that the training job can read them later.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from llmrec.data.contract import INTERACTIONS_SCHEMA

NEGATIVE_EVENTS = frozenset({"dislike", "skip"})
"""Events that mask an item without adding it to the user's written history."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS interactions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    event TEXT NOT NULL,
    value REAL NOT NULL,
    query TEXT,
    timestamp INTEGER NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS interactions_user ON interactions (user_id, timestamp, seq);
CREATE TABLE IF NOT EXISTS seeded (source TEXT PRIMARY KEY, rows INTEGER, at INTEGER);
"""


@dataclass(frozen=True)
class Event:
    """One interaction: what a user did with an item, when."""

    user_id: str
    item_id: str
    event: str = "click"
    value: float = 1.0
    query: str | None = None
    timestamp: int = 0


@dataclass(frozen=True)
class UserState:
    """What the store knows of a user: items in time order (positive events), every item to
    mask, and the last query typed."""

    history: tuple[str, ...]
    seen: frozenset[str]
    last_query: str | None


def thread_connection(
    local: threading.local, path: Path, synchronous: str = "FULL"
) -> sqlite3.Connection:
    """This thread's connection to the SQLite file at ``path`` (opened on first use, WAL mode,
    autocommit; ``synchronous`` FULL makes each commit durable before it returns)."""
    conn = getattr(local, "conn", None)
    if conn is None:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        local.conn = conn
    return conn


class HistoryStore:
    """SQLite-backed user histories (thread-safe; one connection per thread)."""

    def __init__(self, path: str | Path, max_history: int = 200) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_history = max_history
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(_SCHEMA)

    def _conn(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path)

    def seed(self, source: str, histories: Mapping[str, Sequence[str]]) -> int:
        """Load training histories once per ``source`` (e.g. a model version's run id);
        returns the rows inserted (0 when that source was loaded before)."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM seeded WHERE source = ?", (source,)).fetchone():
                conn.execute("ROLLBACK")
                return 0
            # training logs are older than any feedback: negative, ordered timestamps
            rows = [
                (u, item, "train", 1.0, None, -len(items) + k, source)
                for u, items in histories.items()
                for k, item in enumerate(items)
            ]
            conn.execute("DELETE FROM interactions WHERE event = 'train'")
            conn.executemany(
                "INSERT INTO interactions (user_id, item_id, event, value, query, timestamp,"
                " source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute(
                "INSERT INTO seeded (source, rows, at) VALUES (?, ?, ?)",
                (source, len(rows), int(time.time())),
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(rows)

    def append(self, events: Iterable[Event]) -> int:
        """Commit events durably (one transaction); returns how many were written."""
        rows = [
            (e.user_id, e.item_id, e.event, e.value, e.query, e.timestamp, "feedback")
            for e in events
        ]
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany(
                "INSERT INTO interactions (user_id, item_id, event, value, query, timestamp,"
                " source) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return len(rows)

    def user(self, user_id: str) -> UserState | None:
        """The user's state, or None for a user the store has never seen."""
        rows = (
            self._conn()
            .execute(
                "SELECT item_id, event, query FROM interactions WHERE user_id = ? "
                "ORDER BY timestamp, seq",
                (user_id,),
            )
            .fetchall()
        )
        if not rows:
            return None
        history = [item for item, event, _ in rows if event not in NEGATIVE_EVENTS]
        queries = [q for _, _, q in rows if q]
        return UserState(
            history=tuple(history[-self.max_history :]),
            seen=frozenset(item for item, _, _ in rows),
            last_query=queries[-1] if queries else None,
        )

    def users(self, prefix: str = "", limit: int = 20) -> list[str]:
        """Up to ``limit`` known user ids starting with ``prefix``, in sorted order (a range
        over the user index, not a scan)."""
        rows = (
            self._conn()
            .execute(
                "SELECT DISTINCT user_id FROM interactions WHERE user_id >= ? AND user_id < ? "
                "ORDER BY user_id LIMIT ?",
                (prefix, prefix + "\U0010ffff", limit),
            )
            .fetchall()
        )
        return [r[0] for r in rows]

    def events(self, user_id: str, limit: int = 50) -> list[Event]:
        """The user's most recent feedback events, newest first."""
        rows = (
            self._conn()
            .execute(
                "SELECT user_id, item_id, event, value, query, timestamp FROM interactions "
                "WHERE user_id = ? AND source = 'feedback' "
                "ORDER BY timestamp DESC, seq DESC LIMIT ?",
                (user_id, limit),
            )
            .fetchall()
        )
        return [Event(*r) for r in rows]

    def count(self, source: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM interactions" + (" WHERE source = ?" if source else "")
        return int(self._conn().execute(sql, (source,) if source else ()).fetchone()[0])


class FeedbackLog:
    """Accepted events as Parquet files (interaction contract) under one folder."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def append(self, events: Sequence[Event]) -> Path:
        """Write one file for a batch of events (fsynced); returns its path."""
        table = pa.table(
            {
                "user_id": [e.user_id for e in events],
                "item_id": [e.item_id for e in events],
                "timestamp": [e.timestamp for e in events],
                "event": [e.event for e in events],
                "value": [float(e.value) for e in events],
                "query": [e.query for e in events],
            },
            schema=INTERACTIONS_SCHEMA,
        )
        name = f"feedback-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.directory / f".{name}.tmp"
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        final = self.directory / name
        tmp.rename(final)
        return final

    def read(self) -> pa.Table:
        """Every logged event (empty table in the contract when there are none)."""
        files = sorted(self.directory.glob("feedback-*.parquet"))
        if not files:
            return INTERACTIONS_SCHEMA.empty_table()
        return pa.concat_tables(pq.read_table(f, schema=INTERACTIONS_SCHEMA) for f in files)
