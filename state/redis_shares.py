"""Share links in Redis: one key per link by its token's hash, an id -> hash index, and a sorted set
per organisation (by creation time) for listing."""

from __future__ import annotations

from dataclasses import replace

import redis

from core.shares import Share
from state.shares import share_from_json, share_json


class RedisShareStore:
    def __init__(self, url: str) -> None:
        self._redis = redis.Redis.from_url(url)

    def add(self, share: Share) -> None:
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(f"sp:share:h:{share.token_sha256}", share_json(share))
            pipe.set(f"sp:share:id:{share.org}:{share.id}", share.token_sha256)
            pipe.zadd(f"sp:shares:{share.org}", {share.id: share.created_at})
            pipe.execute()

    def by_hash(self, token_sha256: str) -> Share | None:
        data: bytes | None = self._redis.get(f"sp:share:h:{token_sha256}")  # type: ignore[assignment]  # redis-py: bytes reply
        return share_from_json(data) if data else None

    def list(self, org: str) -> list[Share]:
        ids: list[bytes] = self._redis.zrevrange(f"sp:shares:{org}", 0, -1)  # type: ignore[assignment]  # bytes replies
        hashes: list[bytes | None] = self._redis.mget([f"sp:share:id:{org}:{i.decode()}" for i in ids]) if ids else []  # type: ignore[assignment]
        docs: list[bytes | None] = self._redis.mget([f"sp:share:h:{h.decode()}" for h in hashes if h]) if hashes else []  # type: ignore[assignment]
        return [share_from_json(d) for d in docs if d]

    def revoke(self, org: str, share_id: str, at: int) -> Share | None:
        hashed: bytes | None = self._redis.get(f"sp:share:id:{org}:{share_id}")  # type: ignore[assignment]  # bytes reply
        if hashed is None:
            return None
        key = f"sp:share:h:{hashed.decode()}"
        with self._redis.pipeline(transaction=True) as pipe:  # WATCH: a concurrent revoke keeps the first time
            while True:
                try:
                    pipe.watch(key)
                    data = pipe.get(key)
                    if not data:
                        return None
                    share = share_from_json(data)  # immediate mode under WATCH: the bytes stored
                    if share.revoked_at is not None:
                        return share
                    share = replace(share, revoked_at=at)
                    pipe.multi()
                    pipe.set(key, share_json(share))
                    pipe.execute()
                    return share
                except redis.WatchError:
                    continue

    def close(self) -> None:
        self._redis.close()
