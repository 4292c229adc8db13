"""The embedded read model: SQLite tables for day totals and versions, and a changes table as feed.

Records live in `records`, except the UNSTAMPED kinds (segment members and changes: three in four
rows written with live segments), which live in `unstamped_records`: their day is a function of their
key (core/segment_records.py), so one B-tree keyed (org, kind, day, key) both finds a key to upsert
and selects a day range, where `records` pays three (rowid, key, day index) and the day-stamp triggers.

The feed is the `changes` table read by rowid, one row per organisation per write (a JSON array of
the changes applied); the writer commits it with the values, so a follower that polls it never sees
a value without its change or misses one.

The feed keeps the newest KEEP_BYTES of rows, not all (state/feed_retention.py, docs/readmodel_write.md
"The change feed's retention"): a follower that falls further behind gets FeedGap instead of the rows it
missed, and re-reads its snapshot as when the feed breaks.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import TypeVar

from core.changes import Bucket, Change, Record, changes_from_json, changes_to_json, value_from_json
from core.figures import OPEN_END
from core.records import Value
from state import feed_retention
from state.feed_retention import FeedGap
from state.sqlite_log import connect

V = TypeVar("V", bound=Value)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    org TEXT NOT NULL, grain TEXT NOT NULL, start TEXT NOT NULL, store TEXT NOT NULL, currency TEXT NOT NULL,
    gross INTEGER NOT NULL, refunds INTEGER NOT NULL, orders INTEGER NOT NULL, paid_orders INTEGER NOT NULL,
    items INTEGER NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (org, grain, start, store, currency)
);
CREATE TABLE IF NOT EXISTS records (
    org TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, day TEXT NOT NULL, version INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (org, kind, key)
);
CREATE INDEX IF NOT EXISTS records_by_day ON records (org, kind, day);
CREATE TABLE IF NOT EXISTS caught_up (org TEXT PRIMARY KEY, at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS org_versions (org TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS identity (id TEXT NOT NULL);
INSERT INTO identity SELECT lower(hex(randomblob(16))) WHERE NOT EXISTS (SELECT 1 FROM identity);
CREATE TABLE IF NOT EXISTS changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    org TEXT NOT NULL, version INTEGER NOT NULL, body BLOB NOT NULL, upto INTEGER
);
"""
# Per (org, kind, day), how many applied writes touched that day's records: the read side keeps what it
# computed from a day while the count stands (ws_gateway/day_cache.py). Kept by triggers, so it commits
# with the records and costs the writer no statement; a record that moves to another day touches both.
# Segment members and changes are keyed per customer and change, their "day" nearly unique: stamping them
# would add a row per record and a write per write, and no list reads them by day.
UNSTAMPED = frozenset({"segment_member", "segment_change"})
_NOT_UNSTAMPED = "kind NOT IN (" + ", ".join(f"'{k}'" for k in sorted(UNSTAMPED)) + ")"
_DAYS = f"""
CREATE TABLE IF NOT EXISTS record_days (
    org TEXT NOT NULL, kind TEXT NOT NULL, day TEXT NOT NULL, writes INTEGER NOT NULL,
    PRIMARY KEY (org, kind, day)
);
CREATE TRIGGER IF NOT EXISTS record_days_insert AFTER INSERT ON records WHEN new.{_NOT_UNSTAMPED} BEGIN
    INSERT INTO record_days VALUES (new.org, new.kind, new.day, 1)
    ON CONFLICT (org, kind, day) DO UPDATE SET writes = writes + 1;
END;
CREATE TRIGGER IF NOT EXISTS record_days_update AFTER UPDATE ON records WHEN new.{_NOT_UNSTAMPED} BEGIN
    INSERT INTO record_days VALUES (new.org, new.kind, new.day, 1)
    ON CONFLICT (org, kind, day) DO UPDATE SET writes = writes + 1;
    INSERT INTO record_days SELECT old.org, old.kind, old.day, 1 WHERE old.day != new.day
    ON CONFLICT (org, kind, day) DO UPDATE SET writes = writes + 1;
END;
"""
# Records whose day is a function of their key, never stamped: one clustered B-tree serves the upsert (by key,
# its day with it) and the reads by (kind, day range). A file written before it: its rows moved here once.
_UNSTAMPED_IN = "kind IN (" + ", ".join(f"'{k}'" for k in sorted(UNSTAMPED)) + ")"
_UNSTAMPED_TABLE = f"""
CREATE TABLE IF NOT EXISTS unstamped_records (
    org TEXT NOT NULL, kind TEXT NOT NULL, day TEXT NOT NULL, key TEXT NOT NULL, version INTEGER NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (org, kind, day, key)
) WITHOUT ROWID;
INSERT OR IGNORE INTO unstamped_records SELECT org, kind, day, key, version, value FROM records WHERE {_UNSTAMPED_IN};
DELETE FROM records WHERE {_UNSTAMPED_IN};
"""
# A file written before record_days existed: its days, counted once from the records.
_DAYS_FILL = ("INSERT OR IGNORE INTO record_days SELECT org, kind, day, 1 FROM records "
              f"WHERE {_NOT_UNSTAMPED} GROUP BY org, kind, day")
