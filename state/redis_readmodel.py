"""The distributed read model: per organisation a hash of buckets, a hash of their versions and a
version key; changes are published on one pub/sub channel, one message per organisation per write.
One Lua script applies each change only when its version is newer, so replays after a dataflow
restart change nothing and publish nothing.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Sequence
from typing import Any, TypeVar

import redis
import redis.asyncio as aioredis

from core.changes import Bucket, Change, Record, bucket_from_json, changes_from_json, record_from_json
from core.figures import OPEN_END
from core.records import Value

FEED_CHANNEL = "sp:feed"
V = TypeVar("V", bound=Value)

# One organisation's changes of one write: KEYS[1] the versions hash, KEYS[2] the org's version,
# KEYS[3..] the value hashes; ARGV[1] the feed channel, then per change: value-hash index, field,
# version, JSON. Applies each change newer than its stored version and publishes the applied ones
# as one JSON array, atomically with the values.
_WRITE = """
local applied = {}
local top = tonumber(redis.call('GET', KEYS[2]) or '0')
for i = 2, #ARGV, 4 do
  local field, v = ARGV[i + 1], tonumber(ARGV[i + 2])
  if v > tonumber(redis.call('HGET', KEYS[1], field) or '0') then
    redis.call('HSET', KEYS[tonumber(ARGV[i])], field, ARGV[i + 3])
    redis.call('HSET', KEYS[1], field, v)
    if v > top then top = v end
    applied[#applied + 1] = ARGV[i + 3]
  end
end
if #applied > 0 then
  redis.call('SET', KEYS[2], top)
  redis.call('PUBLISH', ARGV[1], '[' .. table.concat(applied, ',') .. ']')
end
return #applied
"""


_KEEP_MAX = """
if tonumber(ARGV[1]) > tonumber(redis.call('GET', KEYS[1]) or '0') then redis.call('SET', KEYS[1], ARGV[1]) end
"""

_WRITE_SHA = hashlib.sha1(_WRITE.encode()).hexdigest()


def _keys(org: str, kind: str | None = None) -> list[str]:
    """Values (buckets, or records of a kind), their versions, and the organisation's version."""
    values = f"sp:rm:{{{org}}}:days" if kind is None else f"sp:rm:{{{org}}}:rec:{kind}"
    return [values, f"sp:rm:{{{org}}}:versions", f"sp:rm:{{{org}}}:version"]


class RedisReadModel:
    def __init__(self, url: str) -> None:
        self._url = url
        self._redis = redis.Redis.from_url(url)

    def write(self, changes: Sequence[Change]) -> None:
        by_org: dict[str, list[Change]] = {}
        for c in changes:
            by_org.setdefault(c.org, []).append(c)
        calls = []
        for org, mine in by_org.items():
            values_of_buckets, versions, version = _keys(org)
            keys = [versions, version]
            index: dict[str, int] = {}
            args: list[object] = [FEED_CHANNEL]
            for c in mine:
                values, field = (_keys(org, c.kind)[0], f"r|{c.kind}|{c.key}") if isinstance(c, Record) else (values_of_buckets, c.key)
                if values not in index:
                    keys.append(values)
                    index[values] = len(keys)
                args += [index[values], field, c.version, c.to_json()]
            calls.append((_WRITE_SHA, len(keys), *keys, *args))
        try:
            self._send(calls)
        except redis.exceptions.NoScriptError:
            self._redis.script_load(_WRITE)
            self._send(calls)  # what a partial first try applied has its version now: applied once

    def _send(self, calls: list[tuple[Any, ...]]) -> None:
        # EVALSHA directly: redis-py's Script objects ask SCRIPT EXISTS first, one more round trip a write.
        with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(*call)
            pipe.execute()

    def caught_up(self, at: dict[str, int]) -> None:
        # Never back (as SQLite's max()): a restarted worker may report an older time once.
        with self._redis.pipeline(transaction=False) as pipe:
            for org, ms in at.items():
                pipe.eval(_KEEP_MAX, 1, f"sp:rm:{{{org}}}:caught_up", ms)
            pipe.execute()

    def caught_up_at(self, org: str) -> int | None:
        v = self._redis.get(f"sp:rm:{{{org}}}:caught_up")
        return None if v is None else int(v)

    def records(self, org: str, kind: type[V], first: str = "", last: str = OPEN_END) -> list[Record[V]]:
        found = (record_from_json(kind, v) for v in self._redis.hvals(_keys(org, kind.KIND)[0]))
        return [r for r in found if first <= r.day <= last]

    def snapshot(self, org: str, grain: str | None = None) -> tuple[int, list[Bucket]]:
        days, _, version = _keys(org)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(version)
            pipe.hgetall(days)
            v, found = pipe.execute()
        # A bucket's field is its key, grain first: the other grain (24 hours a day) is not parsed.
        wanted = b"" if grain is None else f"{grain}|".encode()
        return int(v or 0), [bucket_from_json(x) for k, x in found.items() if k.startswith(wanted)]

    async def feed(self) -> AsyncIterator[list[Change] | None]:
        client = aioredis.Redis.from_url(self._url)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(FEED_CHANNEL)
            yield None
            async for msg in pubsub.listen():
                if msg["type"] == "message":  # skips the subscribe confirmation
                    yield changes_from_json(msg["data"])
        finally:
            await pubsub.aclose()
            await client.aclose()

    def close(self) -> None:
        self._redis.close()
