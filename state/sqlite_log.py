"""The embedded event log: one SQLite file in WAL mode with synchronous=FULL.

All appends go through one writer thread that commits whatever is queued in one transaction
(group commit): one fsync serves many concurrent webhooks, and callers are answered only after it.
SQLite has a single writer, so rowids become visible in order and a reader never skips a gap.
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path

from core.events import Event
from state.log import DEFAULT_PARTITIONS, LogUnavailable, Row, per_caller, rows_of

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    part INTEGER NOT NULL,
    org TEXT NOT NULL,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    UNIQUE (org, id)
);
CREATE INDEX IF NOT EXISTS events_by_part ON events (part, seq);
"""
_MAX_BATCH = 2000
_WAL_ATTEMPTS = 200  # 50 ms apart: up to 10 s for another process to finish switching the file to WAL
_INSERT = "INSERT OR IGNORE INTO events (part, org, id, body) VALUES (?, ?, ?, ?)"


def connect(path: Path | str, durable: bool = True) -> sqlite3.Connection:
    """WAL mode. durable: fsync every commit (the log: we answer 2xx after it); otherwise a commit
    survives any crash of ours but not the machine's power (derived data the log can rebuild)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    for attempt in range(_WAL_ATTEMPTS):
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            # Two processes opening a new file at once race to switch it to WAL, and that switch
            # does not wait on the busy timeout: wait a little and try again.
            if "locked" not in str(exc) or attempt == _WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.05)
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'NORMAL'}")
    return conn


def _settle(fut: Future[list[bool]], result: list[bool] | None = None, exception: Exception | None = None) -> None:
    """Answers a caller, unless it stopped waiting (a cancelled request): the writer must go on."""
    if not fut.set_running_or_notify_cancel():
        return
    if exception is not None:
        fut.set_exception(exception)
    else:
        fut.set_result(result if result is not None else [])


class SqliteEventLog:
    def __init__(self, path: Path, partitions: int = DEFAULT_PARTITIONS) -> None:
        self.partitions = partitions
        self._conn = connect(path)
        self._conn.executescript(_SCHEMA)
        self._queue: queue.SimpleQueue[tuple[list[Row], Future[list[bool]]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._writer, name="sqlite-log-writer", daemon=True)
        self._thread.start()

    async def append(self, events: Sequence[Event]) -> list[bool]:
        fut: Future[list[bool]] = Future()
        self._queue.put((rows_of(events, self.partitions), fut))
        return await asyncio.wrap_future(fut)

    def append_sync(self, events: Sequence[Event]) -> list[bool]:
        fut: Future[list[bool]] = Future()
        self._queue.put((rows_of(events, self.partitions), fut))
        return fut.result()

    def _writer(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < _MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._commit(batch)
            if stop:
                return

    def _commit(self, batch: list[tuple[list[Row], Future[list[bool]]]]) -> None:
        rows = [row for mine, _ in batch for row in mine]
        try:
            flags = self._insert(rows)
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            for _, fut in batch:
                _settle(fut, exception=LogUnavailable(f"event log write failed: {exc}"))
            return
        for fut, mine in per_caller(batch, flags):
            _settle(fut, result=mine)

    def _insert(self, rows: list[Row]) -> list[bool]:
        """One transaction; True where a row was new. All rows go in with one executemany; when some
        were duplicates, the rows this transaction added (seq above the old maximum) say which."""
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        before = conn.total_changes
        (top,) = conn.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()
        conn.executemany(_INSERT, rows)
        if conn.total_changes - before == len(rows):
            flags = [True] * len(rows)
        else:
            added = set(conn.execute("SELECT org, id FROM events WHERE seq > ?", (top,)).fetchall())
            flags = []
            for _, org, event_id, _ in rows:
                key = (org, event_id)
                flags.append(key in added)
                added.discard(key)  # the same id twice in one batch: the first is the new one
        conn.execute("COMMIT")
        return flags

    async def close(self) -> None:
        self._queue.put(None)
        await asyncio.to_thread(self._thread.join)
        self._conn.close()


class SqliteLogReader:
    def __init__(self, path: Path, partitions: int = DEFAULT_PARTITIONS) -> None:
        self.partitions = partitions
        self._conn = connect(path)
        self._conn.executescript(_SCHEMA)

    def read(self, partition: int, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        rows = self._conn.execute(
            "SELECT seq, body FROM events WHERE part = ? AND seq > ? ORDER BY seq LIMIT ?",
            (partition, int(after or 0), limit),
        ).fetchall()
        return [(str(seq), body) for seq, body in rows]

    def close(self) -> None:
        self._conn.close()
