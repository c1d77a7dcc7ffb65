"""Live catalogue changes: items added, updated and retired while a version is served.

:class:`CatalogueState` is the durable record, a SQLite file beside the history store
(``catalogue_db``): every item posted to ``/admin/items`` (in the item contract), every item
retired, and each served version's vector of each live item. Every change takes the next
number of one sequence, so that a replica knows it is behind with one cheap read.

Replicas never receive changes directly (a Serve handle reaches one replica, and an encoder
may have several): each consumer of a version (the ingress's query builder, the encoder's
user tower, the ranker's index) calls :func:`sync` before it answers, and applies what
changed since the sequence number it last saw (:class:`LiveChanges`). The ingress embeds new
items with the served version's item tower, and records items and vectors in one transaction
(:meth:`~llmrec.serving.live_catalogue.LiveCatalogue.add`); a version that starts to be
served (a swap, a restart) first embeds the live items it has no vector for
(:meth:`~llmrec.serving.live_catalogue.LiveCatalogue.prepare`). The update job reads the
live items as new catalogue rows (:meth:`CatalogueState.items_table`).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import pyarrow as pa

from llmrec.data.contract import ITEMS_SCHEMA
from llmrec.data.text import ItemText
from llmrec.serving.history import thread_connection

_SCHEMA = """
CREATE TABLE IF NOT EXISTS live_items (
    item_id TEXT PRIMARY KEY,
    title TEXT NOT NULL,
    text TEXT,
    categories TEXT NOT NULL,
    added_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS retired_items (
    item_id TEXT PRIMARY KEY,
    retired_at INTEGER NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS live_vectors (
    model_uri TEXT NOT NULL,
    item_id TEXT NOT NULL,
    item_seq INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    vector BLOB NOT NULL,
    PRIMARY KEY (model_uri, item_id)
);
CREATE TABLE IF NOT EXISTS sequence (id INTEGER PRIMARY KEY CHECK (id = 0), seq INTEGER);
INSERT OR IGNORE INTO sequence (id, seq) VALUES (0, 0);
"""


@dataclass(frozen=True)
class LiveItem:
    """An item in the catalogue contract, added while serving."""

    item_id: str
    title: str
    text: str | None = None
    categories: tuple[str, ...] = ()

    def item_text(self) -> ItemText:
        """What the item tower reads."""
        return ItemText(self.title, self.categories, self.text)


@dataclass(frozen=True)
class LiveChanges:
    """What changed for one version since a consumer last looked.

    ``items`` were added or updated (``vectors``: their vectors for the version, row by row,
    when asked for; items without a current vector for the version are left out then);
    ``retired`` is every retired item id now (not only the newly retired).
    """

    seq: int
    items: list[LiveItem]
    vectors: np.ndarray | None
    retired: frozenset[str]


class LiveTarget(Protocol):
    """A consumer of one version's live changes (query builder, encoder, ranker)."""

    live_seq: int
    """The sequence number of the last changes applied (0: none)."""
    needs_vectors: bool
    """Whether it reads the version's vectors (and so only items that have one)."""

    def apply_live(self, changes: LiveChanges) -> None: ...


class CatalogueState:
    """The SQLite record of live catalogue changes (thread-safe; one connection a thread).

    Args:
        path: the database file (created with its folder when missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _conn(self) -> sqlite3.Connection:
        return thread_connection(self._local, self.path)

    def seq(self) -> int:
        """The number of the latest change (0: none yet); one indexed read."""
        return int(self._conn().execute("SELECT seq FROM sequence WHERE id = 0").fetchone()[0])

    def _write(self, work: Callable[[sqlite3.Connection, int], object]) -> int:
        """Run ``work(conn, seq)`` in one transaction with the next sequence number."""
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            seq = int(conn.execute("SELECT seq FROM sequence WHERE id = 0").fetchone()[0]) + 1
            work(conn, seq)
            conn.execute("UPDATE sequence SET seq = ? WHERE id = 0", (seq,))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return seq

    def upsert(self, items: Sequence[LiveItem], model_uri: str, vectors: np.ndarray) -> int:
        """Record ``items`` (new ones added, existing ones replaced and no longer retired)
        and their ``vectors`` for ``model_uri``, durably, as one change; returns its number."""
        now = int(time.time())
        vecs = np.asarray(vectors, dtype=np.float32)

        def work(conn: sqlite3.Connection, seq: int) -> None:
            conn.executemany(
                "INSERT INTO live_items (item_id, title, text, categories, added_at, "
                "updated_at, seq) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (item_id) DO UPDATE "
                "SET title = excluded.title, text = excluded.text, "
                "categories = excluded.categories, updated_at = excluded.updated_at, "
                "seq = excluded.seq",
                [
                    (i.item_id, i.title, i.text, json.dumps(list(i.categories)), now, now, seq)
                    for i in items
                ],
            )
            conn.executemany(
                "DELETE FROM retired_items WHERE item_id = ?", [(i.item_id,) for i in items]
            )
            self._put_vectors(conn, model_uri, [(i.item_id, seq) for i in items], vecs, seq)

        return self._write(work)

    def put_vectors(
        self, model_uri: str, items: Sequence[tuple[str, int]], vectors: np.ndarray
    ) -> int:
        """Record a version's vectors of ``(item_id, item seq)`` live items (the item as it was
        at that change); returns the change number."""
        vecs = np.asarray(vectors, dtype=np.float32)
        return self._write(lambda conn, seq: self._put_vectors(conn, model_uri, items, vecs, seq))

    @staticmethod
    def _put_vectors(
        conn: sqlite3.Connection,
        model_uri: str,
        items: Sequence[tuple[str, int]],
        vectors: np.ndarray,
        seq: int,
    ) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO live_vectors (model_uri, item_id, item_seq, seq, vector) "
            "VALUES (?, ?, ?, ?, ?)",
            [
                (model_uri, item_id, item_seq, seq, v.astype(np.float32).tobytes())
                for (item_id, item_seq), v in zip(items, vectors, strict=True)
            ],
        )

    def retire(self, item_ids: Collection[str]) -> tuple[list[str], list[str]]:
        """Retire items (they stay in histories, leave recommendations); returns (newly
        retired, already retired)."""
        already = self._present("retired_items", item_ids)
        fresh = [i for i in dict.fromkeys(item_ids) if i not in already]
        if fresh:
            now = int(time.time())
            self._write(
                lambda c, seq: c.executemany(
                    "INSERT OR IGNORE INTO retired_items (item_id, retired_at, seq) "
                    "VALUES (?, ?, ?)",
                    [(i, now, seq) for i in fresh],
                )
            )
        return fresh, [i for i in dict.fromkeys(item_ids) if i in already]

    def retired(self) -> frozenset[str]:
        """Every retired item id."""
        rows = self._conn().execute("SELECT item_id FROM retired_items").fetchall()
        return frozenset(r[0] for r in rows)

    def live_ids(self, among: Collection[str]) -> frozenset[str]:
        """Which of ``among`` were posted live (retired or not)."""
        return self._present("live_items", among)

    def _present(self, table: str, ids: Collection[str]) -> frozenset[str]:
        wanted, found = list(dict.fromkeys(ids)), set[str]()
        for start in range(0, len(wanted), 500):  # SQLite's bound-parameter limit
            part = wanted[start : start + 500]
            marks = ",".join("?" * len(part))
            rows = self._conn().execute(
                f"SELECT item_id FROM {table} WHERE item_id IN ({marks})", part
            )
            found.update(r[0] for r in rows.fetchall())
        return frozenset(found)

    def missing(self, model_uri: str) -> list[tuple[LiveItem, int]]:
        """Live items (and the change that last set them) with no current vector for
        ``model_uri``: what a version must embed before it serves them."""
        rows = (
            self._conn()
            .execute(
                "SELECT i.item_id, i.title, i.text, i.categories, i.seq FROM live_items i "
                "LEFT JOIN live_vectors v ON v.item_id = i.item_id AND v.model_uri = ? "
                "WHERE v.item_id IS NULL OR v.item_seq != i.seq ORDER BY i.seq, i.item_id",
                (model_uri,),
            )
            .fetchall()
        )
        return [(_item(r[:4]), int(r[4])) for r in rows]

    def changes(self, model_uri: str, after: int, vectors: bool) -> LiveChanges:
        """What changed for ``model_uri`` since change ``after``.

        With ``vectors``: the items whose row or whose vector for the version changed,
        that have a current vector, with it. Without: the items whose row changed.
        """
        conn = self._conn()
        conn.execute("BEGIN")  # one snapshot for the sequence number and the rows
        try:
            seq = int(conn.execute("SELECT seq FROM sequence WHERE id = 0").fetchone()[0])
            if vectors:
                rows = conn.execute(
                    "SELECT i.item_id, i.title, i.text, i.categories, v.vector "
                    "FROM live_items i JOIN live_vectors v ON v.item_id = i.item_id "
                    "AND v.model_uri = ? AND v.item_seq = i.seq "
                    "WHERE i.seq > ? OR v.seq > ? ORDER BY i.seq, i.item_id",
                    (model_uri, after, after),
                ).fetchall()
            else:
                rows = conn.execute(
                    "SELECT item_id, title, text, categories FROM live_items WHERE seq > ? "
                    "ORDER BY seq, item_id",
                    (after,),
                ).fetchall()
            retired = frozenset(
                r[0] for r in conn.execute("SELECT item_id FROM retired_items").fetchall()
            )
        finally:
            conn.execute("COMMIT")
        items = [_item(r[:4]) for r in rows]
        vecs = None
        if vectors:
            vecs = (
                np.stack([np.frombuffer(r[4], dtype=np.float32) for r in rows])
                if rows
                else np.zeros((0, 0), dtype=np.float32)
            )
        return LiveChanges(seq, items, vecs, retired)

    def items_table(self) -> pa.Table:
        """Every live item as rows of the item contract (retired ones too: their history
        stays), for the update job."""
        rows = (
            self._conn()
            .execute("SELECT item_id, title, text, categories FROM live_items ORDER BY seq")
            .fetchall()
        )
        items = [_item(r) for r in rows]
        return pa.table(
            {
                "item_id": [i.item_id for i in items],
                "title": [i.title for i in items],
                "text": [i.text for i in items],
                "categories": [list(i.categories) for i in items],
            },
            schema=ITEMS_SCHEMA,
        )


def _item(row: Sequence[object]) -> LiveItem:
    item_id, title, text, categories = row
    return LiveItem(
        str(item_id),
        str(title),
        None if text is None else str(text),
        tuple(json.loads(str(categories))),
    )


def sync(state: CatalogueState, model_uri: str, target: LiveTarget) -> bool:
    """Bring ``target`` (a consumer of ``model_uri``) up to the latest change; returns
    whether anything was applied. One read when nothing changed."""
    if state.seq() <= target.live_seq:
        return False
    changes = state.changes(model_uri, target.live_seq, target.needs_vectors)
    target.apply_live(changes)
    target.live_seq = changes.seq
    return True


__all__ = [
    "CatalogueState",
    "LiveChanges",
    "LiveItem",
    "LiveTarget",
    "sync",
]
