"""The distributed outbox: a Redis stream read by a consumer group of notifiers, hashes for state.

A delivery is a hash `sp:nt:d:ID` (its action and status) and a list of its attempts. While it waits
(for due_at or a retry) it is in the sorted set `sp:nt:due`; once due, a claim moves it into the
stream `sp:nt:stream`, and the notifier that reads it there (XREADGROUP) holds it in its pending
entries list: that is the lease. A notifier that dies leaves its entries pending; after the lease
they go to another through XAUTOCLAIM. Recording an attempt acknowledges the entry and, for a
retry, puts the delivery back into `sp:nt:due`. Every change of several keys is one Lua script.

Like the rejected store, the scripts name keys they derive, so this needs one Redis server, not a
Cluster.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import redis

from notifier.actions import Action, decode_action, delivery_id, encode_action
from notifier.outbox import LEASE_MS, Attempt, Claimed, Delivery, Result, Stats, Status, normal_address

_STREAM, _GROUP, _DUE, _PENDING = "sp:nt:stream", "notifiers", "sp:nt:due", "sp:nt:pending"
_ENCODE = msgspec.json.encode
_ATTEMPT = msgspec.json.Decoder(Attempt)

# ARGV: now, then per action: id, key, org, automation, channel, action, fired_at, due_at. Returns how many were new.
_PUT = """
local now, added = ARGV[1], 0
for i = 2, #ARGV, 8 do
  local id = ARGV[i]
  local h = 'sp:nt:d:' .. id
  if redis.call('EXISTS', h) == 0 then
    redis.call('HSET', h, 'action', ARGV[i+5], 'status', 'pending', 'created_at', now, 'next_at', ARGV[i+7],
               'tries', 0, 'org', ARGV[i+2], 'automation', ARGV[i+3], 'channel', ARGV[i+4], 'fired_at', ARGV[i+6],
               'key', ARGV[i+1])
    redis.call('ZADD', 'sp:nt:due', ARGV[i+7], id)
    redis.call('ZADD', 'sp:nt:pending', ARGV[i+6], id)
    redis.call('ZADD', 'sp:nt:org:' .. ARGV[i+2], redis.call('INCR', 'sp:nt:seq'), id)
    redis.call('SADD', 'sp:nt:key:' .. ARGV[i+1], id)
    added = added + 1
  end
end
return added
"""
# ARGV: key, the cancellation's attempt, now. Returns how many were cancelled.
_CANCEL = """
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', 'sp:nt:key:' .. ARGV[1])) do
  local h = 'sp:nt:d:' .. id
  if redis.call('HGET', h, 'status') == 'pending' then
    redis.call('HSET', h, 'status', 'cancelled')
    redis.call('ZADD', 'sp:nt:ended', ARGV[3], id)
    redis.call('ZREM', 'sp:nt:due', id)
    redis.call('ZREM', 'sp:nt:pending', id)
    redis.call('RPUSH', 'sp:nt:a:' .. id, ARGV[2])
    n = n + 1
  end
