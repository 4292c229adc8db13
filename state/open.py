"""Picks the embedded (SQLite under a data directory) or distributed (Redis) implementation."""

from __future__ import annotations

from pathlib import Path

from state.connections import ConnectionStats
from state.log import EventLog, LogReader
from state.readmodel import ReadModel
from state.rejected import RejectedLimits, RejectedStore


def log_path(data_dir: Path) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir / "log.sqlite3"


def open_log(data_dir: Path, redis_url: str | None) -> EventLog:
    if redis_url:
        from state.redis_log import RedisEventLog

        return RedisEventLog(redis_url)
    from state.sqlite_log import SqliteEventLog

    return SqliteEventLog(log_path(data_dir))


def open_log_reader(data_dir: Path, redis_url: str | None) -> LogReader:
    if redis_url:
        from state.redis_log import RedisLogReader

        return RedisLogReader(redis_url)
    from state.sqlite_log import SqliteLogReader

    return SqliteLogReader(log_path(data_dir))


def open_read_model(data_dir: Path, redis_url: str | None) -> ReadModel:
    if redis_url:
        from state.redis_readmodel import RedisReadModel

        return RedisReadModel(redis_url)
    from state.sqlite_readmodel import SqliteReadModel

    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteReadModel(data_dir / "readmodel.sqlite3")


def open_rejected(data_dir: Path, redis_url: str | None, limits: RejectedLimits | None = None) -> RejectedStore:
    if redis_url:
        from state.redis_rejected import RedisRejectedStore

        return RedisRejectedStore(redis_url, limits)
    from state.sqlite_rejected import SqliteRejectedStore

    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteRejectedStore(data_dir / "rejected.sqlite3", limits)


def open_connection_stats(data_dir: Path, redis_url: str | None) -> ConnectionStats:
    if redis_url:
        from state.redis_connections import RedisConnectionStats

        return RedisConnectionStats(redis_url)
    from state.sqlite_connections import SqliteConnectionStats

    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteConnectionStats(data_dir / "connections.sqlite3")
