"""Share links in a small SQLite file, one row per link, keyed by the hash of its token."""

from __future__ import annotations

import threading
from dataclasses import replace
from pathlib import Path

from core.shares import Share
from state.shares import share_from_json, share_json
from state.sqlite_log import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS shares (token_sha256 TEXT PRIMARY KEY, id TEXT UNIQUE NOT NULL, org TEXT NOT NULL,
                                   created_at INTEGER NOT NULL, doc BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS shares_org ON shares (org, created_at);
"""


class SqliteShareStore:
    def __init__(self, path: Path) -> None:
        self._conn = connect(path)  # durable: a revoke must survive a crash
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def add(self, share: Share) -> None:
        with self._lock:
            self._conn.execute("INSERT INTO shares VALUES (?, ?, ?, ?, ?)",
                               (share.token_sha256, share.id, share.org, share.created_at, share_json(share)))

    def by_hash(self, token_sha256: str) -> Share | None:
        with self._lock:
            row = self._conn.execute("SELECT doc FROM shares WHERE token_sha256 = ?", (token_sha256,)).fetchone()
        return share_from_json(row[0]) if row else None

    def list(self, org: str) -> list[Share]:
        with self._lock:
            rows = self._conn.execute("SELECT doc FROM shares WHERE org = ? ORDER BY created_at DESC, id", (org,)).fetchall()
        return [share_from_json(r[0]) for r in rows]

    def revoke(self, org: str, share_id: str, at: int) -> Share | None:
        with self._lock:
            c = self._conn
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute("SELECT doc FROM shares WHERE id = ? AND org = ?", (share_id, org)).fetchone()
                if row is None:
                    return None
                share = share_from_json(row[0])
                if share.revoked_at is None:
                    share = replace(share, revoked_at=at)
                    c.execute("UPDATE shares SET doc = ? WHERE id = ?", (share_json(share), share_id))
                return share
            finally:
                c.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
