"""The read side's kept parts saved in the background once warmed and taken back at the next start
(ws_gateway/kept_file.py): a start after a save computes nothing that was not written since, and answers
as the model with its stamps hidden does (computed per request); a day written since is computed again; a
file of another read model, code, settings or rates, or a damaged one, is not used; the forked save holds
still what it saves. On SQLite and Redis, and through the real `storepulse up`."""

from __future__ import annotations

import os
import random
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from core.config import parse_config
from core.rates import parse_ecb_csv
from state.readmodel import ReadModel
from state.redis_readmodel import RedisReadModel
from state.sqlite_readmodel import SqliteReadModel
from tests.helpers import RedisServer, Storepulse, wait_for
from tests.test_day_cache import CONFIG, DAY_MS, NOW_MS, Unstamped, _order, _shop, _side
from tests.test_e2e_segment_preview import metric
from tests.test_warm_start import _ask
from ws_gateway import api, cached_lists, day_updates, kept_file, list_parts, warm_start

RATES = "Date,USD,\n2026-01-02,1.1,\n"
OTHER_RATES = "Date,USD,\n2026-01-02,1.2,\n"


def _warm(side: api.ReadSide, data_dir: Path | None) -> warm_start.Warming:
    warming = warm_start.start_side(side, data_dir)
    assert warming.wait(60), "warming finished"
    return warming


def _saved(warming: warm_start.Warming) -> None:
    """Waits for the background save that follows warming, then stops the thread."""
    wait_for(lambda: warming.saves >= 1, 60, "the kept parts saved in the background")
    warming.close()


def _forbid_computing(monkeypatch: pytest.MonkeyPatch) -> None:
    def computed(*args: object, **kwargs: object) -> None:
        raise AssertionError("a part was computed")

    for name in ("orders_part", "customers_part", "carts_part", "best_carts_part", "paid_times"):
        monkeypatch.setattr(list_parts, name, computed)
    for update in (list_parts.OrdersUpdate, day_updates.CustomersUpdate, day_updates.PaidTimesUpdate):
        monkeypatch.setattr(update, "build", computed)
    monkeypatch.setattr(cached_lists, "_lives_part", computed)


def _written(model: ReadModel) -> None:
    rng = random.Random(5)
    model.write(_shop(rng) + [_order(rng, 1000 + i, 1, NOW_MS - (8 + i) * DAY_MS - 3_600_000) for i in range(0, 172, 3)])


