"""The read side warmed at start (ws_gateway/warm_start.py): once the warming thread is done, the
dashboard's first requests (best customers of every named period, the order lists, carts, quota)
compute no part, and answer as the model with its stamps hidden does (computed per request): on SQLite
and on Redis, both stamped."""

from __future__ import annotations

import asyncio
import gc
import random
import threading
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from core.changes import Record
from core.records import Cart
from state.readmodel import ReadModel
from state.sqlite_readmodel import SqliteReadModel
from tests.helpers import RedisServer, Storepulse, wait_for
from tests.test_day_cache import DAY_MS, NOW_MS, TOKEN, Unstamped, _day, _order, _shop, _side
from web.app import build_app
from ws_gateway import api, cached_lists, day_updates, list_parts, warm_start

TODAY = date(2026, 11, 22)
FIRST: list[tuple[str, dict[str, Any]]] = [
    *(("customers", {"period": p, "limit": 1}) for p in warm_start.CUSTOMER_PERIODS),
    *(("orders", {"period": p, "sort": "latest"}) for p in ("7d", "90d")),
    ("customers", {"period": "7d", "limit": 20}), ("products", {"period": "30d"}), ("carts", {"period": "90d", "limit": 1}),
    ("quota", {}),
    # what the overview compares 7, 30 and 90 days with: as many days just before (NOW's local day is 2026-11-22)
    *(("customers", {"from": str(TODAY - timedelta(days=2 * n - 1)), "to": str(TODAY - timedelta(days=n)), "limit": 1})
      for n in (7, 30, 90)),
    ("carts", {"from": str(TODAY - timedelta(days=179)), "to": str(TODAY - timedelta(days=90)), "limit": 1})]


def _ask(side: api.ReadSide) -> list[Any]:
    app = build_app(api.routes, api.handlers, {"read_side": side})

    async def ask() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            out = []
            for what, params in FIRST:
                r = await client.get(f"/api/v1/orgs/acme/{what}", params=params)
                assert r.status_code == 200, (what, params, r.text)
                out.append(r.json())
            return out

    return asyncio.run(ask())


def test_after_warming_the_first_requests_compute_no_part(stamped: ReadModel, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    model = stamped
    rng = random.Random(3)
    # and orders 8-179 days old, so that the periods before 7, 30 and 90 days hold some of their own, and
    # carts 31-89 days old, so that the 90 days' carts hold more days than the 30 days' (warmed alike)
    carts = [Record("acme", 1, Cart.KIND, f"web:old{d}", _day(first), Cart(
        store="web", cart=f"old{d}", person=None, status="abandoned", currency="EUR", value=100 + d, items=[("p1", 1, 100)],
        first=first, last=first + 60_000, due=None, paid=None)) for d in range(31, 90, 7) if (first := NOW_MS - d * DAY_MS)]
    model.write(_shop(rng) + [_order(rng, 1000 + i, 1, NOW_MS - (8 + i) * DAY_MS - 3_600_000) for i in range(0, 172, 3)]
                + carts)
    side = _side(model, tmp_path)
    gc.unfreeze()
    warming = warm_start.start_side(side)
    assert warming.wait(60), "warming finished"
    frozen = gc.get_freeze_count()
    gc.unfreeze()  # the test process's own objects: collected as before for the tests after this one
    assert frozen > 0, "what warming built is out of the collector's scans"
    assert [w for w, _ in warming.took] == [w for w, _ in warm_start.steps(side.day_cache, model, side.config.orgs.values(),
                                                                             side.rates, side.now)]
    expected = _ask(_side(Unstamped(model), tmp_path))  # computed per request, before the parts are forbidden

    def computed(*args: object, **kwargs: object) -> None:
        raise AssertionError("a part was computed after warming")

    for name in ("orders_part", "customers_part", "carts_part", "best_carts_part", "paid_times"):
        monkeypatch.setattr(list_parts, name, computed)
    for update in (list_parts.OrdersUpdate, day_updates.CustomersUpdate, day_updates.PaidTimesUpdate):
        monkeypatch.setattr(update, "build", computed)  # what computes the parts a write can update
    monkeypatch.setattr(cached_lists, "_lives_part", computed)
    assert _ask(side) == expected


def test_nothing_is_warmed_without_day_stamps_or_a_read_side(tmp_path: Path) -> None:
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    side = _side(Unstamped(model), tmp_path)
    for warming in (warm_start.start_side(side), warm_start.start_side(None)):
        assert warming.thread is None and warming.wait(0)
        warming.close()
    assert not side.day_cache._parts
    model.close()


def test_closing_stops_the_warming_after_the_step_under_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    side = _side(model, tmp_path)
    entered, gate, ran = threading.Event(), threading.Event(), []

    def first() -> None:
        entered.set()
        assert gate.wait(10)
        ran.append("first")

    monkeypatch.setattr(warm_start, "steps", lambda *args: [("first", first), ("second", lambda: ran.append("second"))])
    warming = warm_start.start_side(side)
    assert entered.wait(10)
    warming.stop.set()  # as close() does, while the first step is under way
    gate.set()
    warming.close()
    assert ran == ["first"] and [w for w, _ in warming.took] == ["first"]
    assert warming.thread is not None and not warming.thread.is_alive()
    model.close()


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_storepulse_up_warms_at_start_and_stops_cleanly(backend: str, tmp_path: Path, redis_server: RedisServer) -> None:
    """The real `storepulse up`: its log says each organisation's parts were warmed (on Redis too: its
    read model stamps its days), and Ctrl-C ends it."""
    if backend == "redis":
        redis.Redis.from_url(redis_server.url).flushall()
    sp = Storepulse(tmp_path, redis_server.url if backend == "redis" else None)
    try:
        sp.start()
        wanted = [f"warmed {org} {what}" for org in ("acme", "tokyo") for what in ("customers 90d", "orders 90d", "quota")]
        wait_for(lambda: all(w in sp.log_tail(100_000) for w in wanted), 30, f"warming in the log ({sp.logfile})")
        assert sp.get("/api/v1/orgs/acme/customers", period="90d").status_code == 200
        assert sp.stop() == 0, sp.log_tail()
    finally:
        sp.ensure_stopped()