POLL_SECONDS = 0.005
BUSY_MS = 10_000  # state/sqlite_log.py connect's timeout
MOVE_WAIT_MS = 3_600_000
CACHE_KIB = 32 * 1024
MMAP_BYTES = 8 << 30  # address space only: pages are mapped as read (file-backed, reclaimable)
_UPSERT_RECORD = (
    "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (org, kind, key) DO UPDATE SET "
    "day = excluded.day, version = excluded.version, value = excluded.value WHERE excluded.version > records.version")
_UPSERT_UNSTAMPED = (
    "INSERT INTO unstamped_records VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (org, kind, day, key) DO UPDATE SET "
    "version = excluded.version, value = excluded.value WHERE excluded.version > unstamped_records.version")
_UPSERT_BUCKET = (
    "INSERT INTO buckets VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (org, grain, start, store, currency) DO UPDATE SET gross = excluded.gross, "
    "refunds = excluded.refunds, orders = excluded.orders, paid_orders = excluded.paid_orders, "
    "items = excluded.items, version = excluded.version WHERE excluded.version > buckets.version")
_UPSERT_VERSION = "INSERT INTO org_versions VALUES (?, ?) ON CONFLICT (org) DO UPDATE SET version = max(version, excluded.version)"


def _record_row(c: Record[Value]) -> tuple[str, str, str, str, int, bytes]:
    return (c.org, c.kind, c.key, c.day, c.version, c.value_json())


def _unstamped_row(c: Record[Value]) -> tuple[str, str, str, str, int, bytes]:
    return (c.org, c.kind, c.day, c.key, c.version, c.value_json())


def _bucket_row(c: Bucket) -> tuple[str, str, str, str, str, int, int, int, int, int, int]:
    return (c.org, c.grain, c.start, c.store, c.currency, c.gross, c.refunds, c.orders, c.paid_orders, c.items, c.version)


def _row(c: Change) -> tuple[str, tuple[object, ...]]:
    """The statement that writes the change, and its row."""
    if type(c) is Bucket:
        return _UPSERT_BUCKET, _bucket_row(c)
    if c.kind in UNSTAMPED:  # type: ignore[union-attr]  # a Record: mypy does not narrow on type(c) is
        return _UPSERT_UNSTAMPED, _unstamped_row(c)  # type: ignore[arg-type]  # as above
    return _UPSERT_RECORD, _record_row(c)  # type: ignore[arg-type]  # as above


def _upsert(cur: sqlite3.Cursor, changes: Sequence[Change]) -> Sequence[Change]:
    """Writes the changes in the transaction begun on `cur` (a newer version replaces an older) and
    returns those applied, in order.

    Every change applies unless its key already holds its version or a newer one (a replay after a
    restart), so they are written with one statement per table; only when fewer rows changed than were
    written is the transaction rolled back and begun again, and the changes written one at a time to
    learn which applied. (A savepoint instead would copy every page the write touches to its journal.)"""
    groups: dict[str, list[tuple[object, ...]]] = {_UPSERT_RECORD: [], _UPSERT_UNSTAMPED: [], _UPSERT_BUCKET: []}
    for c in changes:
        statement, row = _row(c)
        groups[statement].append(row)
    written = 0
    for statement, group in groups.items():
        if group:
            cur.executemany(statement, group)
            written += cur.rowcount
    if written == len(changes):
        return changes
    cur.execute("ROLLBACK")
    cur.execute("BEGIN IMMEDIATE")
    applied: list[Change] = []
    for c in changes:
        cur.execute(*_row(c))
        if cur.rowcount:
            applied.append(c)
    return applied


