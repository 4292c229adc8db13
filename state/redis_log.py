"""The distributed event log: one Redis Stream per partition.

"Append unless seen" is one Lua script per partition for a whole batch, so each dedupe mark and
its XADD happen atomically. All keys of a partition share a hash tag, so the script also works on
Redis Cluster. Durability is the server's: run it with `appendonly yes` and `appendfsync always`
(see docker-compose.yml), which fsyncs before any reply is sent.

Appends of concurrent callers are coalesced (group commit, like the SQLite log's writer thread):
while round trips are in flight, new appends queue up, and the next round trip carries them all,
one script call per partition. Under load a webhook costs a share of one round trip, not one each.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio as aioredis

from core.events import Event
from state.log import DEDUPE_WINDOW_S, DEFAULT_PARTITIONS, LogUnavailable, Row, per_caller, rows_of

# Events per script call: bounds how long one call holds the (single-threaded) server.
MAX_EVENTS_PER_CALL = 2000
# Round trips in flight at once: while one waits for Redis's fsync, the next batch is already on
# its way (Redis fsyncs once per event-loop turn, so both can share one fsync).
MAX_IN_FLIGHT = 2

# KEYS[1] the stream, KEYS[i+1] the dedupe mark of ARGV[i+1]; ARGV[1] the marks' TTL.
# Returns one flag per event: 1 appended, 0 a duplicate.
_APPEND = """
local out = {}
for i = 2, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    redis.call('XADD', KEYS[1], '*', 'e', ARGV[i])
    out[i - 1] = 1
  else
    out[i - 1] = 0
  end
end
return out
"""
_APPEND_SHA = hashlib.sha1(_APPEND.encode()).hexdigest()


def stream_key(partition: int) -> str:
    return f"sp:{{p{partition}}}:log"


def seen_key(partition: int, org: str, event_id: str) -> str:
    return f"sp:{{p{partition}}}:seen:{org}:{event_id}"


_Waiter = tuple[list[Row], "asyncio.Future[list[bool]]"]


class RedisEventLog:
    def __init__(self, url: str, partitions: int = DEFAULT_PARTITIONS) -> None:
        self.partitions = partitions
        self._redis = aioredis.Redis.from_url(url)
        self._queue: list[_Waiter] = []
        self._flushers: set[asyncio.Task[None]] = set()
        self._starting = 0  # flushers started that have not taken their batch yet

    async def append(self, events: Sequence[Event]) -> list[bool]:
        if not events:
            return []
        rows = rows_of(events, self.partitions)
        fut: asyncio.Future[list[bool]] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, fut))
        if not self._starting and len(self._flushers) < MAX_IN_FLIGHT:
            self._starting += 1
            self._flushers.add(asyncio.create_task(self._flush()))
        # A caller cancelled while waiting cancels only its own future; the flusher skips it.
        return await fut

    async def _flush(self) -> None:
        # One loop turn first: requests that arrived in the same read from the network are still
        # being handled, and their events can ride the same round trip.
        await asyncio.sleep(0)
        self._starting -= 1
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    flags = await self._write([row for rows, _ in batch for row in rows])
                except Exception as exc:  # LogUnavailable, or a bug: never leave a caller waiting
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                for fut, mine in per_caller(batch, flags):
                    if not fut.done():
                        fut.set_result(mine)
        finally:
            self._flushers.discard(asyncio.current_task())

    def _calls(self, rows: list[Row]) -> tuple[list[tuple[Any, ...]], list[list[int]]]:
        """One EVALSHA argument list per partition chunk, and which rows each one carries."""
        by_part: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(rows):
            by_part[row[0]].append(i)
        calls, positions = [], []
        for p, idx in by_part.items():
            for start in range(0, len(idx), MAX_EVENTS_PER_CALL):
                chunk = idx[start:start + MAX_EVENTS_PER_CALL]
                keys = [stream_key(p), *(seen_key(p, rows[i][1], rows[i][2]) for i in chunk)]
                calls.append((_APPEND_SHA, len(keys), *keys, DEDUPE_WINDOW_S, *(rows[i][3] for i in chunk)))
                positions.append(chunk)
        return calls, positions

    async def _send(self, calls: list[tuple[Any, ...]]) -> list[object]:
        # EVALSHA directly: redis-py's Script objects ask SCRIPT EXISTS first, one more round trip.
        if len(calls) == 1:
            return [await self._redis.evalsha(*calls[0])]
        async with self._redis.pipeline(transaction=False) as pipe:
            for call in calls:
                pipe.evalsha(*call)
            return await pipe.execute()

    async def _write(self, rows: list[Row]) -> list[bool]:
        calls, positions = self._calls(rows)
        try:
            try:
                replies = await self._send(calls)
            except redis.exceptions.NoScriptError:
                await self._redis.script_load(_APPEND)
                replies = await self._send(calls)  # dedupe makes the retry of a partial pipeline safe
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            raise LogUnavailable(f"event log (Redis) unreachable: {exc}") from exc
        except redis.ResponseError as exc:
            raise LogUnavailable(f"event log (Redis) refused the write: {exc}") from exc
        flags = [False] * len(rows)
        for chunk, reply in zip(positions, replies):
            for i, flag in zip(chunk, reply):  # type: ignore[call-overload]  # the script replies a list of flags; redis-py: a response union
                flags[i] = flag == 1
        return flags

    async def close(self) -> None:
        await asyncio.gather(*self._flushers, return_exceptions=True)
        await self._redis.aclose()


class RedisLogReader:
    def __init__(self, url: str, partitions: int = DEFAULT_PARTITIONS) -> None:
        self.partitions = partitions
        self._redis = redis.Redis.from_url(url)

    def read(self, partition: int, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        start = f"({after}" if after else "-"
        entries: list[tuple[bytes, dict[bytes, bytes]]] = self._redis.xrange(  # type: ignore[assignment]  # redis-py types replies for either decode_responses; ours decodes nothing: bytes
            stream_key(partition), min=start, max="+", count=limit)
        return [(eid.decode(), fields[b"e"]) for eid, fields in entries]

    def close(self) -> None:
        self._redis.close()
