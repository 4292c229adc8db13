"""The SQLite read model's change feed keeps its newest bytes only (state/feed_retention.py): the table
stays bounded over many writes; a follower within the retention gets every change in order; one that
fell further behind gets FeedGap, never a silent skip, and the gateway's followers (the hub and its
WebSocket clients, the preview columns) re-read their snapshot and show exactly the current values.
A rolled-back write leaves no hole that would look like a gap. Real SQLite files, a real hub behind a
real WebSocket server and client."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY
from websockets.asyncio.client import connect

from core.changes import DAY, Bucket, Change, Record
from core.config import Config, parse_config
from core.records import Customer, RecordKind
from state import sqlite_readmodel
from state.feed_retention import FeedGap
from state.sqlite_readmodel import SqliteReadModel
from tests.helpers import free_port

KEEP, TRIM = 20_000, 4_000  # bytes of bodies: small, so that a few thousand writes trim many times
ORG_TOML = """
[orgs.acme]
timezone = "UTC"
currency = "EUR"
token = "acme-token-0123456789"
[orgs.acme.stores.s]
provider = "events"
secret = "acme-site-key-0123456789"
"""
NOW = datetime(2026, 3, 15, 12, tzinfo=UTC)


@pytest.fixture
def model(tmp_path: Path) -> Iterator[SqliteReadModel]:
    m = SqliteReadModel(tmp_path / "rm.sqlite3", keep_bytes=KEEP, trim_bytes=TRIM)
    yield m
    m.close()


def day(org: str, version: int, d: int, gross: int) -> Bucket:
    return Bucket(org, version, DAY, f"2026-03-{d:02d}", "s", "EUR", gross, 0, 1 + version % 7, 1, 1)


def batch(i: int) -> list[Change]:
    """The i-th write (i from 0): a day bucket of each of two organisations, version i + 1."""
    return [day("acme", i + 1, 1 + i % 15, 100 * i), day("tokyo", i + 1, 1 + i % 15, 7 * i)]


def rows(m: SqliteReadModel) -> tuple[int, int, int, int]:
    """The feed table's row count, first and last seq, and bytes of bodies."""
    found: tuple[int, int, int, int] = m._conn.execute(
        "SELECT count(*), min(seq), max(seq), coalesce(sum(length(body)), 0) FROM changes").fetchone()
    return found


def test_the_feed_keeps_its_newest_bytes_and_the_file_stops_growing(model: SqliteReadModel) -> None:
    written, largest, pages = 0, 0, []
    for i in range(4000):
        model.write(batch(i))
        count, first, last, kept = rows(model)
        body = model._conn.execute("SELECT sum(length(body)) FROM changes WHERE seq > ?", (last - 2,)).fetchone()[0]
        written, largest = written + body, max(largest, body)
        assert min(written, KEEP) <= kept < KEEP + TRIM + largest, i  # never less than KEEP, never more than the bound
        assert last - first + 1 == count and last == 2 * (i + 1)  # the newest, contiguous
        if i in (1999, 3999):
            pages.append(model._conn.execute("PRAGMA page_count").fetchone()[0])
    assert written > 20 * KEEP  # it trimmed many times
    assert pages[1] <= pages[0] + 2, pages  # deleted pages are reused: the file does not grow


async def drain(feed: AsyncIterator[list[Change] | None], n: int) -> list[list[Change]]:
    got: list[list[Change]] = []
    while len(got) < n:
        item = await asyncio.wait_for(anext(feed), 10)
        if item:
            got.append(item)
    return got


def test_a_follower_within_the_retention_misses_nothing(model: SqliteReadModel) -> None:
    async def go() -> tuple[list[list[Change]], list[list[Change]]]:
        feed = model.feed()
        assert await anext(feed) is None
        sent: list[list[Change]] = []
        got: list[list[Change]] = []
        for i in range(3000):
            b = batch(i)
            model.write(b)  # on the loop: the follower reads only below, 40 writes (~7 KB) behind at most
            sent += [b[:1], b[1:]]
            if i % 40 == 39:
                got += await drain(feed, len(sent) - len(got))
        got += await drain(feed, len(sent) - len(got))
        await feed.aclose()
        return sent, got

    sent, got = asyncio.run(go())
    assert rows(model)[1] > 1000  # the rows it read were trimmed behind it
    assert got == sent  # every change, in order


def test_a_follower_past_the_retention_gets_feed_gap(model: SqliteReadModel, caplog: pytest.LogCaptureFixture) -> None:
    async def go() -> FeedGap:
        model.write(batch(0))
        feed = model.feed()
        assert await anext(feed) is None
        for i in range(1, 400):  # ~70 KB: past KEEP + TRIM
            model.write(batch(i))
        with pytest.raises(FeedGap) as raised:
            await drain(feed, 800)
        return raised.value

    gap = asyncio.run(go())
    assert gap.last == 2 and gap.found == rows(model)[1] > 3  # nothing was yielded past seq 2
    assert "deleted by retention" in str(gap)


