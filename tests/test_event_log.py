"""The event log contract, for both implementations: append unless seen (appended within the dedupe
window, state/log.py), per caller, under concurrency.

Both logs coalesce concurrent appends into one write (SQLite: one transaction; Redis: one script
call per partition): these tests check that each caller still gets its own answer, event by event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.events import Event, Kind, event_from_json
from state.log import DEDUPE_WINDOW_S, DEFAULT_PARTITIONS, EventLog, LogReader, LogUnavailable, partition_of
from tests.helpers import RedisServer


def ev(i: int, org: str = "o") -> Event:
    return Event(id=f"e{i}", kind=Kind.PAGE_VIEWED, org=org, store="s", time=1_700_000_000_000 + i, name=f"/p/{i}")


@pytest.fixture(params=["sqlite", "redis"])
def logs(request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[str, str | None]]:
    if request.param == "redis":
        import redis

        redis.Redis.from_url(redis_server.url).flushall()
        yield request.param, redis_server.url
    else:
        yield request.param, str(tmp_path / "log.sqlite3")


def open_both(kind: str, where: str) -> tuple[EventLog, LogReader]:
    if kind == "redis":
        from state.redis_log import RedisEventLog, RedisLogReader

        return RedisEventLog(where), RedisLogReader(where)
    from state.sqlite_log import SqliteEventLog, SqliteLogReader

    return SqliteEventLog(Path(where)), SqliteLogReader(Path(where))


def read_all(reader: LogReader) -> dict[int, list[Event]]:
    out = {}
    for p in range(reader.partitions):
        out[p] = [event_from_json(body) for _, body in reader.read(p, None, 100_000)]
    return out


def test_a_duplicate_within_the_window_is_dropped(logs: tuple[str, str]) -> None:
    """Appended again within the window (here: at once, by a later call and by a restarted writer)
    an (org, id) is dropped; the same id in another organisation is another event."""
    kind, where = logs

    async def go() -> list[list[bool]]:
        log, _ = open_both(kind, where)
        first = await log.append([ev(1), ev(2)])
        again = await log.append([ev(2), ev(1, "other"), ev(3), ev(3)])
        await log.close()
        log, _ = open_both(kind, where)  # a restarted ingest process
        later = await log.append([ev(1), ev(2, "other")])
        await log.close()
        return [first, again, later]

    assert asyncio.run(go()) == [[True, True], [False, True, True, False], [False, True]]
    _, reader = open_both(kind, where)
    ids = sorted((e.org, e.id) for events in read_all(reader).values() for e in events)
    reader.close()
    assert ids == [("o", "e1"), ("o", "e2"), ("o", "e3"), ("other", "e1"), ("other", "e2")]


def test_redis_marks_last_the_window_and_an_expired_one_lets_the_event_in_again(redis_server: RedisServer) -> None:
    """Redis keeps each mark for exactly the window (its TTL), then forgets it: the same event is
    appended a second time, which the log's contract allows and the dataflow's books fold as the fact
    they already know (tests/test_seen.py)."""
    import time

    import redis

    from state.redis_log import RedisEventLog, RedisLogReader, seen_key

    r = redis.Redis.from_url(redis_server.url)
    r.flushall()

    async def append(events: list[Event]) -> list[bool]:
        log = RedisEventLog(redis_server.url)
        try:
            return await log.append(events)
        finally:
            await log.close()

    assert asyncio.run(append([ev(1), ev(2)])) == [True, True]
    mark = seen_key(partition_of("o", DEFAULT_PARTITIONS), "o", "e1")
    assert DEDUPE_WINDOW_S - 60 <= r.ttl(mark) <= DEDUPE_WINDOW_S
    assert all(r.ttl(k) > 0 for k in r.scan_iter("sp:*:seen:*"))  # no mark without its expiry
    r.pexpire(mark, 1)  # the window has passed for e1
    time.sleep(0.01)
    assert asyncio.run(append([ev(1), ev(2)])) == [True, False]
    reader = RedisLogReader(redis_server.url)
    ids = sorted(e.id for events in read_all(reader).values() for e in events)
    reader.close()
    assert ids == ["e1", "e1", "e2"]


def test_concurrent_callers_each_get_their_own_answer(logs: tuple[str, str]) -> None:
    kind, where = logs
    orgs = ["acme", "tokyo", "beta", "gamma", "delta"]

    async def go() -> list[list[bool]]:
        log, _ = open_both(kind, where)
        assert (await log.append([ev(0, "acme"), ev(1, "tokyo")])) == [True, True]
        # 200 callers at once: overlapping ids between callers, a duplicate inside one caller, and
        # events of five organisations (several partitions in one coalesced write).
        calls = [[ev(n, orgs[n % 5]), ev(n + 1, orgs[(n + 1) % 5])] for n in range(200)]
        calls.append([ev(500, "acme"), ev(500, "acme")])
        results = await asyncio.gather(*(log.append(c) for c in calls))
        await log.close()
        return results

    results = asyncio.run(go())
    seen: set[tuple[str, str]] = {("acme", "e0"), ("tokyo", "e1")}
    for call, flags in zip([[ev(n, orgs[n % 5]), ev(n + 1, orgs[(n + 1) % 5])] for n in range(200)], results):
        # every caller ran after the previous one in gather order, so the first mention wins
        assert flags == [not ((e.org, e.id) in seen or seen.add((e.org, e.id))) for e in call]  # type: ignore[func-returns-value]
    assert results[-1] == [True, False]

    _, reader = open_both(kind, where)
    stored = read_all(reader)
    reader.close()
    ids = [(e.org, e.id) for events in stored.values() for e in events]
    assert len(ids) == len(set(ids)) == 202  # e0..e200 once each (org follows the id) + e500
    for p, events in stored.items():
        assert all(partition_of(e.org, reader.partitions) == p for e in events)
        # appended in caller order within a partition
        numbers = [int(e.id[1:]) for e in events]
        assert numbers == sorted(numbers)


def test_a_cancelled_caller_does_not_lose_the_others_answers(logs: tuple[str, str]) -> None:
    kind, where = logs

    async def go() -> list[object]:
        log, _ = open_both(kind, where)
        tasks = [asyncio.ensure_future(log.append([ev(i)])) for i in range(50)]
        await asyncio.sleep(0)
        tasks[10].cancel()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        after = await asyncio.wait_for(log.append([ev(10), ev(99)]), 5)
        await log.close()
        return [*done, after]

    results = asyncio.run(go())
    assert all(r == [True] for i, r in enumerate(results[:50]) if i != 10)
    assert isinstance(results[10], asyncio.CancelledError)
    # the cancelled caller's event may or may not be in (it was never acknowledged): a retry is
    # either new or a duplicate, and the event is stored once
    assert results[50][1] is True
    _, reader = open_both(kind, where)
    ids = [e.id for events in read_all(reader).values() for e in events]
    reader.close()
    assert sorted(ids) == sorted({f"e{i}" for i in range(50)} | {"e99"})


def test_an_event_that_cannot_be_stored_fails_its_own_caller_only(logs: tuple[str, str]) -> None:
    """An amount beyond 64 bits (no adapter lets one through now) used to fail every caller of the
    shared write on Redis, and kill SQLite's writer thread, so every later append hung."""
    kind, where = logs
    bad = Event(id="bad", kind=Kind.ORDER_PAID, org="o", store="s", time=1_700_000_000_000, amount=2**70,
                currency="EUR", order="o1")

    async def go() -> list[object]:
        log, _ = open_both(kind, where)
        results = await asyncio.wait_for(asyncio.gather(*(log.append([ev(i)]) for i in range(20)), log.append([bad]),
                                                        return_exceptions=True), 10)
        after = await asyncio.wait_for(log.append([ev(99)]), 5)
        await log.close()
        return [*results, after]

    results = asyncio.run(go())
    assert results[:20] == [[True]] * 20
    assert isinstance(results[20], TypeError)
    assert results[21] == [True]
    _, reader = open_both(kind, where)
    ids = sorted(e.id for events in read_all(reader).values() for e in events)
    reader.close()
    assert ids == sorted([f"e{i}" for i in range(20)] + ["e99"])


def test_redis_down_fails_every_waiting_caller_with_log_unavailable(tmp_path: Path) -> None:
    from state.redis_log import RedisEventLog

    server = RedisServer(tmp_path / "r")
    url = server.url
    server.stop()

    async def go() -> list[object]:
        log = RedisEventLog(url)
        out = await asyncio.gather(*(log.append([ev(i)]) for i in range(20)), return_exceptions=True)
        await log.close()
        return out

    results = asyncio.run(go())
    assert len(results) == 20
    assert all(isinstance(r, LogUnavailable) and "unreachable" in str(r) for r in results)
