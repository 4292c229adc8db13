"""Connection statistics and sync checkpoints in a small SQLite file."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson

from state.connections import StoreActivity
from state.sqlite_log import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS conn_minutes (store TEXT, minute INTEGER, n INTEGER NOT NULL, PRIMARY KEY (store, minute));
CREATE TABLE IF NOT EXISTS conn_last (store TEXT PRIMARY KEY, last_event_time INTEGER, last_received_at REAL);
CREATE TABLE IF NOT EXISTS sync_state (store TEXT PRIMARY KEY, state BLOB NOT NULL);
"""
KEEP_MINUTES = 24 * 60


class SqliteConnectionStats:
    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def record(self, activity: list[StoreActivity]) -> None:
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            for a in activity:
                c.executemany(
                    "INSERT INTO conn_minutes VALUES (?, ?, ?) ON CONFLICT (store, minute) DO UPDATE SET n = n + excluded.n",
                    [(a.store, m, n) for m, n in a.minute_counts.items()],
                )
                c.execute(
                    "INSERT INTO conn_last VALUES (?, ?, ?) ON CONFLICT (store) DO UPDATE SET "
                    "last_event_time = max(coalesce(last_event_time, excluded.last_event_time), coalesce(excluded.last_event_time, last_event_time)), "
                    "last_received_at = max(coalesce(last_received_at, excluded.last_received_at), coalesce(excluded.last_received_at, last_received_at))",
                    (a.store, a.last_event_time, a.last_received_at),
                )
                if a.minute_counts:
                    c.execute("DELETE FROM conn_minutes WHERE store = ? AND minute < ?", (a.store, max(a.minute_counts) - KEEP_MINUTES))
            c.execute("COMMIT")

    def activity(self, store: str, since_minute: int) -> tuple[int, int | None, float | None]:
        with self._lock:
            (n,) = self._conn.execute(
                "SELECT coalesce(sum(n), 0) FROM conn_minutes WHERE store = ? AND minute >= ?", (store, since_minute)
            ).fetchone()
            last = self._conn.execute("SELECT last_event_time, last_received_at FROM conn_last WHERE store = ?", (store,)).fetchone()
        return n, (last[0] if last else None), (last[1] if last else None)

    def active_minutes(self, store: str, since_minute: int, until_minute: int) -> list[int]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT minute FROM conn_minutes WHERE store = ? AND minute BETWEEN ? AND ? AND n > 0 ORDER BY minute",
                (store, since_minute, until_minute),
            ).fetchall()
        return [m for (m,) in rows]

    def save_sync(self, store: str, state: dict[str, Any]) -> None:
        with self._lock:
            self._conn.execute(
                "INSERT INTO sync_state VALUES (?, ?) ON CONFLICT (store) DO UPDATE SET state = excluded.state",
                (store, orjson.dumps(state)),
            )

    def load_sync(self, store: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT state FROM sync_state WHERE store = ?", (store,)).fetchone()
        return orjson.loads(row[0]) if row else None

    def close(self) -> None:
        self._conn.close()
