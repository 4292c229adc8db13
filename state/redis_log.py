"""The distributed event log: one Redis Stream per partition.

"Append unless seen" is one Lua script, so the dedupe mark and the XADD happen atomically. Both keys
of a partition share a hash tag, so the script also works on Redis Cluster. Durability is the
server's: run it with `appendonly yes` and `appendfsync always` (see docker-compose.yml), which
group-commits one fsync per event-loop turn before any reply is sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import redis
import redis.asyncio as aioredis

from core.events import Event
from state.log import DEFAULT_PARTITIONS, LogUnavailable, partition_of

# Redeliveries come within days (Stripe retries for 3 days, Shopify 48 h); keep marks for 30.
DEDUPE_TTL_SECONDS = 30 * 24 * 3600

_APPEND = """
if redis.call('SET', KEYS[1], '1', 'NX', 'EX', ARGV[2]) then
  return redis.call('XADD', KEYS[2], '*', 'e', ARGV[1])
end
return false
"""


def stream_key(partition: int) -> str:
    return f"sp:{{p{partition}}}:log"


def seen_key(partition: int, org: str, event_id: str) -> str:
    return f"sp:{{p{partition}}}:seen:{org}:{event_id}"


_APPEND_SHA = hashlib.sha1(_APPEND.encode()).hexdigest()


class RedisEventLog:
    def __init__(self, url: str, partitions: int = DEFAULT_PARTITIONS) -> None:
        self.partitions = partitions
        self._redis = aioredis.Redis.from_url(url)

    def _args(self, e: Event) -> tuple[object, ...]:
        p = partition_of(e.org, self.partitions)
        return (_APPEND_SHA, 2, seen_key(p, e.org, e.id), stream_key(p), e.to_json(), DEDUPE_TTL_SECONDS)

    async def _send(self, events: Sequence[Event]) -> list[object]:
        # EVALSHA directly: redis-py's Script objects make every pipeline ask SCRIPT EXISTS first,
        # one more round trip per webhook. The script is loaded once, and again after a NOSCRIPT.
        if len(events) == 1:
            return [await self._redis.evalsha(*self._args(events[0]))]
        async with self._redis.pipeline(transaction=False) as pipe:
            for e in events:
                pipe.evalsha(*self._args(e))
            return await pipe.execute()

    async def append(self, events: Sequence[Event]) -> list[bool]:
        try:
            try:
                replies = await self._send(events)
            except redis.exceptions.NoScriptError:
                await self._redis.script_load(_APPEND)
                replies = await self._send(events)  # dedupe makes the retry of a partial pipeline safe
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise LogUnavailable(f"event log (Redis) unreachable: {exc}") from exc
        except redis.ResponseError as exc:
            raise LogUnavailable(f"event log (Redis) refused the write: {exc}") from exc
        return [r is not None for r in replies]

    async def close(self) -> None:
        await self._redis.aclose()


class RedisLogReader:
    def __init__(self, url: str, partitions: int = DEFAULT_PARTITIONS) -> None:
        self.partitions = partitions
        self._redis = redis.Redis.from_url(url)

    def read(self, partition: int, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        start = f"({after}" if after else "-"
        entries = self._redis.xrange(stream_key(partition), min=start, max="+", count=limit)
        return [(eid.decode(), fields[b"e"]) for eid, fields in entries]

    def close(self) -> None:
        self._redis.close()
