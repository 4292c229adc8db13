"""Rejected deliveries in their own SQLite file (low volume; writes come from a worker thread).

Each row records its size and bucket; `rejected_buckets` keeps each bucket's running totals and
drop counts, so an add checks the bounds without summing the table.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import orjson

from state.rejected import (
    RECORD_OVERHEAD,
    UNKNOWN,
    BucketUsage,
    Evicted,
    RejectedDelivery,
    RejectedLimits,
    RejectedSummary,
    stored_bytes,
)
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
# Columns added when the store became bounded in bytes; a file from before gets them on open.
_ADDED = {"bucket": "TEXT NOT NULL DEFAULT ''", "size": "INTEGER NOT NULL DEFAULT 0",
          "body_cut": "INTEGER NOT NULL DEFAULT 0", "headers_cut": "INTEGER NOT NULL DEFAULT 0"}
_BUCKETS = """
CREATE INDEX IF NOT EXISTS rejected_by_bucket ON rejected (bucket, seq);
CREATE TABLE IF NOT EXISTS rejected_buckets (
    bucket TEXT PRIMARY KEY, kept INTEGER NOT NULL, kept_bytes INTEGER NOT NULL,
    dropped INTEGER NOT NULL, dropped_bytes INTEGER NOT NULL
);
"""
_COLS = ("id, received_at, provider, store, org, status, reason, headers, body, redriven_at, redrive_result, "
         "body_cut, headers_cut")


def _row(r: tuple[Any, ...]) -> RejectedDelivery:
    return RejectedDelivery(r[0], r[1], r[2], r[3], r[4], r[5], r[6], orjson.loads(r[7]), r[8], r[9], r[10], r[11], r[12])


class SqliteRejectedStore:
    def __init__(self, path: Path, limits: RejectedLimits | None = None) -> None:
        self.limits = limits or RejectedLimits()
        # Not fsynced: anyone can make us refuse a delivery, and an fsync each would compete with the
        # log's. A commit survives any crash of ours; a power cut may lose the last refusals.
        self._conn = connect(path, durable=False)
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            self._migrate()
            self._conn.execute("COMMIT")

    def _migrate(self) -> None:
        """Adds the size columns to a new file, or to one from before the bounds: its rows get their
        size and bucket, and the next add (by ingest, with its limits) applies the bounds to them."""
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(rejected)")}
        if set(_ADDED) <= have:
            return
        for name, kind in _ADDED.items():
            if name not in have:
                self._conn.execute(f"ALTER TABLE rejected ADD COLUMN {name} {kind}")
        for statement in _BUCKETS.split(";")[:-1]:
            self._conn.execute(statement)
        self._conn.execute(
            "UPDATE rejected SET bucket = CASE WHEN org IS NULL THEN ? ELSE store END, "
            "size = length(body) + length(headers) + length(CAST(reason AS BLOB)) + length(CAST(store AS BLOB)) "
            "+ length(CAST(provider AS BLOB)) + ?", (UNKNOWN, RECORD_OVERHEAD),
        )
        self._conn.execute("INSERT INTO rejected_buckets SELECT bucket, count(*), sum(size), 0, 0 FROM rejected GROUP BY bucket")

    def add(self, r: RejectedDelivery) -> Evicted:
        r = self.limits.clip(r)
        size = stored_bytes(r)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    f"INSERT INTO rejected ({_COLS}, bucket, size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.id, r.received_at, r.provider, r.store, r.org, r.status, r.reason, orjson.dumps(r.headers), r.body,
                     r.redriven_at, r.redrive_result, r.body_cut, r.headers_cut, r.bucket, size),
                )
                self._conn.execute(
                    "INSERT INTO rejected_buckets VALUES (?, 1, ?, 0, 0) ON CONFLICT (bucket) DO UPDATE "
                    "SET kept = kept + 1, kept_bytes = kept_bytes + excluded.kept_bytes", (r.bucket, size),
                )
                evicted = self._evict(r.bucket)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return evicted

    def _evict(self, bucket: str) -> Evicted:
        """Drops the oldest rows of `bucket` past the per-store bound, then the oldest of all past the
        total bound."""
        count = size = 0
        over = self._conn.execute(
            "SELECT bucket, kept_bytes - ? FROM rejected_buckets WHERE kept_bytes > ? AND bucket = ?",
            (self.limits.store_bytes, self.limits.store_bytes, bucket),
        ).fetchall()
        for name, excess in over:
            c, b = self._drop_oldest(excess, name)
            count, size = count + c, size + b
        (total,) = self._conn.execute("SELECT coalesce(sum(kept_bytes), 0) FROM rejected_buckets").fetchone()
        if total > self.limits.total_bytes:
            c, b = self._drop_oldest(total - self.limits.total_bytes, None)
            count, size = count + c, size + b
        return Evicted(count, size)

    def _drop_oldest(self, excess: int, bucket: str | None) -> tuple[int, int]:
        where, args = ("", ()) if bucket is None else ("WHERE bucket = ?", (bucket,))
        freed, last = 0, None
        oldest = self._conn.execute(f"SELECT seq, size FROM rejected {where} ORDER BY seq", args)
        for seq, size in oldest:
            freed, last = freed + size, seq
            if freed >= excess:
                break
        oldest.close()
        if last is None:
            return 0, 0
        scope = f"seq <= ?{'' if bucket is None else ' AND bucket = ?'}"
        gone = self._conn.execute(
            f"SELECT bucket, count(*), sum(size) FROM rejected WHERE {scope} GROUP BY bucket", (last, *args)
        ).fetchall()
        self._conn.executemany(
            "UPDATE rejected_buckets SET kept = kept - ?, kept_bytes = kept_bytes - ?, dropped = dropped + ?, "
            "dropped_bytes = dropped_bytes + ? WHERE bucket = ?",
            [(c, b, c, b, name) for name, c, b in gone],
        )
        self._conn.execute(f"DELETE FROM rejected WHERE {scope}", (last, *args))
        return sum(c for _, c, _ in gone), sum(b for _, _, b in gone)

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

    def usage(self) -> dict[str, BucketUsage]:
        with self._lock:
            rows = self._conn.execute("SELECT bucket, kept, kept_bytes, dropped, dropped_bytes FROM rejected_buckets")
            return {r[0]: BucketUsage(*r[1:]) for r in rows}

    def close(self) -> None:
        self._conn.close()
