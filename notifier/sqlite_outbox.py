"""The embedded outbox: one SQLite file (WAL, fsync on commit) in the data directory.

Notifier processes sharing the file claim with an UPDATE ... RETURNING inside BEGIN IMMEDIATE, so
two claims never take the same row: SQLite has one writer at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from notifier.actions import Action, decode_action, delivery_id, encode_action
from notifier.outbox import LEASE_MS, Attempt, Claimed, Delivery, Result, Stats, Status, normal_address
from state.sqlite_log import connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE, key TEXT NOT NULL, org TEXT NOT NULL, automation TEXT NOT NULL, channel TEXT NOT NULL,
    status TEXT NOT NULL, action BLOB NOT NULL, fired_at INTEGER NOT NULL, created_at INTEGER NOT NULL,
    next_at INTEGER NOT NULL, tries INTEGER NOT NULL DEFAULT 0, delivered_at INTEGER,
    lease_owner TEXT, lease_until INTEGER NOT NULL DEFAULT 0, attempts BLOB NOT NULL DEFAULT X'5B5D',
    ended_at INTEGER  -- when it was delivered or cancelled (what prune goes by)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_at);
CREATE INDEX IF NOT EXISTS deliveries_by_key ON deliveries (key);
CREATE INDEX IF NOT EXISTS deliveries_by_org ON deliveries (org, seq);
CREATE TABLE IF NOT EXISTS suppressed (
    org TEXT NOT NULL, address TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (org, address)
);
CREATE TABLE IF NOT EXISTS disabled_channels (
    org TEXT NOT NULL, channel TEXT NOT NULL, reason TEXT NOT NULL, at INTEGER NOT NULL, PRIMARY KEY (org, channel)
);
"""
_COLS = "id, action, status, created_at, next_at, tries, delivered_at, attempts"
_CLAIMED = _COLS.replace("attempts", "'[]'")  # a claim needs no past attempts (tries counts them)
_ATTEMPTS = msgspec.json.Decoder(list[Attempt])
_ENCODE = msgspec.json.encode


def _delivery(row: tuple[Any, ...]) -> Delivery:
    return Delivery(row[0], decode_action(row[1]), Status(row[2]), row[3], row[4], row[5], row[6], _ATTEMPTS.decode(row[7]))


