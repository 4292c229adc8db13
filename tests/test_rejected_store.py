"""The rejected store is bounded in bytes, on both backends (a real SQLite file, a real redis-server):
bodies and headers cut to a prefix, a bound per store (unknown store ids sharing one), a bound in
all, the oldest dropped first, and every drop counted."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import redis

from state.redis_rejected import RedisRejectedStore
from state.rejected import UNKNOWN, BucketUsage, Evicted, RejectedDelivery, RejectedLimits, RejectedStore, stored_bytes
from state.sqlite_rejected import SqliteRejectedStore
from tests.helpers import RedisServer

KEEP = 1024
LIMITS = RejectedLimits(total_bytes=40_000, store_bytes=16_000, keep_bytes=KEEP)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer) -> Iterator[tuple[str, object]]:
    """(name, opener): opener(limits) opens the store; a second call opens it again (a restart)."""
    if request.param == "sqlite":
        yield "sqlite", lambda limits=LIMITS: SqliteRejectedStore(tmp_path / "rejected.sqlite3", limits)
    else:
        redis.Redis.from_url(redis_server.url).flushall()
        yield "redis", lambda limits=LIMITS: RedisRejectedStore(redis_server.url, limits)


@pytest.fixture
def store(backend: tuple[str, object]) -> Iterator[RejectedStore]:
    s = backend[1]()  # type: ignore[operator]
    yield s
    s.close()


def delivery(i: int, store: str = "shop1", org: str | None = "acme", body: bytes = b"x" * 500,
             headers: dict[str, str] | None = None) -> RejectedDelivery:
    return RejectedDelivery(id=f"r{i:05d}", received_at=1_700_000_000 + i, provider="stripe", store=store, org=org,
                            status=400, reason="Stripe-Signature does not verify", headers=headers or {"content-type": "application/json"},
                            body=body)


def size(i: int, **kw: object) -> int:
    return stored_bytes(LIMITS.clip(delivery(i, **kw)))  # type: ignore[arg-type]


def kept_ids(s: RejectedStore, **kw: str) -> list[str]:
    return [r.id for r in s.list(limit=100_000, **kw)]  # type: ignore[arg-type]


def test_huge_body_and_headers_keep_a_prefix_that_says_it_was_cut(store: RejectedStore) -> None:
    body = bytes(range(256)) * 800  # 204,800 bytes, not UTF-8
    headers = {f"x-h{i:03d}": "v" * 1000 for i in range(100)}
    assert store.add(delivery(1, body=body, headers=headers)) == Evicted(0, 0)
    r = store.get("r00001")
    assert r is not None
    assert r.body == body[:KEEP] and r.body_cut == len(body) - KEEP
    assert len(orjson.dumps(r.headers)) <= KEEP
    assert list(r.headers) == [f"x-h{i:03d}" for i in range(len(r.headers))]  # a prefix, in order
    assert r.headers_cut == len(orjson.dumps(headers)) - len(orjson.dumps(r.headers))
    shown = r.to_json()
    assert (shown["body_bytes"], shown["body_kept_bytes"], shown["body_truncated"], shown["headers_truncated"]) == (
        204_800, KEEP, True, True)
    small = delivery(2)
    store.add(small)
    got = store.get("r00002")
    assert got == small and got.to_json()["body_truncated"] is False and got.to_json()["headers_truncated"] is False


def test_a_store_keeps_its_newest_within_its_bound_and_counts_what_it_dropped(store: RejectedStore) -> None:
    one = size(0)
    per_store = LIMITS.store_bytes // one  # how many fit
    dropped = []
    for i in range(100):
        dropped.append(store.add(delivery(i)))
    assert sum(e.count for e in dropped) == 100 - per_store
    assert sum(e.bytes for e in dropped) == (100 - per_store) * one
    assert kept_ids(store, store="shop1") == [f"r{i:05d}" for i in reversed(range(100 - per_store, 100))]
    assert store.usage() == {"shop1": BucketUsage(per_store, per_store * one, 100 - per_store, (100 - per_store) * one)}
    assert store.summary("shop1").count == per_store


def test_unknown_store_ids_share_one_bucket(store: RejectedStore) -> None:
    one = size(0, store="made-up-0000", org=None)
    for i in range(200):  # 200 different made-up store ids
        store.add(delivery(i, store=f"made-up-{i:04d}", org=None))
    per_bucket = LIMITS.store_bytes // one
    assert store.usage() == {UNKNOWN: BucketUsage(per_bucket, per_bucket * one, 200 - per_bucket, (200 - per_bucket) * one)}
    assert kept_ids(store) == [f"r{i:05d}" for i in reversed(range(200 - per_bucket, 200))]
    # A configured store keeps its own bucket beside them.
    store.add(delivery(500))
    assert store.usage()["shop1"] == BucketUsage(1, size(500), 0, 0)
    assert store.get("r00500") is not None


def test_the_total_bound_drops_the_oldest_of_all(store: RejectedStore) -> None:
    one = size(0, store="a")
    per_store = LIMITS.store_bytes // one
    # Three stores take turns; each alone stays within its bound, together they do not.
    stores = ["a", "b", "c"]
    for i in range(3 * per_store):
        store.add(delivery(i, store=stores[i % 3]))
    in_all = LIMITS.total_bytes // one
    usage = store.usage()
    assert sum(u.kept_bytes for u in usage.values()) == in_all * one <= LIMITS.total_bytes
    assert sum(u.kept for u in usage.values()) == in_all
    assert sum(u.dropped for u in usage.values()) == 3 * per_store - in_all
    assert kept_ids(store) == [f"r{i:05d}" for i in reversed(range(3 * per_store - in_all, 3 * per_store))]


def test_bounds_hold_with_two_writers_at_once(backend: tuple[str, object]) -> None:
    """Two processes' stores (here two connections, four threads) share the bounds."""
    stores = [backend[1](), backend[1]()]  # type: ignore[operator]
    one = size(0)

    def write(w: int) -> None:
        for i in range(100):
            stores[w % 2].add(delivery(w * 1000 + i, store="shop1"))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    per_store = LIMITS.store_bytes // one
    assert stores[0].usage() == {"shop1": BucketUsage(per_store, per_store * one, 400 - per_store, (400 - per_store) * one)}
    assert len(kept_ids(stores[1], store="shop1")) == per_store
    for s in stores:
        s.close()


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="must be at least the per-store bound"):
        RejectedLimits(total_bytes=10_000, store_bytes=20_000, keep_bytes=1024)
    with pytest.raises(ValueError, match="must hold one delivery cut to 65536 bytes"):
        RejectedLimits(total_bytes=1 << 30, store_bytes=100_000)


