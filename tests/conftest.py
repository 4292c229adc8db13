from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from hypothesis import settings

from state.readmodel import ReadModel
from state.redis_readmodel import RedisReadModel
from state.sqlite_readmodel import SqliteReadModel
from tests.helpers import RedisServer, Storepulse

# Property tests check what is computed, not how fast: a deadline per example fails them on a busy
# machine (CI shares two cores with the servers the other tests start).
settings.register_profile("storepulse", deadline=None)
settings.load_profile("storepulse")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    """Warming and a kept file's load (ws_gateway/warm_start.py, kept_file.py) freeze what they built out of
    the collector's scans, as a gateway should: the test process's own objects are collected as before for
    the tests after them."""
    yield
    gc.unfreeze()


@pytest.fixture(params=["sqlite", "redis"])
def stamped(request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer) -> Iterator[ReadModel]:
    """An empty read model that stamps its days (state/day_stamps.py): SQLite's, or Redis's."""
    if request.param == "redis":
        redis.Redis.from_url(redis_server.url).flushall()
        m: ReadModel = RedisReadModel(redis_server.url)
    else:
        m = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    yield m
    m.close()


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def storepulse(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    """One running `storepulse up` per backend, shared by a module's tests (they use distinct ids)."""
    redis_url = None
    if request.param == "redis":
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        request.addfinalizer(server.stop)
        redis_url = server.url
    sp = Storepulse(tmp_path_factory.mktemp(f"sp-{request.param}"), redis_url)
    sp.start()
    yield sp
    sp.ensure_stopped()


def pytest_report_header(config: pytest.Config) -> str:
    shared = Path(__file__).resolve().parent.parent.parent / "shared"
    return f"shared fixtures: {shared if shared.is_dir() else 'absent (tests that read ../shared will skip)'}"
