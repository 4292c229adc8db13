"""Connection statistics and sync checkpoints in Redis: per-minute counters that expire."""

from __future__ import annotations

from typing import Any

import orjson
import redis

from state.connections import StoreActivity

_RAISE = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > cur then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
"""
KEEP_SECONDS = 25 * 3600  # a day of minutes, for the health checks' usual gap (core/health.py), and an hour


class RedisConnectionStats:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)
        self._raise = self._redis.register_script(_RAISE)

    def record(self, activity: list[StoreActivity]) -> None:
        with self._redis.pipeline(transaction=False) as pipe:
            for a in activity:
                for minute, n in a.minute_counts.items():
                    key = f"sp:conn:{a.store}:m:{minute}"
                    pipe.incrby(key, n)
                    pipe.expire(key, KEEP_SECONDS)
                if a.last_event_time is not None:
                    self._raise(keys=[f"sp:conn:{a.store}"], args=["last_event_time", a.last_event_time], client=pipe)
                if a.last_received_at is not None:
                    self._raise(keys=[f"sp:conn:{a.store}"], args=["last_received_at", a.last_received_at], client=pipe)
            pipe.execute()

    def activity(self, store: str, since_minute: int) -> tuple[int, int | None, float | None]:
        now_minute = since_minute + 60
        counts = self._redis.mget([f"sp:conn:{store}:m:{m}" for m in range(since_minute, now_minute + 1)])
        last = self._redis.hgetall(f"sp:conn:{store}")
        t = last.get(b"last_event_time")
        r = last.get(b"last_received_at")
        return sum(int(c) for c in counts if c), (int(float(t)) if t else None), (float(r) if r else None)

    def active_minutes(self, store: str, since_minute: int, until_minute: int) -> list[int]:
        minutes = range(since_minute, until_minute + 1)
        counts = self._redis.mget([f"sp:conn:{store}:m:{m}" for m in minutes]) if minutes else []
        return [m for m, c in zip(minutes, counts, strict=True) if c and int(c) > 0]

    def save_sync(self, store: str, state: dict[str, Any]) -> None:
        self._redis.set(f"sp:sync:{store}", orjson.dumps(state))

    def load_sync(self, store: str) -> dict[str, Any] | None:
        raw = self._redis.get(f"sp:sync:{store}")
        return orjson.loads(raw) if raw else None

    def close(self) -> None:
        self._redis.close()