# --- a store kept before the bounds ----------------------------------------------------------------

OLD_SQLITE = """
CREATE TABLE rejected (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE, received_at REAL NOT NULL, provider TEXT NOT NULL, store TEXT NOT NULL,
    org TEXT, status INTEGER NOT NULL, reason TEXT NOT NULL, headers BLOB NOT NULL, body BLOB NOT NULL,
    redriven_at REAL, redrive_result TEXT
);
"""


def old_rows() -> list[RejectedDelivery]:
    return [delivery(i, body=b"y" * 3000) for i in range(10)] + [delivery(10 + i, store=f"junk{i}", org=None) for i in range(3)]


def test_a_store_from_before_the_bounds_is_adopted_and_then_bounded(backend: tuple[str, object], tmp_path: Path,
                                                                    redis_server: RedisServer) -> None:
    name, opener = backend
    rows = old_rows()
    if name == "sqlite":
        conn = sqlite3.connect(tmp_path / "rejected.sqlite3")
        conn.executescript(OLD_SQLITE)
        conn.executemany("INSERT INTO rejected (id, received_at, provider, store, org, status, reason, headers, body) "
                         "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         [(r.id, r.received_at, r.provider, r.store, r.org, r.status, r.reason, orjson.dumps(r.headers),
                           r.body) for r in rows])
        conn.commit()
        conn.close()
    else:  # the layout before: a hash (meta, body) per delivery, sorted sets per store and org
        red = redis.Redis.from_url(redis_server.url)
        for r in rows:
            red.hset(f"sp:rej:{r.id}", mapping={"meta": orjson.dumps({**r.to_json(), "body": None}), "body": r.body})
            red.zadd(f"sp:rej:store:{r.store}", {r.id: r.received_at})
            red.zadd(f"sp:rej:org:{r.org or ''}", {r.id: r.received_at})
    store = opener()  # type: ignore[operator]
    big = stored_bytes(rows[0])
    assert store.usage() == {"shop1": BucketUsage(10, 10 * big, 0, 0), UNKNOWN: BucketUsage(3, 3 * stored_bytes(rows[10]), 0, 0)}
    assert store.get("r00003") == rows[3]
    # The next add to shop1 applies the per-store bound to what was there: oldest first.
    evicted = store.add(delivery(99))
    fits = (LIMITS.store_bytes - size(99)) // big
    assert evicted == Evicted(10 - fits, (10 - fits) * big)
    assert kept_ids(store, store="shop1") == ["r00099"] + [f"r{i:05d}" for i in reversed(range(10 - fits, 10))]
    store.close()
    again = opener()  # type: ignore[operator]
    assert again.usage()["shop1"] == BucketUsage(fits + 1, fits * big + size(99), 10 - fits, (10 - fits) * big)
    again.close()
