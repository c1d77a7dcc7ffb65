"""The impression log's SQLite file: one connection per thread, writes in one transaction.

:class:`LogFile` is the base of :class:`~llmrec.experiments.impressions.ImpressionLog`; its
parts (:mod:`~llmrec.experiments.segments`, :mod:`~llmrec.experiments.experiment_state`)
read and write through it. WAL mode with ``synchronous=NORMAL``: a commit is in the
operating system's hands before the call returns (it survives any process's death, with no
disk flush on the request path); ``full=True`` writes flush (``synchronous=FULL``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmrec.serving.history import thread_connection

Statement = tuple[str, Sequence[tuple[Any, ...]]]
"""SQL and the rows to run it with (``executemany``)."""


class LogFile:
    """A SQLite file shared by threads and processes (created with its folder).

    Args:
        path: the SQLite file.
        schema: the ``CREATE ... IF NOT EXISTS`` script run on opening.
    """

    def __init__(self, path: str | Path, schema: str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        with self._conn() as conn:
            conn.executescript(schema)

    def _conn(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path, "NORMAL")

    def _write(self, sql: str, rows: Sequence[tuple[Any, ...]], full: bool = False) -> None:
        self._write_all([(sql, rows)], full)

    def _write_all(self, statements: Sequence[Statement], full: bool = False) -> None:
        """Run ``statements`` in one transaction (all or none)."""
        conn = self._conn()
        if full:
            conn.execute("PRAGMA synchronous=FULL")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for sql, rows in statements:
                    conn.executemany(sql, rows)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            if full:
                conn.execute("PRAGMA synchronous=NORMAL")

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._conn().execute(f"PRAGMA table_info({table})")}


__all__ = ["LogFile", "Statement"]