def test_a_start_after_a_save_computes_nothing_and_answers_the_same(stamped: ReadModel, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    _written(stamped)
    first = _side(stamped, tmp_path)
    _saved(_warm(first, tmp_path))
    assert (tmp_path / kept_file.NAME).exists()
    expected = _ask(_side(Unstamped(stamped), tmp_path))

    _forbid_computing(monkeypatch)
    again = _side(stamped, tmp_path)
    warming = _warm(again, tmp_path)
    steps = warm_start.steps(again.day_cache, stamped, again.config.orgs.values(), again.rates, again.now)
    assert [w for w, _ in warming.took] == [w for w, _ in steps], "every step ran (none failed for computing)"
    assert _ask(again) == expected
    warming.close()
    assert warming.saves == 0, "nothing changed since the file was taken: not saved again"


def test_a_day_written_since_the_save_is_computed_again(stamped: ReadModel, tmp_path: Path) -> None:
    _written(stamped)
    _saved(_warm(_side(stamped, tmp_path), tmp_path))
    rng = random.Random(9)
    # today's new order, an order moved to another day, a refund-like rewrite of an old one
    stamped.write([_order(rng, 5000, 1, NOW_MS - 3_600_000), _order(rng, 1003, 2, NOW_MS - 20 * DAY_MS),
                   _order(rng, 7, 3)])
    again = _side(stamped, tmp_path)
    warming = _warm(again, tmp_path)
    assert _ask(again) == _ask(_side(Unstamped(stamped), tmp_path))
    _saved(warming)  # the days computed again: saved again


def test_a_file_of_another_model_code_setting_or_rates_is_not_used(tmp_path: Path) -> None:
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    _written(model)
    config, rates = parse_config(CONFIG, {}), parse_ecb_csv(RATES)
    saved = kept_file.at(tmp_path, model, config, rates)
    assert saved is not None
    side = _side(model, tmp_path)
    _warm(side, None).close()  # no kept file of its own: this test saves with its marks
    assert saved.save(side.day_cache) > 0

    def taken(kept: kept_file.KeptFile | None) -> int | None:
        assert kept is not None
        return kept.load(_side(model, tmp_path).day_cache)

    assert taken(kept_file.at(tmp_path, model, config, parse_ecb_csv(RATES)))  # the same: taken
    # the same records in a new file (a model rebuilt from the log): its stamps count from nothing again
    rebuilt = SqliteReadModel(tmp_path / "rebuilt.sqlite3")
    _written(rebuilt)
    assert rebuilt.identity() != model.identity()
    assert taken(kept_file.at(tmp_path, rebuilt, config, rates)) is None
    assert taken(kept_file.at(tmp_path, model, config, parse_ecb_csv(OTHER_RATES))) is None
    other_zone = parse_config(CONFIG.replace('timezone = "Europe/Berlin"', 'timezone = "Europe/Rome"', 1), {})
    assert taken(kept_file.at(tmp_path, model, other_zone, rates)) is None
    other_code = kept_file.KeptFile(saved.path, kept_file.mark(kept_file.FORMAT, model.identity(), b"other code",
                                                                kept_file.settings_of(config), rates))
    assert taken(other_code) is None
    # damaged: cut short, then not a pickle at all; the warming after it computes everything and answers right
    data = saved.path.read_bytes()
    saved.path.write_bytes(data[: len(data) // 2])
    assert taken(saved) is None
    saved.path.write_bytes(saved.first_line + b"not a pickle")
    assert taken(saved) is None
    side = _side(model, tmp_path)  # its own mark (no rates), on a damaged file: warming computes everything
    mine = kept_file.at(tmp_path, model, side.config, side.rates)
    assert mine is not None
    mine.path.write_bytes(mine.first_line + b"not a pickle")
    _saved(_warm(side, tmp_path))
    assert _ask(side) == _ask(_side(Unstamped(model), tmp_path))
    assert mine.load(_side(model, tmp_path).day_cache), "saved again, whole, after the damaged one"
    rebuilt.close()
    model.close()


def test_a_request_during_the_load_waits_for_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    _written(model)
    _saved(_warm(_side(model, tmp_path), tmp_path))
    side = _side(model, tmp_path)
    load = kept_file.load
    started = []

    def slow_load(*args: object) -> int | None:
        started.append(True)
        assert not side.day_cache._ready.is_set(), "requests wait while the file comes in"
        time.sleep(0.5)  # the requests below arrive meanwhile: they must wait, not compute
        return load(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(kept_file, "load", slow_load)
    warming = warm_start.start_side(side, tmp_path)
    assert not side.day_cache._ready.is_set() or started, "held from the start, before the thread runs"
    _forbid_computing(monkeypatch)  # a request asking now must not compute what the file holds
    answers = _ask(side)
    assert warming.wait(60) and started
    warming.close()
    monkeypatch.undo()
    assert answers == _ask(_side(Unstamped(model), tmp_path))
    model.close()


def test_redis_identity_is_made_once_and_goes_with_a_flush(redis_server: RedisServer) -> None:
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    a, b = RedisReadModel(redis_server.url), RedisReadModel(redis_server.url)
    assert a.identity() == b.identity()
    before = a.identity()
    client.flushall()
    assert a.identity() != before
    a.close()
    b.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_storepulse_up_saves_at_shutdown_and_takes_them_at_the_next_start(backend: str, tmp_path: Path,
                                                                          redis_server: RedisServer) -> None:
    if backend == "redis":
        redis.Redis.from_url(redis_server.url).flushall()
    sp = Storepulse(tmp_path, redis_server.url if backend == "redis" else None)
    try:
        sp.start()
        wait_for(lambda: "kept parts saved to" in sp.log_tail(100_000), 60, f"saved once warmed ({sp.logfile})")
        assert (sp.data_dir / kept_file.NAME).exists()
        assert metric(sp, 'storepulse_gateway_kept_parts_saves_total{outcome="saved"}') == 1
        assert metric(sp, "storepulse_gateway_kept_parts_bytes") == (sp.data_dir / kept_file.NAME).stat().st_size
        assert metric(sp, "storepulse_gateway_kept_parts_load_seconds") == 0, "no file at the first start"
        before = sp.get("/api/v1/orgs/acme/customers", period="90d")
        assert before.status_code == 200
        assert sp.stop() == 0, sp.log_tail()
        sp.start()
        wait_for(lambda: sp.log_tail(100_000).count("warming done") == 2, 30, f"warming done again ({sp.logfile})")
        assert "took " in sp.log_tail(100_000) and " kept parts from " in sp.log_tail(100_000), sp.log_tail()
        assert (metric(sp, "storepulse_gateway_kept_parts_load_seconds") or 0) > 0
        assert sp.get("/api/v1/orgs/acme/customers", period="90d").json() == before.json()
        assert sp.stop() == 0, sp.log_tail()
    finally:
        sp.ensure_stopped()


def test_still_holds_every_state_and_the_cache_until_the_block_ends(tmp_path: Path) -> None:
    """What the forked save pickles is one instant: a request changes a state under its locks, the
    cache under the cache's; DayCache.still holds them all (and leaves out a state made meanwhile)."""
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    _written(model)
    side = _side(model, tmp_path)
    _warm(side, None)
    cache = side.day_cache
    states = [state for state, _ in cache._states.values()]
    locks = [lock for state in states for lock in state.locks()]
    assert len(states) == 2 and len(locks) >= 3, "the best customers' state, the order sums and their periods"
    with cache.still() as kept:
        assert all(lock.locked() for lock in locks) and cache._lock.locked()
        assert {id(s) for s, _ in kept.states.values()} == {id(s) for s in states}
        assert kept.parts == dict(cache._parts)
    assert not any(lock.locked() for lock in locks) and not cache._lock.locked()
    model.close()


def test_the_saving_child_holds_none_of_the_gateways_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A restart during a background save must find its ports free: the child closes what it inherited."""
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    _written(model)
    side = _side(model, tmp_path)
    _warm(side, None).close()
    kept = kept_file.at(tmp_path, model, side.config, side.rates)
    assert kept is not None
    write = kept_file.write

    def slow_write(*args: Any) -> int:  # in the child, after it closed what it inherited
        (tmp_path / "writing").touch()
        time.sleep(1.5)  # long enough for its open files to be listed below
        return write(*args)

    monkeypatch.setattr(kept_file, "write", slow_write)
    listening = socket.create_server(("127.0.0.1", 0))
    try:
        pid = kept_file.save_in_background(side.day_cache, kept)
        wait_for((tmp_path / "writing").exists, 30, "the child writing")
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        mine = os.readlink(f"/proc/self/fd/{listening.fileno()}")
        assert mine.startswith("socket:") and mine not in held, held
        assert not any(str(tmp_path / "readmodel.sqlite3") in f for f in held), held
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert kept.load(_side(model, tmp_path).day_cache), "the child's file is whole"
    finally:
        listening.close()
        model.close()
