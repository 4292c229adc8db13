"""How much of the SQLite read model's change feed (the `changes` table) is kept: the newest KEEP_BYTES
of message bodies, trimmed by the writer in its own write transaction (docs/readmodel_write.md, "The
change feed's retention").

Each row carries `upto`: the bytes of every body published up to and including it (a running sum,
indexed). The writer deletes the rows that have at least `keep` bytes published after them, and only
when the sum crosses a multiple of `trim` bytes: one indexed lookup and one range delete every `trim`
bytes, nothing at the other writes. Bytes rather than rows, because a row is one write of one
organisation and holds as many events as the write had (one, live; 10,000, a backfill batch): a row
count bounds neither the disk nor the time a follower may lag.

Guarantees (each row's body `len(body)` bytes):
- a row is deleted only once at least `keep` bytes were published after it: a follower less than
  `keep` bytes behind misses nothing;
- the bodies kept stay under `keep + trim + ` the largest write's bodies.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

# 1.8 KB of feed per event with the 39 predefined segments (docs/readmodel_write.md), so at 2,000 events/s
# 3.6 MB/s: 192 MiB is ~55 s of it, time for a follower stalled by a GC pause, a big CSV export or a
# busy core to catch up; at 200 events/s, over 9 minutes. On disk ~10 % more (SQLite's pages and the
# index: 223 MiB of pages held 203 MiB of bodies), where the feed grew 300 GB a day at that rate.
KEEP_BYTES = 192 << 20
# Trim every 16 MiB published (~4.5 s at 2,000 events/s): each trim deletes ~16 MiB of rows at once
# (~15 ms of CPU: bench/feed_retention.py), and the kept bodies exceed KEEP_BYTES by at most this.
TRIM_BYTES = 16 << 20

_INSERT = "INSERT INTO changes (org, version, body, upto) VALUES (?, ?, ?, ?)"
# The newest row with `keep` bytes published after it, and every row before it (rows from before `upto`
# existed hold NULL, come before any row that holds one, and go with the first trim that finds one).
_TRIM = "DELETE FROM changes WHERE seq <= (SELECT seq FROM changes WHERE upto <= ? ORDER BY upto DESC LIMIT 1)"


class FeedGap(Exception):
    """A follower asked for rows the writer has deleted: it fell more than the retention behind.
    It must re-read its snapshot and follow again (as when the feed breaks), never skip them."""

    def __init__(self, last: int, found: int) -> None:
        super().__init__(f"change feed rows {last + 1}..{found - 1} were deleted by retention (the follower "
                         f"read up to seq {last} and fell behind by more than the bytes kept): re-read the snapshot")
        self.last, self.found = last, found


def prepare(conn: sqlite3.Connection) -> None:
    """Adds `upto` and its index to a file written before retention (its old rows keep NULL)."""
    if _has_upto(conn):
        conn.execute("CREATE INDEX IF NOT EXISTS changes_by_upto ON changes (upto)")
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if not _has_upto(conn):  # another process opening the same old file may have added it first
            conn.execute("ALTER TABLE changes ADD COLUMN upto INTEGER")
        conn.execute("CREATE INDEX IF NOT EXISTS changes_by_upto ON changes (upto)")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


def _has_upto(conn: sqlite3.Connection) -> bool:
    return any(row[1] == "upto" for row in conn.execute("PRAGMA table_info(changes)"))


def publish(cur: sqlite3.Cursor, rows: Sequence[tuple[str, int, bytes]], keep: int, trim: int) -> None:
    """Inserts the feed rows (org, version, body) in the write transaction begun on `cur`, and trims the
    feed when their bytes cross a multiple of `trim`."""
    (base,) = cur.execute("SELECT coalesce(max(upto), 0) FROM changes").fetchone()
    upto = base
    out: list[tuple[str, int, bytes, int]] = []
    for org, version, body in rows:
        upto += len(body)
        out.append((org, version, body, upto))
    cur.executemany(_INSERT, out)
    if upto // trim != base // trim:
        # Debian's SQLite zeroes every page a delete frees (secure_delete=1 by default): a 16 MiB trim then
        # cost ~50 ms of CPU, with FAST ~15 ms (a deleted row's bytes are zeroed where its page is written
        # anyway; a freed page keeps its bytes until reused). For the trim only: the feed's rows hold
        # nothing the records do not, and every other statement keeps the build's setting.
        (secure,) = cur.execute("PRAGMA secure_delete").fetchone()
        cur.execute("PRAGMA secure_delete = FAST")
        try:
            cur.execute(_TRIM, (upto - keep,))
        finally:
            cur.execute(f"PRAGMA secure_delete = {int(secure)}")
