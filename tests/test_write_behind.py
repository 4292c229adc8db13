"""The read model written by a process of its own (flows/write_behind.py): what the dataflow hands over
lands whole and in order, a flush returns only once it is written, a writer that cannot write or dies
stops the dataflow instead of losing changes, and a whole dataflow run through it leaves the same read
model as the synchronous sink. Real SQLite files, a real writer process, the real Bytewax dataflow."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import orjson
import pytest
from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main

from core.changes import DAY, Bucket
from core.config import parse_config
from core.events import Event, Item, Kind
from core.records import Customer
from flows.dataflow import build_flow
from flows.recovery import ensure_recovery_dir
from flows.sinks import Output
from flows.write_behind import ModelAt, WriteBehind, WriterGone
from notifier.actions import Action, action_key
from notifier.sqlite_outbox import SqliteOutbox
from state.sqlite_log import SqliteEventLog, SqliteLogReader
from state.sqlite_readmodel import SqliteReadModel

PARTITIONS = 4
CONFIG = parse_config('[orgs.o]\ntimezone = "Europe/Berlin"\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\n'
                      '[orgs.o.stores.s]\nprovider = "events"\nsecret = "k"\n', {})
T0 = 1_795_338_000_000


def bucket(version: int, gross: int) -> Bucket:
    return Bucket("o", version, DAY, "2026-11-22", "s", "EUR", gross, 0, version, version, version)


def feed(path: Path) -> list[bytes]:
    with sqlite3.connect(path) as conn:
        return [body for (body,) in conn.execute("SELECT body FROM changes ORDER BY seq")]


def test_batches_land_in_order_and_a_flush_waits_for_them(tmp_path: Path) -> None:
    writer = WriteBehind(ModelAt(tmp_path))
    try:
        for v in range(1, 41):
            writer.submit([("o", Output([bucket(v, 100 * v)], caught_up_at=T0 + v if v % 10 == 0 else None))])
        writer.flush()
        model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
        version, days = model.snapshot("o", DAY)
        assert version == 40 and [d.gross for d in days] == [4000]  # the newest of the 40, nothing lost
        assert model.caught_up_at("o") == T0 + 40
        model.close()
        # Each batch once in the feed, in order, whatever the writes they were coalesced into.
        versions = [c["version"] for body in feed(tmp_path / "readmodel.sqlite3") for c in orjson.loads(body)]
        assert versions == list(range(1, 41))
    finally:
        writer.close()


def test_a_writer_that_cannot_open_the_read_model_stops_the_dataflow(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("a file where the data directory should be")
    writer = WriteBehind(ModelAt(tmp_path / "data"))
    with pytest.raises(WriterGone, match="read-model writer exited"):
        writer.submit([("o", Output([bucket(1, 100)]))])
        writer.flush()
    with pytest.raises(WriterGone):
        writer.close()


def test_a_killed_writer_is_noticed_at_the_next_flush(tmp_path: Path) -> None:
    writer = WriteBehind(ModelAt(tmp_path))
    writer.submit([("o", Output([bucket(1, 100)]))])
    writer.flush()
    os.kill(writer._proc.pid, signal.SIGKILL)
    writer._proc.wait()
    with pytest.raises(WriterGone, match=r"exited \(-9\)"):
        writer.submit([("o", Output([bucket(2, 200)]))])  # into the pipe's buffer, or refused at once
        writer.flush()
    with contextlib.suppress(WriterGone):  # raises again only when the batch made it into the pipe
        writer.close()


def _run(tmp_path: Path, name: str, write_behind: bool) -> Path:
    data = tmp_path / name
    ensure_recovery_dir(data / "recovery", 1)
    flow = build_flow(CONFIG, lambda: SqliteLogReader(tmp_path / "log.sqlite3", PARTITIONS),
                      lambda: SqliteReadModel(data / "readmodel.sqlite3"), PARTITIONS, until_caught_up=True,
                      files_dir=data / "recovery" / "segments", clock=lambda: T0 + 7 * 24 * 3_600_000,
                      write_behind=ModelAt(data) if write_behind else None)
    run_main(flow, recovery_config=RecoveryConfig(str(data / "recovery")))
    return data / "readmodel.sqlite3"


def test_the_dataflow_through_the_writer_leaves_the_same_read_model(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite3", PARTITIONS)
    log.append_sync([Event(id=f"e{i}", kind=Kind.ORDER_PAID, org="o", store="s", time=T0 + i * 1000, amount=1000 + i,
                           currency="EUR", order=f"o{i}", customer=f"c{i % 700}", items=(Item(f"p{i % 50}", 1, 1000 + i),))
                     for i in range(3000)])
    asyncio.run(log.close())
    behind, direct = _run(tmp_path, "behind", True), _run(tmp_path, "direct", False)
    with sqlite3.connect(behind) as a, sqlite3.connect(direct) as b:
        for table in ("SELECT org, kind, key, day, version, value FROM records ORDER BY 1, 2, 3",
                      "SELECT * FROM unstamped_records ORDER BY 1, 2, 3, 4",
                      "SELECT * FROM buckets ORDER BY 1, 2, 3, 4, 5", "SELECT * FROM org_versions"):
            assert a.execute(table).fetchall() == b.execute(table).fetchall(), table
    model = SqliteReadModel(behind)
    assert len(model.records("o", Customer)) == 700
    model.close()
    # A batch shows whole: no version's changes straddle two feed messages.
    seen: dict[int, int] = {}
    for n, body in enumerate(feed(behind)):
        for c in orjson.loads(body):
            assert seen.setdefault(c["version"], n) == n, f"version {c['version']} split across feed messages"


class VisibleAtPut:
    """The real SQLite outbox, noting at each put the read model's version that a reader sees then."""

    def __init__(self, outbox: SqliteOutbox, model: Path) -> None:
        self.outbox, self.model = outbox, model
        self.seen: list[tuple[list[int], int]] = []  # (the versions the put actions were fired at, the version visible)

    def put(self, actions: Sequence[Action], now: int) -> int:
        model = SqliteReadModel(self.model)
        visible = model.snapshot("o")[0]
        model.close()
        self.seen.append(([a.fired_at for a in actions], visible))
        return self.outbox.put(actions, now)

    def close(self) -> None:
        self.outbox.close()


def test_actions_are_put_only_once_their_batch_is_in_the_read_model(tmp_path: Path) -> None:
    probe = VisibleAtPut(SqliteOutbox(tmp_path / "outbox.sqlite3"), tmp_path / "readmodel.sqlite3")
    writer = WriteBehind(ModelAt(tmp_path), probe, clock=lambda: T0)
    try:
        for v in range(1, 31):
            key = action_key("big-order", f"c{v}", f"e{v}")
            action = Action(key, "o", "big-order", "crm", "order.paid", f"c{v}", f"e{v}", fired_at=v, due_at=v)
            writer.submit([("o", Output([bucket(v, 100 * v)], actions=[action] if v % 3 else []))])
        writer.flush()
        assert sorted(f for fired, _ in probe.seen for f in fired) == [v for v in range(1, 31) if v % 3]
        for fired, visible in probe.seen:
            assert max(fired) <= visible, f"actions of batch {max(fired)} put while the read model showed {visible}"
        assert len(SqliteOutbox(tmp_path / "outbox.sqlite3").list("o", limit=100)) == 20
    finally:
        writer.close()
