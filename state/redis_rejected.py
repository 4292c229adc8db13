"""Rejected deliveries in Redis: a hash per delivery, a sorted set (by time) per store and per org."""

from __future__ import annotations

import orjson
import redis

from state.rejected import KEEP_PER_STORE, RejectedDelivery, RejectedSummary


def _key(rejected_id: str) -> str:
    return f"sp:rej:{rejected_id}"


class RedisRejectedStore:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)

    def add(self, r: RejectedDelivery) -> None:
        record = orjson.dumps({**r.to_json(), "body": None, "body_base64": None})
        by_store, by_org = f"sp:rej:store:{r.store}", f"sp:rej:org:{r.org or ''}"
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(_key(r.id), mapping={"meta": record, "body": r.body})
            pipe.zadd(by_store, {r.id: r.received_at})
            pipe.zadd(by_org, {r.id: r.received_at})
            pipe.hset(f"sp:rej:last:{r.store}", mapping={"reason": r.reason, "at": r.received_at})
            pipe.execute()
        # Past the cap, drop the oldest of this store (and their bodies).
        excess = self._redis.zrange(by_store, 0, -(KEEP_PER_STORE + 1))
        if excess:
            with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(by_store, *excess)
                pipe.zrem(by_org, *excess)
                pipe.delete(*[_key(i.decode()) for i in excess])
                pipe.execute()

    def _load(self, ids: list[bytes]) -> list[RejectedDelivery]:
        with self._redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.hgetall(_key(i.decode()))
            rows = pipe.execute()
        out = []
        for row in rows:
            if not row:
                continue
            m = orjson.loads(row[b"meta"])
            out.append(RejectedDelivery(m["id"], m["received_at"], m["provider"], m["store"], m["org"], m["status"],
                                        m["reason"], m["headers"], row[b"body"], m["redriven_at"], m["redrive_result"]))
        return out

    def list(self, *, org: str | None = None, store: str | None = None, limit: int = 100) -> list[RejectedDelivery]:
        if store is not None:
            key = f"sp:rej:store:{store}"
        elif org is not None:
            key = f"sp:rej:org:{org}"
        else:
            keys = [k.decode() for k in self._redis.scan_iter(match="sp:rej:store:*")]
            ids = sorted(
                ((score, i) for k in keys for i, score in self._redis.zrevrange(k, 0, limit - 1, withscores=True)),
                reverse=True,
            )[:limit]
            return self._load([i for _, i in ids])
        found = self._load(self._redis.zrevrange(key, 0, limit - 1))
        return [r for r in found if org is None or r.org == org]

    def get(self, rejected_id: str) -> RejectedDelivery | None:
        found = self._load([rejected_id.encode()])
        return found[0] if found else None

    def mark_redriven(self, rejected_id: str, at: float, result: str) -> None:
        r = self.get(rejected_id)
        if r is None:
            return
        meta = {**r.to_json(), "body": None, "body_base64": None, "redriven_at": at, "redrive_result": result}
        self._redis.hset(_key(rejected_id), "meta", orjson.dumps(meta))

    def summary(self, store: str) -> RejectedSummary:
        count = self._redis.zcard(f"sp:rej:store:{store}")
        last = self._redis.hgetall(f"sp:rej:last:{store}")
        if not last:
            return RejectedSummary(count, None, None)
        return RejectedSummary(count, last[b"reason"].decode(), float(last[b"at"]))

    def close(self) -> None:
        self._redis.close()