end
return n
"""
# ARGV: now, limit. Moves due deliveries into the stream; each only once, whoever runs it.
_PROMOTE = """
local ids = redis.call('ZRANGEBYSCORE', 'sp:nt:due', '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  redis.call('ZREM', 'sp:nt:due', id)
  redis.call('XADD', 'sp:nt:stream', '*', 'id', id)
end
return #ids
"""
# ARGV per result: stream entry, id, status, next_at, delivered_at ('' for none), attempt; last: now.
# A delivery already delivered stays so (a stale claimer's late record), and one cancelled during
# its attempt stays cancelled unless the attempt got through.
_RECORD = """
for i = 1, #ARGV - 1, 6 do
  local id, status = ARGV[i+1], ARGV[i+2]
  local h = 'sp:nt:d:' .. id
  local current = redis.call('HGET', h, 'status')
  if current == 'delivered' or (current == 'cancelled' and status ~= 'delivered') then status = current end
  if status == 'dead' and current ~= 'dead' then
    local f = redis.call('HMGET', h, 'org', 'channel')
    redis.call('HINCRBY', 'sp:nt:dead:' .. f[1], f[2], 1)
  end
  redis.call('HSET', h, 'status', status, 'next_at', ARGV[i+3])
  redis.call('HINCRBY', h, 'tries', 1)
  if ARGV[i+4] ~= '' then redis.call('HSET', h, 'delivered_at', ARGV[i+4]) end
  redis.call('RPUSH', 'sp:nt:a:' .. id, ARGV[i+5])
  redis.call('XACK', 'sp:nt:stream', 'notifiers', ARGV[i])
  redis.call('XDEL', 'sp:nt:stream', ARGV[i])
  if status == 'pending' then
    redis.call('ZADD', 'sp:nt:due', ARGV[i+3], id)
  else
    redis.call('ZREM', 'sp:nt:pending', id)
  end
  if status == 'delivered' or status == 'cancelled' then redis.call('ZADD', 'sp:nt:ended', ARGV[#ARGV], id) end
end
return 0
"""
# ARGV: id, now. Returns 1 when it was made pending again.
_REPLAY = """
local h = 'sp:nt:d:' .. ARGV[1]
local status = redis.call('HGET', h, 'status')
if not status or status == 'pending' then return 0 end
if status == 'dead' then
  local f = redis.call('HMGET', h, 'org', 'channel')
  redis.call('HINCRBY', 'sp:nt:dead:' .. f[1], f[2], -1)
end
redis.call('HSET', h, 'status', 'pending', 'next_at', ARGV[2], 'tries', 0)
redis.call('ZREM', 'sp:nt:ended', ARGV[1])
redis.call('ZADD', 'sp:nt:due', ARGV[2], ARGV[1])
redis.call('ZADD', 'sp:nt:pending', redis.call('HGET', h, 'fired_at'), ARGV[1])
return 1
"""
# ARGV: before, limit. Forgets delivered and cancelled deliveries that ended before `before`.
_PRUNE = """
local ids = redis.call('ZRANGEBYSCORE', 'sp:nt:ended', '-inf', '(' .. ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', 'sp:nt:d:' .. id, 'org', 'key')
  if f[1] then
    redis.call('ZREM', 'sp:nt:org:' .. f[1], id)
    redis.call('SREM', 'sp:nt:key:' .. f[2], id)
  end
  redis.call('DEL', 'sp:nt:d:' .. id, 'sp:nt:a:' .. id)
  redis.call('ZREM', 'sp:nt:ended', id)
end
return #ids
"""
# ARGV: stream entry. Acknowledges an entry whose delivery is no longer pending (cancelled meanwhile).
_DROP = "redis.call('XACK', 'sp:nt:stream', 'notifiers', ARGV[1]) redis.call('XDEL', 'sp:nt:stream', ARGV[1]) return 0"


def _s(value: bytes) -> str:
    return value.decode()


class RedisOutbox:
    def __init__(self, url: str) -> None:
        self._r = redis.Redis.from_url(url)
        self._put, self._cancel = self._r.register_script(_PUT), self._r.register_script(_CANCEL)
        self._promote, self._record = self._r.register_script(_PROMOTE), self._r.register_script(_RECORD)
        self._replay, self._drop = self._r.register_script(_REPLAY), self._r.register_script(_DROP)
        self._prune = self._r.register_script(_PRUNE)
        try:
            self._r.xgroup_create(_STREAM, _GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def put(self, actions: Sequence[Action], now: int) -> int:
        argv: list[Any] = [now]
        for a in actions:
            argv += [delivery_id(a.key, a.channel), a.key, a.org, a.automation, a.channel, encode_action(a), a.fired_at, a.due_at]
        return int(self._put(args=argv)) if actions else 0

    def cancel(self, key: str, now: int) -> int:
        return int(self._cancel(args=[key, _ENCODE(Attempt(now, None, 0.0, "cancelled before delivery", "cancelled")), now]))

    def claim(self, now: int, limit: int, owner: str, lease_ms: int = LEASE_MS) -> list[Claimed]:
        self._promote(args=[now, limit])
        entries: list[tuple[bytes, dict[bytes, bytes]]] = []
        # XAUTOCLAIM: the entries another notifier read more than a lease ago and never acknowledged
        # the reply: [next cursor, [(entry, fields)], deleted ids]
        reply: list[Any] = self._r.xautoclaim(_STREAM, _GROUP, owner, min_idle_time=lease_ms, start_id="0-0", count=limit)
        entries += [e for e in reply[1] if e[1]]  # an entry deleted meanwhile comes back without fields
        if len(entries) < limit:
            fresh: list[Any] = self._r.xreadgroup(_GROUP, owner, {_STREAM: ">"}, count=limit - len(entries))  # type: ignore[assignment]  # redis-py types replies for either decode_responses; ours decodes nothing: bytes
            for _, got in fresh or []:
                entries += got
        out = []
        found = self._many([_s(fields[b"id"]) for _, fields in entries], attempts=False)
        for (entry, _), d in zip(entries, found):
            if d is None or d.status != Status.PENDING:
                self._drop(args=[entry])
                continue
            out.append(Claimed(d, _s(entry)))
        return out

    def record(self, results: Sequence[Result], now: int) -> None:
        argv: list[Any] = []
        for r in results:
            delivered = r.attempt.at if r.status == Status.DELIVERED else ""
            argv += [r.claim.token, r.claim.delivery.id, str(r.status), r.next_at, delivered, _ENCODE(r.attempt)]
        if argv:
            self._record(args=[*argv, now])  # the last ARGV: when they ended

    def get(self, delivery: str) -> Delivery | None:
        return self._many([delivery])[0]

    def _many(self, ids: Sequence[str], attempts: bool = True) -> list[Delivery | None]:
        """Deliveries by id, in one round trip; without their past attempts when `attempts` is False."""
        with self._r.pipeline(transaction=False) as p:
            for delivery in ids:
                p.hgetall(f"sp:nt:d:{delivery}")
                if attempts:
                    p.lrange(f"sp:nt:a:{delivery}", 0, -1)
            replies = p.execute()
        hashes, lists = (replies[::2], replies[1::2]) if attempts else (replies, [[] for _ in ids])
        out: list[Delivery | None] = []
        for delivery, h, past in zip(ids, hashes, lists):
            at = h.get(b"delivered_at")
            out.append(Delivery(delivery, decode_action(h[b"action"]), Status(_s(h[b"status"])), int(h[b"created_at"]),
                                int(h[b"next_at"]), int(h[b"tries"]), int(at) if at else None,
                                [_ATTEMPT.decode(a) for a in past]) if h else None)
        return out

    def list(self, org: str, *, status: Status | None = None, automation: str | None = None,
             channel: str | None = None, limit: int = 100) -> list[Delivery]:
        wanted = {b"status": status, b"automation": automation, b"channel": channel}
        out: list[Delivery] = []
        start, page = 0, 500
        while len(out) < limit:
            ids: list[bytes] = self._r.zrevrange(f"sp:nt:org:{org}", start, start + page - 1)  # type: ignore[assignment]  # redis-py types replies for either decode_responses; ours decodes nothing: bytes
            if not ids:
                break
            with self._r.pipeline(transaction=False) as p:
                for i in ids:
                    p.hmget(f"sp:nt:d:{_s(i)}", list(wanted))
                rows = p.execute()
            matching = [_s(i) for i, row in zip(ids, rows)
                        if all(v is None or got == str(v).encode() for v, got in zip(wanted.values(), row))]
            out += [d for d in self._many(matching[:limit - len(out)]) if d is not None]
            start += page
        return out

    def replay(self, delivery: str, now: int) -> Delivery | None:
        self._replay(args=[delivery, now])
        return self.get(delivery)

    def prune(self, before: int, limit: int = 10_000) -> int:
        return int(self._prune(args=[before, limit]))

    def stats(self) -> Stats:
        with self._r.pipeline(transaction=True) as p:
            p.zcard(_PENDING)
            p.zrange(_PENDING, 0, 0, withscores=True)
            n, oldest = p.execute()
        return Stats(int(n), int(oldest[0][1]) if oldest else None)

    def dead_counts(self, org: str) -> dict[str, int]:
        counts: dict[bytes, bytes] = self._r.hgetall(f"sp:nt:dead:{org}")  # type: ignore[assignment]  # redis-py types replies for either decode_responses; ours decodes nothing: bytes
        return {_s(k): int(v) for k, v in counts.items() if int(v) > 0}

    def suppress(self, org: str, address: str, reason: str, now: int) -> None:
        self._r.hsetnx(f"sp:nt:supp:{org}", normal_address(address), reason)

    def suppressed(self, org: str, address: str) -> bool:
        return bool(self._r.hexists(f"sp:nt:supp:{org}", normal_address(address)))

    def disable_channel(self, org: str, channel: str, reason: str, now: int) -> None:
        self._r.hset(f"sp:nt:off:{org}", channel, reason)

    def enable_channel(self, org: str, channel: str) -> None:
        self._r.hdel(f"sp:nt:off:{org}", channel)

    def disabled_channels(self, org: str) -> dict[str, str]:
        off: dict[bytes, bytes] = self._r.hgetall(f"sp:nt:off:{org}")  # type: ignore[assignment]  # redis-py types replies for either decode_responses; ours decodes nothing: bytes
        return {_s(k): _s(v) for k, v in off.items()}

    def close(self) -> None:
        self._r.close()
