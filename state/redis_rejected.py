"""Rejected deliveries in Redis: a hash per delivery, sorted sets by time (per store, per org) and by
arrival (per bucket, and all), and one hash of running totals and drop counts per bucket.

An add and the drops it causes are one Lua script, so several ingest processes keep the bounds
together. The script names keys it derives (a delivery's hash, its bucket's set), so the rejected
store needs a single Redis server, not a Cluster (the event log's keys are Cluster-safe; these
are not).
"""

from __future__ import annotations

import orjson
import redis

from state.rejected import BucketUsage, Evicted, RejectedDelivery, RejectedLimits, RejectedSummary, stored_bytes

_ALL, _USAGE, _FORMAT = "sp:rej:all", "sp:rej:usage", "sp:rej:format"
_UNBOUNDED = 2**52

# ARGV: id, meta, body, size, bucket, store, org ('' for none), received_at, reason, store bound, total bound.
# Returns {deliveries dropped, bytes dropped}. Adding an id already kept changes nothing.
_ADD = """
local id, size, bucket, store, org = ARGV[1], tonumber(ARGV[4]), ARGV[5], ARGV[6], ARGV[7]
local store_bound, total_bound = tonumber(ARGV[10]), tonumber(ARGV[11])
if redis.call('ZSCORE', 'sp:rej:all', id) then return {0, 0} end
local seq = redis.call('INCR', 'sp:rej:seq')
redis.call('HSET', 'sp:rej:' .. id, 'meta', ARGV[2], 'body', ARGV[3], 'size', size, 'bucket', bucket,
           'store', store, 'org', org)
redis.call('ZADD', 'sp:rej:all', seq, id)
redis.call('ZADD', 'sp:rej:bucket:' .. bucket, seq, id)
redis.call('ZADD', 'sp:rej:store:' .. store, ARGV[8], id)
redis.call('ZADD', 'sp:rej:org:' .. org, ARGV[8], id)
if bucket ~= '' then redis.call('HSET', 'sp:rej:last:' .. bucket, 'reason', ARGV[9], 'at', ARGV[8]) end
redis.call('HINCRBY', 'sp:rej:usage', 'kept:' .. bucket, 1)
local bucket_bytes = redis.call('HINCRBY', 'sp:rej:usage', 'kept_bytes:' .. bucket, size)
local total = redis.call('HINCRBY', 'sp:rej:usage', 'total', size)
local count, freed = 0, 0
local function drop(victim)
  local f = redis.call('HMGET', 'sp:rej:' .. victim, 'size', 'bucket', 'store', 'org')
  redis.call('ZREM', 'sp:rej:all', victim)
  if not f[1] then return 0, nil end
  local s = tonumber(f[1])
  redis.call('DEL', 'sp:rej:' .. victim)
  redis.call('ZREM', 'sp:rej:bucket:' .. f[2], victim)
  redis.call('ZREM', 'sp:rej:store:' .. f[3], victim)
  redis.call('ZREM', 'sp:rej:org:' .. f[4], victim)
  redis.call('HINCRBY', 'sp:rej:usage', 'kept:' .. f[2], -1)
  redis.call('HINCRBY', 'sp:rej:usage', 'kept_bytes:' .. f[2], -s)
  redis.call('HINCRBY', 'sp:rej:usage', 'dropped:' .. f[2], 1)
  redis.call('HINCRBY', 'sp:rej:usage', 'dropped_bytes:' .. f[2], s)
  redis.call('HINCRBY', 'sp:rej:usage', 'total', -s)
  count, freed = count + 1, freed + s
  return s, f[2]
end
while bucket_bytes > store_bound do
  local oldest = redis.call('ZRANGE', 'sp:rej:bucket:' .. bucket, 0, 0)[1]
  if not oldest then break end
  local s = drop(oldest)
  if s == 0 then redis.call('ZREM', 'sp:rej:bucket:' .. bucket, oldest) end
  bucket_bytes, total = bucket_bytes - s, total - s
end
while total > total_bound do
  local oldest = redis.call('ZRANGE', 'sp:rej:all', 0, 0)[1]
  if not oldest then break end
  total = total - drop(oldest)
end
return {count, freed}
"""


def _key(rejected_id: str) -> str:
    return f"sp:rej:{rejected_id}"


