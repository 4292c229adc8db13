"""The SQLite read model's segment members and changes (UNSTAMPED kinds) in their own table: written and
read as every record (newer versions only, by day range, on the feed), never stamped by day, and moved
there from `records` once when a file written before the table is opened."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from core.changes import Change, Record
from core.records import Order, RecordKind
from core.segment_records import SegmentChange, SegmentMember
from state.sqlite_readmodel import SqliteReadModel
from tests.test_read_model import ORDER


def member(version: int, segment: str, customer: str, member: bool) -> Record[SegmentMember]:
    return Record("a", version, RecordKind.SEGMENT_MEMBER, f"{segment}|{customer}", segment,
                  SegmentMember(segment, customer, member, 5 if member else None))


def change(version: int, segment: str, customer: str, at: int, what: str = "entered",
           superseded: bool = False) -> Record[SegmentChange]:
    return Record("a", version, RecordKind.SEGMENT_CHANGE, f"{segment}|{customer}|{at}|{what}",
                  f"{segment}|1970-01-01T00:00:00.{at:03d}+00:00", SegmentChange(segment, customer, what, at, "e", superseded))


def rows(path: Path, table: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT org, kind, key FROM {table} ORDER BY 1, 2, 3").fetchall()


def test_members_and_changes_keep_the_newest_version_read_by_day_and_reach_the_feed(tmp_path: Path) -> None:
    path = tmp_path / "rm.sqlite3"
    model = SqliteReadModel(path)
    order = Record("a", 1, RecordKind.ORDER, "s:o1", "2026-01-01", ORDER)
    first: list[Change] = [order, member(1, "vip", "c1", True), member(1, "new", "c1", True),
                           change(1, "vip", "c1", 5), change(1, "vip", "c2", 7)]

    async def go() -> list[list[Change] | None]:
        feed = model.feed()
        assert await anext(feed) is None
        await asyncio.to_thread(model.write, first)
        got = [await asyncio.wait_for(anext(feed), 5)]
        # a replay and an older value publish nothing; a newer one replaces its row and is published
        await asyncio.to_thread(model.write, [member(1, "vip", "c1", True), member(0, "vip", "c1", False)])
        await asyncio.to_thread(model.write, [member(2, "vip", "c1", False), change(2, "vip", "c2", 7, superseded=True)])
        got.append(await asyncio.wait_for(anext(feed), 5))
        # some applied, some not, across the tables: only those applied are published, in their order
        await asyncio.to_thread(model.write, [member(2, "vip", "c1", False), change(3, "vip", "c3", 9), order,
                                              Record("a", 3, RecordKind.ORDER, "s:o1", "2026-01-02", ORDER),
                                              change(1, "vip", "c1", 5)])
        got.append(await asyncio.wait_for(anext(feed), 5))
        await feed.aclose()
        return got

    published = asyncio.run(go())
    moved = Record("a", 3, RecordKind.ORDER, "s:o1", "2026-01-02", ORDER)
    assert published == [first, [member(2, "vip", "c1", False), change(2, "vip", "c2", 7, superseded=True)],
                         [change(3, "vip", "c3", 9), moved]]
    assert model.records("a", SegmentMember, "vip", "vip") == [member(2, "vip", "c1", False)]
    assert model.records("a", SegmentMember) == [member(1, "new", "c1", True), member(2, "vip", "c1", False)]
    assert model.records("a", SegmentChange, "vip|1970-01-01T00:00:00.006", "vip|~") == [
        change(2, "vip", "c2", 7, superseded=True), change(3, "vip", "c3", 9)]
    assert model.records("a", Order) == [moved]
    # segment rows live in their own table, one per key, and never touch the day stamps
    assert rows(path, "records") == [("a", "order", "s:o1")]
    assert len(rows(path, "unstamped_records")) == 5
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT kind, day, writes FROM record_days ORDER BY day").fetchall() == [
            ("order", "2026-01-01", 2), ("order", "2026-01-02", 1)]
    model.close()


def test_a_file_with_segment_rows_in_records_has_them_moved_once(tmp_path: Path) -> None:
    path = tmp_path / "rm.sqlite3"
    model = SqliteReadModel(path)
    model.close()
    # a file as storepulse wrote it before unstamped_records: the segment rows in `records`
    old = [member(3, "vip", "c1", True), change(3, "vip", "c1", 5)]
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TABLE unstamped_records")
        conn.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?)",
                         [(c.org, c.kind, c.key, c.day, c.version, c.value_json()) for c in old])
    for _ in range(2):  # opened again (or by a second process): nothing moves twice
        model = SqliteReadModel(path)
        assert model.records("a", SegmentMember) == [old[0]] and model.records("a", SegmentChange) == [old[1]]
        model.close()
    assert rows(path, "records") == []
    model = SqliteReadModel(path)
    model.write([member(2, "vip", "c1", False), member(4, "vip", "c2", True)])  # older than what moved: kept
    assert model.records("a", SegmentMember) == [old[0], member(4, "vip", "c2", True)]
    model.close()