def test_a_rolled_back_write_leaves_no_hole(model: SqliteReadModel, monkeypatch: pytest.MonkeyPatch) -> None:
    """A write that fails after inserting its first organisation's feed row rolls it back with the seq it
    took (AUTOINCREMENT's counter is in the transaction); a replay (the writer's own rollback and retry)
    publishes nothing. The next seq follows the last one: a follower sees no gap."""
    real = sqlite_readmodel.changes_to_json
    calls = 0

    def second_fails(changes: Any) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise OSError("disk full, say")
        return real(changes)

    async def go() -> list[list[Change]]:
        feed = model.feed()
        assert await anext(feed) is None
        model.write(batch(0))
        monkeypatch.setattr(sqlite_readmodel, "changes_to_json", second_fails)
        calls_before = calls
        with pytest.raises(OSError):
            model.write(batch(1))
        assert calls - calls_before == 2  # it failed after the first organisation's row was inserted
        monkeypatch.setattr(sqlite_readmodel, "changes_to_json", real)
        model.write([*batch(0), *batch(1)])  # batch(0) a replay: rolled back and written again one by one
        got = await drain(feed, 4)
        await feed.aclose()
        return got

    got = asyncio.run(go())
    assert got == [batch(0)[:1], batch(0)[1:], batch(1)[:1], batch(1)[1:]]
    assert [r[0] for r in model._conn.execute("SELECT seq FROM changes ORDER BY seq")] == [1, 2, 3, 4]


def test_a_file_written_before_retention_gets_its_old_rows_trimmed(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, org TEXT NOT NULL, "
                    "version INTEGER NOT NULL, body BLOB NOT NULL)")
        old.executemany("INSERT INTO changes (org, version, body) VALUES ('acme', ?, ?)",
                        [(v, b"[" + b"x" * 500 + b"]") for v in range(1, 1001)])
    old.close()
    m = SqliteReadModel(path, keep_bytes=KEEP, trim_bytes=TRIM)
    try:
        m.write(batch(0))
        assert rows(m)[0] == 1002  # an old row goes only once the new rows hold KEEP bytes
        for i in range(1, 200):
            m.write(batch(i))
            if rows(m)[1] > 1000:
                break
        assert rows(m)[1] > 1000, "the old rows were never trimmed"
        assert KEEP <= rows(m)[3] < KEEP + TRIM + 400  # then all of them, in the first trim after
    finally:
        m.close()


def config() -> Config:
    return parse_config(ORG_TOML, {})


def test_a_hub_behind_the_retention_re_reads_and_its_websocket_client_sees_the_current_figures(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from ws_gateway.hub import Hub
    from ws_gateway.live import start_ws_server

    model = SqliteReadModel(tmp_path / "rm.sqlite3", keep_bytes=KEEP, trim_bytes=TRIM)
    port = free_port()

    async def go() -> tuple[dict[str, Any], dict[str, Any]]:
        hub = Hub(config(), model, None, now=lambda: NOW)
        await hub.start()
        server = await start_ws_server(config(), hub, "127.0.0.1", port)
        try:
            async with connect(f"ws://127.0.0.1:{port}/v1/live", open_timeout=10) as ws:
                await ws.send(orjson.dumps({"type": "auth", "token": "acme-token-0123456789"}).decode())
                snapshot = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
                # 3,000 writes with the loop held: the hub's follower polls at most once meanwhile (1,000
                # rows), so it is left past the retention, whose rows the writes trimmed
                resnapshots = REGISTRY.get_sample_value("storepulse_gateway_resnapshots_total")
                for i in range(3000):
                    model.write(batch(i))
                expected = sum(100 * i for i in range(3000 - 15, 3000))  # each day's last write
                while True:
                    message = orjson.loads(await asyncio.wait_for(ws.recv(), 15))
                    if message["figures"]["total"]["all"]["gross_revenue"]["amount"] == expected:
                        break
                assert REGISTRY.get_sample_value("storepulse_gateway_resnapshots_total") == (resnapshots or 0) + 1
                return snapshot, message
        finally:
            server.close()
            await server.wait_closed()
            await hub.stop()

    try:
        snapshot, message = asyncio.run(go())
    finally:
        model.close()
    assert snapshot["figures"]["total"]["all"]["orders"] == 0
    assert message["version"] == 3000
    assert message["figures"]["total"]["all"]["orders"] == sum(1 + (i + 1) % 7 for i in range(3000 - 15, 3000))
    assert any(r.exc_info and isinstance(r.exc_info[1], FeedGap) for r in caplog.records), "the gap was logged"


def customer(i: int) -> Record[Customer]:
    t = int(NOW.timestamp() * 1000) - i * 60_000
    return Record("acme", i + 1, RecordKind.CUSTOMER, f"c{i:05d}", "",
                  Customer(f"c{i:05d}", "s", t, t, t, t, None, None, 0, 0, None, None, []))


def test_preview_columns_behind_the_retention_are_rebuilt_with_every_customer(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from ws_gateway.preview_index import PreviewIndex

    model = SqliteReadModel(tmp_path / "rm.sqlite3", keep_bytes=KEEP, trim_bytes=TRIM)

    async def go() -> tuple[int, int]:
        for i in range(10):
            model.write([customer(i)])
        index, stop = PreviewIndex(config(), model), asyncio.Event()
        runner = asyncio.create_task(index.run(stop))
        try:
            async with asyncio.timeout(20):
                while index.held("acme") is None:
                    await asyncio.sleep(0.01)
            built = index.held("acme")
            assert built is not None and built.columns.customers.n == 10
            for i in range(10, 3000):  # the loop held: the follower is left past the retention
                model.write([customer(i)])
            async with asyncio.timeout(20):  # rebuilt from the records: every customer in the columns
                while (held := index.held("acme")) is None or held is built or held.columns.customers.n < 3000:
                    await asyncio.sleep(0.01)
            return held.columns.customers.n, len(held.pending)
        finally:
            stop.set()
            await runner

    try:
        n, pending = asyncio.run(go())
    finally:
        model.close()
    assert (n, pending) == (3000, 0)
    assert any(r.exc_info and isinstance(r.exc_info[1], FeedGap) for r in caplog.records), "the gap was logged"
