"""Share links, stored durably by the hash of their token: SQLite (embedded) or Redis (distributed)."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import orjson

from core.shares import Share


class ShareStore(Protocol):
    def add(self, share: Share) -> None: ...

    def by_hash(self, token_sha256: str) -> Share | None:
        """The link whose token hashes to this (revoked and expired ones too), or None."""
        ...

    def list(self, org: str) -> list[Share]:
        """The organisation's links, newest first."""
        ...

    def revoke(self, org: str, share_id: str, at: int) -> Share | None:
        """Revokes the link (once: a second revoke keeps the first time); None if the org has no such link."""
        ...

    def close(self) -> None: ...


def share_json(share: Share) -> bytes:
    return orjson.dumps({"id": share.id, "org": share.org, "stores": list(share.stores), "label": share.label,
                         "created_at": share.created_at, "expires_at": share.expires_at,
                         "token_sha256": share.token_sha256, "revoked_at": share.revoked_at})


def share_from_json(data: bytes | str) -> Share:
    d = orjson.loads(data)
    return Share(d["id"], d["org"], tuple(d["stores"]), d["label"], d["created_at"], d["expires_at"],
                 d["token_sha256"], d["revoked_at"])


def open_shares(data_dir: Path, redis_url: str | None) -> ShareStore:
    if redis_url:
        from state.redis_shares import RedisShareStore

        return RedisShareStore(redis_url)
    from state.sqlite_shares import SqliteShareStore

    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteShareStore(data_dir / "shares.sqlite3")
