"""Picks the embedded (SQLite in the data directory) or distributed (Redis) outbox."""

from __future__ import annotations

from pathlib import Path

from notifier.outbox import Outbox


def open_outbox(data_dir: Path, redis_url: str | None) -> Outbox:
    if redis_url:
        from notifier.redis_outbox import RedisOutbox

        return RedisOutbox(redis_url)
    from notifier.sqlite_outbox import SqliteOutbox

    return SqliteOutbox(data_dir / "outbox.sqlite3")