class SqliteReadModel:
    def __init__(self, path: Path, keep_bytes: int = feed_retention.KEEP_BYTES,
                 trim_bytes: int = feed_retention.TRIM_BYTES) -> None:
        self._conn = connect(path, durable=False)  # derived from the log: see docs/operations.md
        # SQLite's default page cache (2 MB) misses on every upsert once the records outgrow it: with live
        # segments (tens of records per event) 32 MB cut the write's CPU by a third (bench/dataflow.py floors)
        self._conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
        # Reads through a memory map: another process's commit (the dataflow's) empties this connection's
        # page cache, and a list re-reading today's 8,000 orders then copied every page in again; mapped,
        # it reads them in place (fetching a day's orders right after a write: 20 -> 10 ms, bench data).
        self._conn.execute(f"PRAGMA mmap_size={MMAP_BYTES}")
        self._conn.executescript(_SCHEMA)
        if self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'record_days'").fetchone() is None:
            self._conn.executescript(f"BEGIN IMMEDIATE; {_DAYS} {_DAYS_FILL}; COMMIT;")
        if self._conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'unstamped_records'").fetchone() is None:
            # another process opening the same old file moves them first: wait for it however long it takes
            self._conn.execute(f"PRAGMA busy_timeout = {MOVE_WAIT_MS}")
            self._conn.executescript(f"BEGIN IMMEDIATE; {_UNSTAMPED_TABLE} COMMIT;")
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_MS}")
        feed_retention.prepare(self._conn)
        self._keep_bytes, self._trim_bytes = keep_bytes, trim_bytes
        self._lock = threading.Lock()  # one connection, used from the gateway's worker threads

    def write(self, changes: Sequence[Change]) -> None:
        with self._lock:
            self._write(changes)

    def bulk_load(self, changes: Sequence[Change]) -> None:
        """Writes the changes as `write` does (a newer version wins) but publishes none of them: for
        loading a model nobody follows yet (bench/read_api.py writes 1M orders with it). One statement
        per table for the whole batch."""
        records = [_record_row(c) for c in changes if isinstance(c, Record) and c.kind not in UNSTAMPED]
        unstamped = [_unstamped_row(c) for c in changes if isinstance(c, Record) and c.kind in UNSTAMPED]
        buckets = [_bucket_row(c) for c in changes if not isinstance(c, Record)]
        versions: dict[str, int] = {}
        for c in changes:
            versions[c.org] = max(versions.get(c.org, 0), c.version)
        with self._lock:
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                cur.executemany(_UPSERT_RECORD, records)
                cur.executemany(_UPSERT_UNSTAMPED, unstamped)
                cur.executemany(_UPSERT_BUCKET, buckets)
                cur.executemany(_UPSERT_VERSION, list(versions.items()))
                cur.execute("COMMIT")
            except BaseException:
                cur.execute("ROLLBACK")
                raise

    def _write(self, changes: Sequence[Change]) -> None:
        cur = self._conn.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            by_org: dict[str, list[Change]] = {}
            for c in _upsert(cur, changes):
                mine = by_org.get(c.org)
                if mine is None:
                    mine = by_org[c.org] = []
                mine.append(c)
            if by_org:
                rows: list[tuple[str, int, bytes]] = []
                for org, mine in by_org.items():
                    version = max(c.version for c in mine)
                    cur.execute(_UPSERT_VERSION, (org, version))
                    rows.append((org, version, changes_to_json(mine)))
                feed_retention.publish(cur, rows, self._keep_bytes, self._trim_bytes)
            cur.execute("COMMIT")
        except BaseException:
            cur.execute("ROLLBACK")
            raise

    def caught_up(self, at: dict[str, int]) -> None:
        with self._lock:
            self._conn.executemany("INSERT INTO caught_up VALUES (?, ?) ON CONFLICT (org) DO UPDATE "
                                   "SET at = max(at, excluded.at)", list(at.items()))

    def caught_up_at(self, org: str) -> int | None:
        with self._lock:
            row = self._conn.execute("SELECT at FROM caught_up WHERE org = ?", (org,)).fetchone()
        return None if row is None else int(row[0])

    def snapshot(self, org: str, grain: str | None = None) -> tuple[int, list[Bucket]]:
        with self._lock:
            return self._snapshot(org, grain)

    def _snapshot(self, org: str, grain: str | None) -> tuple[int, list[Bucket]]:
        cur = self._conn.cursor()
        cur.execute("BEGIN")
        try:
            row = cur.execute("SELECT version FROM org_versions WHERE org = ?", (org,)).fetchone()
            rows = cur.execute(
                "SELECT org, version, grain, start, store, currency, gross, refunds, orders, paid_orders, items "
                "FROM buckets WHERE org = ? AND grain = coalesce(?, grain)",
                (org, grain),
            ).fetchall()
        finally:
            cur.execute("COMMIT")
        return (row[0] if row else 0), [Bucket(*r) for r in rows]

    async def feed(self) -> AsyncIterator[list[Change] | None]:
        reader = connect(self._path_of())
        loop = asyncio.get_running_loop()
        polling: asyncio.Future[list[tuple[int, bytes]]] | None = None

        def poll(after: int) -> list[tuple[int, bytes]]:
            return reader.execute("SELECT seq, body FROM changes WHERE seq > ? ORDER BY seq LIMIT 1000", (after,)).fetchall()

        try:
            (last,) = reader.execute("SELECT coalesce(max(seq), 0) FROM changes").fetchone()
            yield None
            while True:
                polling = loop.run_in_executor(None, poll, last)
                rows = await asyncio.shield(polling)
                if rows and rows[0][0] > last + 1:  # seqs are contiguous but for the rows retention deleted
                    raise FeedGap(last, rows[0][0])
                for seq, body in rows:
                    last = seq
                    yield changes_from_json(body)
                if not rows:
                    await asyncio.sleep(POLL_SECONDS)
        finally:
            # Closing a connection that a worker thread is still querying crashes SQLite: wait for it.
            if polling is not None and not polling.done():
                await asyncio.wait([polling])
            reader.close()

    def records(self, org: str, kind: type[V], first: str = "", last: str = OPEN_END) -> list[Record[V]]:
        table = "unstamped_records" if kind.KIND in UNSTAMPED else "records"
        with self._lock:
            rows = self._conn.execute(
                f"SELECT key, day, version, value FROM {table} WHERE org = ? AND kind = ? AND day BETWEEN ? AND ?",
                (org, kind.KIND, first, last),
            ).fetchall()
        return [Record(org, v, kind.KIND, k, d, value_from_json(kind, val)) for k, d, v, val in rows]

    def identity(self) -> str:
        """Made once with the file (state/day_stamps.py Identified): a model rebuilt in a new file is another."""
        with self._lock:
            row = self._conn.execute("SELECT id FROM identity").fetchone()
        return str(row[0])

    def day_stamps(self, org: str, kind: type[V], first: str = "", last: str = OPEN_END) -> dict[str, int]:
        """Per day in [first, last] holding records of the kind, a stamp that changes whenever a write
        changes that day's records (state/day_stamps.py)."""
        if kind.KIND in UNSTAMPED:
            raise ValueError(f"{kind.KIND} records are not stamped by day (UNSTAMPED)")
        with self._lock:
            rows = self._conn.execute(
                "SELECT day, writes FROM record_days WHERE org = ? AND kind = ? AND day BETWEEN ? AND ?",
                (org, kind.KIND, first, last),
            ).fetchall()
        return dict(rows)

    def day_versions(self, org: str, kind: type[V], day: str) -> dict[str, int]:
        """Per record of the kind on `day`, its version (state/day_stamps.py DayVersioned): no value read."""
        if kind.KIND in UNSTAMPED:
            raise ValueError(f"{kind.KIND} records are not stamped by day (UNSTAMPED)")
        with self._lock:
            rows = self._conn.execute("SELECT key, version FROM records WHERE org = ? AND kind = ? AND day = ?",
                                      (org, kind.KIND, day)).fetchall()
        return dict(rows)

    def records_by_key(self, org: str, kind: type[V], keys: Sequence[str]) -> list[Record[V]]:
        """The records of the kind with these keys, whatever their day (DayVersioned)."""
        if kind.KIND in UNSTAMPED:
            raise ValueError(f"{kind.KIND} records are not stamped by day (UNSTAMPED)")
        rows: list[tuple[str, str, int, bytes]] = []
        with self._lock:
            for i in range(0, len(keys), 500):  # SQLite's bound on parameters is 32,766 since 3.32; 999 before
                chunk = keys[i:i + 500]
                rows += self._conn.execute(
                    "SELECT key, day, version, value FROM records WHERE org = ? AND kind = ? AND key IN "
                    f"({', '.join('?' * len(chunk))})", (org, kind.KIND, *chunk)).fetchall()
        return [Record(org, v, kind.KIND, k, d, value_from_json(kind, val)) for k, d, v, val in rows]

    def _path_of(self) -> str:
        path: str = self._conn.execute("PRAGMA database_list").fetchone()[2]
        return path

    def close(self) -> None:
        self._conn.close()
