"""The distributed read model: per organisation a hash of buckets, a hash of their versions and a
version key; changes are published on one pub/sub channel. One Lua script applies a change only
when its version is newer, so replays after a dataflow restart change nothing and publish nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import orjson
import redis
import redis.asyncio as aioredis

from core.figures import Bucket, Record, bucket_from_json, change_from_json

FEED_CHANNEL = "sp:feed"

_WRITE = """
local v = tonumber(ARGV[2])
if v <= tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
redis.call('HSET', KEYS[2], ARGV[1], v)
if v > tonumber(redis.call('GET', KEYS[3]) or '0') then redis.call('SET', KEYS[3], v) end
redis.call('PUBLISH', ARGV[4], ARGV[3])
return 1
"""


def _keys(org: str, kind: str | None = None) -> list[str]:
    """Values (buckets, or records of a kind), their versions, and the organisation's version."""
    values = f"sp:rm:{{{org}}}:days" if kind is None else f"sp:rm:{{{org}}}:rec:{kind}"
    return [values, f"sp:rm:{{{org}}}:versions", f"sp:rm:{{{org}}}:version"]


class RedisReadModel:
    def __init__(self, url: str) -> None:
        self._url = url
        self._redis = redis.Redis.from_url(url)
        self._write = self._redis.register_script(_WRITE)

    def write(self, changes: Sequence[Bucket | Record]) -> None:
        with self._redis.pipeline(transaction=False) as pipe:
            for c in changes:
                if isinstance(c, Record):
                    keys, field = _keys(c.org, c.kind), f"r|{c.kind}|{c.key}"
                else:
                    keys, field = _keys(c.org), c.key
                self._write(keys=keys, args=[field, c.version, c.to_json(), FEED_CHANNEL], client=pipe)
            pipe.execute()

    def records(self, org: str, kind: str, first: str = "", last: str = "\uffff") -> list[Record]:
        found = (Record(**orjson.loads(v)) for v in self._redis.hvals(_keys(org, kind)[0]))
        return [r for r in found if first <= r.day <= last]

    def snapshot(self, org: str, grain: str | None = None) -> tuple[int, list[Bucket]]:
        days, _, version = _keys(org)
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(version)
            pipe.hvals(days)
            v, vals = pipe.execute()
        buckets = (bucket_from_json(x) for x in vals)
        return int(v or 0), [b for b in buckets if grain is None or b.grain == grain]

    async def feed(self) -> AsyncIterator[Bucket | Record | None]:
        client = aioredis.Redis.from_url(self._url)
        pubsub = client.pubsub()
        try:
            await pubsub.subscribe(FEED_CHANNEL)
            yield None
            async for msg in pubsub.listen():
                if msg["type"] == "message":  # skips the subscribe confirmation
                    yield change_from_json(msg["data"])
        finally:
            await pubsub.aclose()
            await client.aclose()

    def close(self) -> None:
        self._redis.close()