class SqliteOutbox:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = connect(path, durable=True)  # an action put is a promise: it must survive a power cut
        self._conn.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def _write(self, sql: str, args: Sequence[Any] = (), durable: bool = True) -> list[tuple[Any, ...]]:
        """One statement in its own transaction. `durable=False`: its commit is not fsynced (WAL, synchronous
        NORMAL): a power cut may undo it, but the next durable commit of this file makes it durable too."""
        with self._lock:
            if not durable:
                self._conn.execute("PRAGMA synchronous=NORMAL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    rows = self._conn.execute(sql, args).fetchall()
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
                self._conn.execute("COMMIT")
            finally:
                if not durable:
                    self._conn.execute("PRAGMA synchronous=FULL")
        return rows

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def put(self, actions: Sequence[Action], now: int) -> int:
        rows = [(delivery_id(a.key, a.channel), a.key, a.org, a.automation, a.channel, Status.PENDING, encode_action(a),
                 a.fired_at, now, a.due_at) for a in actions]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                before = self._conn.total_changes
                self._conn.executemany(
                    "INSERT OR IGNORE INTO deliveries (id, key, org, automation, channel, status, action, fired_at, "
                    "created_at, next_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
                added = self._conn.total_changes - before
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return added

    def cancel(self, key: str, now: int) -> int:
        cancelled = Attempt(now, None, 0.0, "cancelled before delivery", "cancelled")
        rows = self._write(
            "UPDATE deliveries SET status = ?, lease_owner = NULL, attempts = json_insert(attempts, '$[#]', json(?)), "
            "ended_at = ? WHERE key = ? AND status = ? RETURNING id",
            (Status.CANCELLED, _ENCODE(cancelled), now, key, Status.PENDING))
        return len(rows)

    def claim(self, now: int, limit: int, owner: str, lease_ms: int = LEASE_MS) -> list[Claimed]:
        rows = self._write(
            f"UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE seq IN ("
            f"SELECT seq FROM deliveries WHERE status = ? AND next_at <= ? AND lease_until <= ? ORDER BY next_at LIMIT ?"
            f") RETURNING {_CLAIMED}", (owner, now + lease_ms, Status.PENDING, now, now, limit),
            # A lease is not a promise to anyone: one undone by a power cut only makes its deliveries claimable at
            # once instead of after the lease, the same redelivery (same webhook-id) that a crash before the record
            # gives. Not fsyncing it takes one fsync off every delivery's path; `record` stays durable (and fsyncs
            # the claim with it).
            durable=False)
        return [Claimed(_delivery(r), owner) for r in sorted(rows, key=lambda r: r[4])]

    def record(self, results: Sequence[Result], now: int) -> None:
        rows = [(r.status, r.next_at, r.attempt.at if r.status == Status.DELIVERED else None, _ENCODE(r.attempt),
                 r.claim.delivery.id, r.claim.token, now) for r in results]
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                # A delivery already delivered stays so (a stale claimer's late record), and one cancelled
                # during its attempt stays cancelled unless the attempt got through. Only the lease's
                # holder ends the lease.
                self._conn.executemany(
                    "UPDATE deliveries SET status = CASE WHEN status = 'delivered' OR (status = 'cancelled' AND ?1 != 'delivered') "
                    "THEN status ELSE ?1 END, next_at = ?2, tries = tries + 1, delivered_at = coalesce(?3, delivered_at), "
                    "attempts = json_insert(attempts, '$[#]', json(?4)), "
                    "ended_at = CASE WHEN ?1 IN ('delivered', 'cancelled') THEN ?7 ELSE ended_at END, "
                    "lease_owner = CASE WHEN lease_owner = ?6 THEN NULL ELSE lease_owner END, "
                    "lease_until = CASE WHEN lease_owner = ?6 THEN 0 ELSE lease_until END WHERE id = ?5", rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def get(self, delivery: str) -> Delivery | None:
        rows = self._read(f"SELECT {_COLS} FROM deliveries WHERE id = ?", (delivery,))
        return _delivery(rows[0]) if rows else None

    def list(self, org: str, *, status: Status | None = None, automation: str | None = None,
             channel: str | None = None, limit: int = 100) -> list[Delivery]:
        where, args = ["org = ?"], [org]
        for column, value in (("status", status), ("automation", automation), ("channel", channel)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        rows = self._read(f"SELECT {_COLS} FROM deliveries WHERE {' AND '.join(where)} ORDER BY seq DESC LIMIT ?",
                          (*args, limit))
        return [_delivery(r) for r in rows]

    def replay(self, delivery: str, now: int) -> Delivery | None:
        self._write("UPDATE deliveries SET status = ?, next_at = ?, tries = 0, lease_owner = NULL, lease_until = 0, ended_at = NULL "
                    "WHERE id = ? AND status != ?", (Status.PENDING, now, delivery, Status.PENDING))
        return self.get(delivery)

    def prune(self, before: int, limit: int = 10_000) -> int:
        return len(self._write(
            "DELETE FROM deliveries WHERE seq IN (SELECT seq FROM deliveries WHERE status IN (?, ?) "
            "AND ended_at < ? LIMIT ?) RETURNING seq",
            (Status.DELIVERED, Status.CANCELLED, before, limit)))

    def stats(self) -> Stats:
        (n, oldest), = self._read("SELECT count(*), min(fired_at) FROM deliveries WHERE status = ?", (Status.PENDING,))
        return Stats(n, oldest)

    def dead_counts(self, org: str) -> dict[str, int]:
        return dict(self._read("SELECT channel, count(*) FROM deliveries WHERE org = ? AND status = ? GROUP BY channel",
                               (org, Status.DEAD)))

    def suppress(self, org: str, address: str, reason: str, now: int) -> None:
        self._write("INSERT OR IGNORE INTO suppressed VALUES (?, ?, ?, ?)", (org, normal_address(address), reason, now))

    def suppressed(self, org: str, address: str) -> bool:
        return bool(self._read("SELECT 1 FROM suppressed WHERE org = ? AND address = ?", (org, normal_address(address))))

    def disable_channel(self, org: str, channel: str, reason: str, now: int) -> None:
        self._write("INSERT OR REPLACE INTO disabled_channels VALUES (?, ?, ?, ?)", (org, channel, reason, now))

    def enable_channel(self, org: str, channel: str) -> None:
        self._write("DELETE FROM disabled_channels WHERE org = ? AND channel = ?", (org, channel))

    def disabled_channels(self, org: str) -> dict[str, str]:
        return dict(self._read("SELECT channel, reason FROM disabled_channels WHERE org = ?", (org,)))

    def close(self) -> None:
        self._conn.close()
