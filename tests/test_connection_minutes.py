"""Both connection-statistics backends keep a day of active minutes for the health checks (core/health.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from core.health import Check, store_silent
from state.connections import ConnectionStats, StoreActivity
from state.redis_connections import RedisConnectionStats
from state.sqlite_connections import SqliteConnectionStats
from tests.helpers import RedisServer

NOW_S = 1_800_000_000.0
NOW_MINUTE = int(NOW_S // 60)


@pytest.fixture(params=["sqlite", "redis"])
def stats(request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer) -> Iterator[ConnectionStats]:
    if request.param == "sqlite":
        s: ConnectionStats = SqliteConnectionStats(tmp_path / "connections.sqlite3")
    else:
        redis.Redis.from_url(redis_server.url).flushall()
        s = RedisConnectionStats(redis_server.url)
    yield s
    s.close()


def test_active_minutes_of_the_last_day_feed_the_silence_check(stats: ConnectionStats) -> None:
    # a store that sent something every 10 minutes for 20 hours, then nothing for 50 minutes
    minutes = [NOW_MINUTE - 50 - 10 * i for i in range(120)]
    stats.record([StoreActivity("s1", {m: 3 for m in minutes}, 1, (NOW_MINUTE - 50) * 60)])
    stats.record([StoreActivity("s2", {NOW_MINUTE: 1}, 1, NOW_S)])
    got = stats.active_minutes("s1", NOW_MINUTE - 24 * 60, NOW_MINUTE)
    assert got == sorted(minutes)
    assert stats.active_minutes("s1", NOW_MINUTE - 60, NOW_MINUTE) == [NOW_MINUTE - 60, NOW_MINUTE - 50]
    assert stats.active_minutes("nobody", NOW_MINUTE - 60, NOW_MINUTE) == []
    _, _, last = stats.activity("s1", NOW_MINUTE - 60)
    problem = store_silent("s1", got, last, NOW_S)  # usual gap 10 minutes: silent after 40; it has been 50
    assert problem is not None and problem.check is Check.STORE_SILENT and dict(problem.detail)["usual_gap_s"] == 600
    assert store_silent("s2", stats.active_minutes("s2", NOW_MINUTE - 1440, NOW_MINUTE), NOW_S, NOW_S) is None
