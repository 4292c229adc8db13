"""Dedupe marks on Redis: memory per mark, kept for the window or for ever, beside the log entry it
guards. The numbers behind the dedupe window (state/log.py, docs/operations.md "What is durable").

On a real redis-server (no persistence: memory does not depend on it), N events of realistic ids and
bodies go in through the real append path (RedisEventLog: one SET NX EX mark and one XADD each);
`used_memory` is read before, after, and after deleting the streams, which leaves the marks alone.
Then, side by side, the same N ids as marks kept for ever in the two ways one could:
- one key each, no TTL (SET NX): the current layout without its expiry;
- hash buckets (HSETNX into ~N/100 small hashes per partition, listpack-encoded), the compact way.
Each variant starts from an empty server (FLUSHALL) and is measured once; the numbers are bytes of
`used_memory` divided by N (jemalloc's allocation classes make them step, not drift).

    .venv/bin/python bench/dedupe.py [--events 200000]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need what is set up above (the repository on sys.path, run as a script).
import redis  # noqa: E402

from core.events import Event, Item, Kind  # noqa: E402
from state.log import DEDUPE_WINDOW_S, DEFAULT_PARTITIONS, partition_of  # noqa: E402
from state.redis_log import RedisEventLog, seen_key, stream_key  # noqa: E402
from tests.helpers import RedisServer  # noqa: E402

T0 = 1_700_000_000_000
ORGS = [f"org_{i:03d}" for i in range(20)]
PER_BUCKET = 100  # hash fields per bucket: well under hash-max-listpack-entries (128)


def events(n: int) -> list[Event]:
    """Half Shopify-style order reports (id ~40 characters, 2 items), half events-API page views
    (the client's UUID behind the connection's prefix, ~50 characters)."""
    out = []
    for i in range(n):
        org = ORGS[i % len(ORGS)]
        if i % 2:
            out.append(Event(id=f"shopify:st_{i % 7}:order:{5_100_000_000 + i}:paid", kind=Kind.ORDER_PAID, org=org,
                             store=f"st_{i % 7}", time=T0 + i * 1000, amount=4_990, currency="EUR", customer=f"c{i // 3}",
                             order=str(5_100_000_000 + i), items=(Item("p17", 1, 2_990, "Mug"), Item("p3", 2, 1_000, "Tea"))))
        else:
            uuid = f"{zlib.crc32(str(i).encode()):08x}-{i:04x}-4{i % 1000:03x}-a{i % 999:03x}-{i:012x}"
            out.append(Event(id=f"api:st_{i % 7}:{uuid}", kind=Kind.PAGE_VIEWED, org=org, store=f"st_{i % 7}",
                             time=T0 + i * 1000, visitor=f"v{i // 5}", name="/products/mug"))
    return out


def used(r: redis.Redis) -> int:
    return int(r.info("memory")["used_memory"])


def through_the_log(url: str, evs: list[Event]) -> tuple[int, int]:
    """(bytes of marks, bytes of stream entries) for evs appended by RedisEventLog."""
    r = redis.Redis.from_url(url)
    r.flushall()
    before = used(r)

    async def go() -> None:
        log = RedisEventLog(url)
        for start in range(0, len(evs), 2000):
            await log.append(evs[start:start + 2000])
        await log.close()

    asyncio.run(go())
    total = used(r) - before
    r.delete(*(stream_key(p) for p in range(DEFAULT_PARTITIONS)))
    marks = used(r) - before
    return marks, total - marks


def keys_forever(url: str, evs: list[Event]) -> int:
    r = redis.Redis.from_url(url)
    r.flushall()
    before = used(r)
    pipe = r.pipeline(transaction=False)
    for i, e in enumerate(evs):
        pipe.set(seen_key(partition_of(e.org, DEFAULT_PARTITIONS), e.org, e.id), "1", nx=True)
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    return used(r) - before


def hash_buckets(url: str, evs: list[Event]) -> int:
    r = redis.Redis.from_url(url)
    r.flushall()
    before = used(r)
    buckets = max(1, len(evs) // PER_BUCKET // len(ORGS))
    pipe = r.pipeline(transaction=False)
    for i, e in enumerate(evs):
        p = partition_of(e.org, DEFAULT_PARTITIONS)
        pipe.hsetnx(f"sp:{{p{p}}}:seen:{e.org}:{zlib.crc32(e.id.encode()) % buckets}", e.id, "")
        if i % 5000 == 4999:
            pipe.execute()
    pipe.execute()
    return used(r) - before


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--events", type=int, default=200_000)
    n = ap.parse_args().events
    evs = events(n)
    id_chars = sum(len(e.id) for e in evs) / n
    body = sum(len(e.to_json()) for e in evs) / n
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        try:
            info = redis.Redis.from_url(server.url).info("server")
            marks, stream = through_the_log(server.url, evs)
            forever = keys_forever(server.url, evs)
            hashed = hash_buckets(server.url, evs)
        finally:
            server.stop()
    print(f"redis {info['redis_version']}; {n:,} events, {len(ORGS)} organisations; id {id_chars:.0f} chars, "
          f"event JSON {body:.0f} B on average")
    print(f"{'what':<52}{'B/event':>10}")
    print(f"{'log entry (XADD into the stream)':<52}{stream / n:>10.0f}")
    print(f"{'mark, one key with TTL (SET NX EX: what the log does)':<52}{marks / n:>10.0f}")
    print(f"{'mark for ever, one key without TTL (SET NX)':<52}{forever / n:>10.0f}")
    print(f"{'mark for ever, hash buckets (HSETNX, listpack)':<52}{hashed / n:>10.0f}")
    days = DEDUPE_WINDOW_S // 86_400
    for per_day in (100_000, 1_000_000):
        window_gb = per_day * days * marks / n / 1e9
        year_gb = per_day * 365 * hashed / n / 1e9
        print(f"at {per_day:>9,} events/day: marks for the {days}-day window {window_gb:6.2f} GB, flat; "
              f"for ever (hash buckets) +{year_gb:6.2f} GB a year, growing")


if __name__ == "__main__":
    main()
