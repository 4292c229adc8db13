"""The dataflow's source (flows/sources.py) over a real SQLite log: events come out keyed by their
organisation in log order, unknown organisations are skipped, and once the log has been read to
its end each configured organisation of the partition gets a CaughtUp, again at most once a
BEAT_MS while it stays there (none in batch runs); a row that is no event becomes an Unreadable of
its organisation, or is skipped when it names none."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from core.events import Event, Kind
from flows.quarantine import Unreadable
from flows.sources import BEAT_MS, CaughtUp, LogSource
from state.log import partition_of
from state.sqlite_log import SqliteEventLog, SqliteLogReader

PARTITIONS = 4


def view(i: int, org: str) -> Event:
    return Event(id=f"e{i}", kind=Kind.PAGE_VIEWED, org=org, store="s", time=1_795_338_000_000 + i, visitor="v")


def test_keyed_in_log_order_unknown_skipped_and_caught_up_once(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    known = ["a", "b", "c", "d", "e"]
    part = partition_of("a", PARTITIONS)
    mine = sorted(o for o in known if partition_of(o, PARTITIONS) == part)
    stranger = next(f"u{i}" for i in range(100) if partition_of(f"u{i}", PARTITIONS) == part)  # not configured
    log = SqliteEventLog(path, PARTITIONS)
    log.append_sync([view(i, "a" if i % 3 else stranger) for i in range(9)])
    asyncio.run(log.close())
    now = [1_000_000]
    source = LogSource(lambda: SqliteLogReader(path, PARTITIONS), PARTITIONS, known, clock=lambda: now[0])
    p = source.build_part("log", f"p{part}", None)
    first = p.next_batch()
    assert [(k, v.id) for k, v in first if isinstance(v, Event)] == [("a", f"e{i}") for i in range(9) if i % 3]
    assert [(k, v) for k, v in first if isinstance(v, CaughtUp)] == [(o, CaughtUp(o, 1_000_000)) for o in mine]
    assert isinstance(first[-1][1], CaughtUp)  # after every event read before it
    offset = p.snapshot()
    now[0] += BEAT_MS - 1
    assert p.next_batch() == []  # nothing new, and no second CaughtUp within a beat
    now[0] += 1
    assert p.next_batch() == [(o, CaughtUp(o, 1_000_000 + BEAT_MS)) for o in mine]
    # Resumed from its snapshot (a restart): nothing is read twice, and it catches up again.
    again = source.build_part("log", f"p{part}", offset)
    assert [k for k, _ in again.next_batch()] == mine
    p.close()
    again.close()
    batch = LogSource(lambda: SqliteLogReader(path, PARTITIONS), PARTITIONS, known, until_caught_up=True)
    q = batch.build_part("log", f"p{part}", None)
    assert not any(isinstance(v, CaughtUp) for _, v in q.next_batch())
    q.close()


def test_a_row_that_is_no_event_is_unreadable_for_its_organisation(tmp_path: Path) -> None:
    path = tmp_path / "log.sqlite3"
    part = partition_of("a", PARTITIONS)
    log = SqliteEventLog(path, PARTITIONS)
    log.append_sync([view(1, "a")])
    asyncio.run(log.close())
    bad = b'{"v": 99, "org": "a", "id": "x1", "store": "s"}'
    with sqlite3.connect(path) as db:  # as an older or newer storepulse, or a bad hand, could have left them
        db.execute("INSERT INTO events (part, org, id, body) VALUES (?, 'a', 'x1', ?)", (part, bad))
        db.execute("INSERT INTO events (part, org, id, body) VALUES (?, 'a', 'x2', ?)", (part, b"not json"))
    source = LogSource(lambda: SqliteLogReader(path, PARTITIONS), PARTITIONS, ["a"], until_caught_up=True)
    p = source.build_part("log", f"p{part}", None)
    out = p.next_batch()
    p.close()
    assert [v.id for _, v in out] == ["e1", "x1"]
    unreadable = out[1][1]
    assert isinstance(unreadable, Unreadable)
    assert (unreadable.org, unreadable.store, unreadable.body) == ("a", "s", bad)
    assert unreadable.error == "SchemaError: event schema version 99 is not supported (expected 1)"
