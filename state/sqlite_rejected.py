"""Rejected deliveries in their own SQLite file (low volume; writes come from a worker thread)."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson

from state.rejected import KEEP_PER_STORE, RejectedDelivery, RejectedSummary
from state.sqlite_log import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE, received_at REAL NOT NULL, provider TEXT NOT NULL, store TEXT NOT NULL,
    org TEXT, status INTEGER NOT NULL, reason TEXT NOT NULL, headers BLOB NOT NULL, body BLOB NOT NULL,
    redriven_at REAL, redrive_result TEXT
);
CREATE INDEX IF NOT EXISTS rejected_by_store ON rejected (store, seq);
CREATE INDEX IF NOT EXISTS rejected_by_org ON rejected (org, seq);
"""
_COLS = "id, received_at, provider, store, org, status, reason, headers, body, redriven_at, redrive_result"


def _row(r: tuple) -> RejectedDelivery:
    return RejectedDelivery(r[0], r[1], r[2], r[3], r[4], r[5], r[6], orjson.loads(r[7]), r[8], r[9], r[10])


class SqliteRejectedStore:
    def __init__(self, path: Path) -> None:
        self._conn = connect(path)
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def add(self, r: RejectedDelivery) -> None:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute(
                f"INSERT INTO rejected ({_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (r.id, r.received_at, r.provider, r.store, r.org, r.status, r.reason, orjson.dumps(r.headers), r.body,
                 r.redriven_at, r.redrive_result),
            )
            self._conn.execute(
                "DELETE FROM rejected WHERE store = ? AND seq <= (SELECT seq FROM rejected WHERE store = ? "
                "ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (r.store, r.store, KEEP_PER_STORE),
            )
            self._conn.execute("COMMIT")

    def list(self, *, org: str | None = None, store: str | None = None, limit: int = 100) -> list[RejectedDelivery]:
        where, args = [], []
        if org is not None:
            where.append("org = ?")
            args.append(org)
        if store is not None:
            where.append("store = ?")
            args.append(store)
        sql = f"SELECT {_COLS} FROM rejected {'WHERE ' + ' AND '.join(where) if where else ''} ORDER BY seq DESC LIMIT ?"
        with self._lock:
            return [_row(r) for r in self._conn.execute(sql, (*args, limit))]

    def get(self, rejected_id: str) -> RejectedDelivery | None:
        with self._lock:
            r = self._conn.execute(f"SELECT {_COLS} FROM rejected WHERE id = ?", (rejected_id,)).fetchone()
        return _row(r) if r else None

    def mark_redriven(self, rejected_id: str, at: float, result: str) -> None:
        with self._lock:
            self._conn.execute("UPDATE rejected SET redriven_at = ?, redrive_result = ? WHERE id = ?", (at, result, rejected_id))

    def summary(self, store: str) -> RejectedSummary:
        with self._lock:
            (count,) = self._conn.execute("SELECT count(*) FROM rejected WHERE store = ?", (store,)).fetchone()
            last = self._conn.execute(
                "SELECT reason, received_at FROM rejected WHERE store = ? ORDER BY seq DESC LIMIT 1", (store,)
            ).fetchone()
        return RejectedSummary(count, last[0] if last else None, last[1] if last else None)

    def close(self) -> None:
        self._conn.close()