class RedisRejectedStore:
    def __init__(self, url: str, limits: RejectedLimits | None = None) -> None:
        self.limits = limits or RejectedLimits()
        self._redis = redis.Redis.from_url(url)
        self._add = self._redis.register_script(_ADD)
        if not self._redis.exists(_FORMAT):
            self._adopt_unbounded()

    def _adopt_unbounded(self) -> None:
        """Deliveries kept before the bounds (no size, not in the arrival set) are indexed again,
        oldest first. Safe to run in several processes at once: adding an id already kept changes
        nothing."""
        old: list[tuple[float, bytes]] = []
        for key in self._redis.scan_iter(match="sp:rej:store:*"):
            scored: list[tuple[bytes, float]] = self._redis.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment]  # redis-py types replies for either decode_responses; ours decodes nothing: bytes
            old += [(score, i) for i, score in scored]
        for _, i in sorted(old):
            if self._redis.zscore(_ALL, i) is None:
                found = self._load([i])
                if found:  # as they were: the next add (by ingest, with its limits) applies the bounds
                    self._keep(found[0], _UNBOUNDED, _UNBOUNDED)
        self._redis.set(_FORMAT, 2)

    def add(self, r: RejectedDelivery) -> Evicted:
        return self._keep(self.limits.clip(r), self.limits.store_bytes, self.limits.total_bytes)

    def _keep(self, r: RejectedDelivery, store_bound: int, total_bound: int) -> Evicted:
        meta = orjson.dumps({**r.to_json(), "body": None, "body_base64": None, "body_cut": r.body_cut,
                             "headers_cut": r.headers_cut})
        count, freed = self._add(args=[
            r.id, meta, r.body, stored_bytes(r), r.bucket, r.store, r.org or "", r.received_at, r.reason,
            store_bound, total_bound,
        ])
        return Evicted(int(count), int(freed))

    def _load(self, ids: list[bytes]) -> list[RejectedDelivery]:
        with self._redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hmget(_key(i.decode()), "meta", "body")
            rows = pipe.execute()
        out = []
        for meta, body in rows:
            if meta is None:
                continue
            m = orjson.loads(meta)
            out.append(RejectedDelivery(m["id"], m["received_at"], m["provider"], m["store"], m["org"], m["status"],
                                        m["reason"], m["headers"], body, m["redriven_at"], m["redrive_result"],
                                        m.get("body_cut", 0), m.get("headers_cut", 0)))
        return out

    def list(self, *, org: str | None = None, store: str | None = None, limit: int = 100) -> list[RejectedDelivery]:
        if store is not None:
            key = f"sp:rej:store:{store}"
        elif org is not None:
            key = f"sp:rej:org:{org}"
        else:
            key = _ALL
        ids: list[bytes] = self._redis.zrevrange(key, 0, limit - 1)  # type: ignore[assignment]  # redis-py types replies for either decode_responses; ours decodes nothing: bytes
        found = self._load(ids)
        return [r for r in found if org is None or r.org == org]

    def get(self, rejected_id: str) -> RejectedDelivery | None:
        found = self._load([rejected_id.encode()])
        return found[0] if found else None

    def mark_redriven(self, rejected_id: str, at: float, result: str) -> None:
        meta = self._redis.hget(_key(rejected_id), "meta")
        if meta is None:
            return
        updated = {**orjson.loads(meta), "redriven_at": at, "redrive_result": result}
        self._redis.hset(_key(rejected_id), "meta", orjson.dumps(updated))

    def summary(self, store: str) -> RejectedSummary:
        count = self._redis.zcard(f"sp:rej:store:{store}")
        last: dict[bytes, bytes] = self._redis.hgetall(f"sp:rej:last:{store}")  # type: ignore[assignment]  # redis-py types replies for either decode_responses; ours decodes nothing: bytes
        if not last:
            return RejectedSummary(count, None, None)
        return RejectedSummary(count, last[b"reason"].decode(), float(last[b"at"]))

    def usage(self) -> dict[str, BucketUsage]:
        usage: dict[bytes, bytes] = self._redis.hgetall(_USAGE)  # type: ignore[assignment]  # redis-py types replies for either decode_responses; ours decodes nothing: bytes
        fields = {k.decode(): int(v) for k, v in usage.items()}
        buckets = {k.partition(":")[2] for k in fields if k.startswith("kept:")}
        return {b: BucketUsage(fields.get(f"kept:{b}", 0), fields.get(f"kept_bytes:{b}", 0),
                               fields.get(f"dropped:{b}", 0), fields.get(f"dropped_bytes:{b}", 0)) for b in buckets}

    def close(self) -> None:
        self._redis.close()
