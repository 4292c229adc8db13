"""The read model contract, for both implementations: newer versions only, one feed message per
organisation per write, atomically with the values."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from msgspec import Raw

from core.changes import DAY, HOUR, Bucket, Record
from core.records import Customer, Order, RecordKind
from state.readmodel import ReadModel
from tests.helpers import RedisServer


@pytest.fixture
def model(stamped: ReadModel) -> ReadModel:
    """An empty read model of each kind (tests/conftest.py)."""
    return stamped


ORDER = Order("s", "o1", "c1", "web", 1767261600000, 1767261600000, "EUR", 1000, 0, False, Raw(b'[["p1",2,500,"Mug"]]'))


def day(org: str, version: int, start: str, gross: int) -> Bucket:
    return Bucket(org, version, DAY, start, "s", "EUR", gross, 0, 1, 1, 1)


def test_a_write_is_one_feed_message_per_organisation_and_replays_publish_nothing(model: ReadModel) -> None:
    a1 = [day("a", 5, "2026-01-01", 100), Bucket("a", 5, HOUR, "2026-01-01T10", "s", "EUR", 100, 0, 1, 1, 1),
          Record("a", 5, RecordKind.ORDER, "s:o1", "2026-01-01", ORDER)]
    b1 = [day("b", 3, "2026-01-01", 7)]

    async def go() -> list[list[object]]:
        feed = model.feed()
        assert await anext(feed) is None
        got: list[list[object]] = []
        await asyncio.to_thread(model.write, [a1[0], b1[0], a1[1], a1[2]])
        got.append(await asyncio.wait_for(anext(feed), 5))  # type: ignore[arg-type]
        got.append(await asyncio.wait_for(anext(feed), 5))  # type: ignore[arg-type]
        # a replay (same versions) and an older value change nothing and publish nothing; a newer
        # value of one key is one message with just it
        await asyncio.to_thread(model.write, [*a1, day("a", 4, "2026-01-01", 1), *b1])
        await asyncio.to_thread(model.write, [day("a", 9, "2026-01-01", 250)])
        got.append(await asyncio.wait_for(anext(feed), 5))  # type: ignore[arg-type]
        await feed.aclose()
        return got

    first, second, third = asyncio.run(go())
    assert sorted([first, second], key=lambda m: m[0].org) == [a1, b1]  # type: ignore[attr-defined]
    assert third == [day("a", 9, "2026-01-01", 250)]
    version, buckets = model.snapshot("a", DAY)
    assert (version, buckets) == (9, [day("a", 9, "2026-01-01", 250)])
    assert model.records("a", Order) == [a1[2]]
    assert model.records("a", Order, "2026-01-02") == [] and model.records("a", Customer) == []


# An order's value as storepulse wrote it before core/records.py (orjson of a dict), byte for byte.
OLD_ORDER = (b'{"store":"s","order":"o1","customer":"c1","source":"web","placed":1767261600000,"paid":1767261600000,'
             b'"currency":"EUR","amount":1000,"refunded":0,"cancelled":false,"items":[["p1",2,500,"Mug"]]}')


def test_records_written_before_values_were_typed_still_read(tmp_path: Path, redis_server: RedisServer) -> None:
    import sqlite3

    import redis

    from state.redis_readmodel import RedisReadModel
    from state.sqlite_readmodel import SqliteReadModel

    SqliteReadModel(tmp_path / "rm.sqlite3").close()
    with sqlite3.connect(tmp_path / "rm.sqlite3") as db:
        db.execute("INSERT INTO records VALUES ('a', 'order', 's:o1', '2026-01-01', 5, ?)", (OLD_ORDER,))
    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    r.hset("sp:rm:{a}:rec:order", "r|order|s:o1",
           b'{"org":"a","version":5,"kind":"order","key":"s:o1","day":"2026-01-01","value":' + OLD_ORDER + b"}")
    want = [Record("a", 5, RecordKind.ORDER, "s:o1", "2026-01-01", ORDER)]
    for model in (SqliteReadModel(tmp_path / "rm.sqlite3"), RedisReadModel(redis_server.url)):
        assert model.records("a", Order) == want
        assert want[0].value_json() == OLD_ORDER  # and what is written now is what was written then
        model.close()


def test_caught_up_is_kept_per_organisation_and_never_moves_back(model: ReadModel) -> None:
    """The dataflow's heartbeat (core/freshness.py): per organisation, the latest report wins."""
    assert model.caught_up_at("a") is None
    model.caught_up({"a": 2_000, "b": 1_000})
    model.caught_up({"a": 1_500})  # an older report, e.g. from a worker that restarted
    assert (model.caught_up_at("a"), model.caught_up_at("b"), model.caught_up_at("c")) == (2_000, 1_000, None)
    model.caught_up({"b": 3_000})
    assert model.caught_up_at("b") == 3_000
