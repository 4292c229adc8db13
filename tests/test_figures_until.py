"""/figures?until=: a day so far, as the dashboard compares today with yesterday to the same hour. Events go
through the real dataflow (frozen clock) into a real SQLite read model, and the read API answers over
HTTP in process with the read side's clock frozen the next morning."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main

from core.clock import ms_of
from core.config import parse_config
from core.events import Event, Kind
from flows.dataflow import build_flow
from flows.recovery import ensure_recovery_dir
from state.sqlite_connections import SqliteConnectionStats
from state.sqlite_log import SqliteEventLog, SqliteLogReader
from state.sqlite_readmodel import SqliteReadModel
from state.sqlite_rejected import SqliteRejectedStore
from web.app import build_app
from ws_gateway import api

TOKEN = "until-token-0123456789"
CONFIG = parse_config(f"""
[orgs.o]
timezone = "Europe/Berlin"
currency = "EUR"
token = "{TOKEN}"
[orgs.o.stores.s]
provider = "events"
secret = "until-site-key-0123"
[orgs.o.segments.big]
name = "Spent 45 or more"
rule = {{spent = {{gte = "45.00"}}}}
""", {})
NOW = datetime(2026, 11, 22, 10, 20, tzinfo=UTC)  # 11:20 in Berlin; yesterday to the same hour: until 10:00 UTC
PARTITIONS = 2


def at(text: str) -> int:
    return ms_of(datetime.fromisoformat(text))


def paid(n: str, when: str, customer: str, amount: int) -> Event:
    return Event(id=f"p-{n}", kind=Kind.ORDER_PAID, org="o", store="s", time=at(when), amount=amount, currency="EUR",
                 order=n, customer=customer)


EVENTS = [
    paid("o1", "2026-11-20T23:30:00+00:00", "c1", 1000),  # 00:30 on the 21st in Berlin
    paid("o2", "2026-11-21T09:59:59.999+00:00", "c2", 2000),
    Event(id="r-o1", kind=Kind.ORDER_REFUNDED, org="o", store="s", time=at("2026-11-21T09:30:00+00:00"), amount=500,
          currency="EUR", order="o1", refund="re1", customer="c1"),
    paid("o3", "2026-11-21T10:00:00+00:00", "c1", 4000),  # from 10:00 on: not in the day so far
    paid("o4", "2026-11-21T15:00:00+00:00", "c3", 8000),
    paid("o5", "2026-11-22T09:00:00+00:00", "c4", 16000),  # today
]


@pytest.fixture(scope="module")
def side(tmp_path_factory: pytest.TempPathFactory) -> api.ReadSide:
    tmp = tmp_path_factory.mktemp("until")
    log = SqliteEventLog(tmp / "log.sqlite3", PARTITIONS)
    log.append_sync(EVENTS)
    asyncio.run(log.close())
    ensure_recovery_dir(tmp / "recovery", 1)
    flow = build_flow(CONFIG, lambda: SqliteLogReader(tmp / "log.sqlite3", PARTITIONS),
                      lambda: SqliteReadModel(tmp / "readmodel.sqlite3"), PARTITIONS, until_caught_up=True,
                      files_dir=tmp / "recovery" / "segments", clock=lambda: ms_of(NOW))
    run_main(flow, recovery_config=RecoveryConfig(str(tmp / "recovery")))
    return api.ReadSide(CONFIG, SqliteReadModel(tmp / "readmodel.sqlite3"), SqliteRejectedStore(tmp / "rejected.sqlite3"),
                        SqliteConnectionStats(tmp / "connections.sqlite3"), ws_port=0, now=lambda: NOW)


def figures(side: api.ReadSide, **params: str) -> httpx.Response:
    app = build_app(api.routes, api.handlers, {"read_side": side})

    async def one() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway") as client:
            return await client.get("/api/v1/orgs/o/figures", params=params, headers={"Authorization": f"Bearer {TOKEN}"})

    return asyncio.run(one())


def amounts(body: dict[str, Any]) -> tuple[Any, ...]:
    money = [None if body[k] is None else body[k]["amount"] for k in ("gross_revenue", "refunds", "net_revenue")]
    return (*money, body["paid_orders"])


def test_yesterday_to_the_same_hour_counts_only_the_hours_before_until(side: api.ReadSide) -> None:
    whole = figures(side, period="yesterday").json()
    assert amounts(whole) == (15000, 500, 14500, 4)
    r = figures(side, period="yesterday", until="2026-11-21T10:00:00.000Z")  # as the dashboard sends it
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["from"], body["to"], body["until"]) == ("2026-11-21", "2026-11-21", "2026-11-21T10:00:00+00:00")
    assert amounts(body) == (3000, 500, 2500, 2)  # o1 (its local day), o2 a millisecond before; the refund
    assert body["aov"]["amount"] == 1500
    # a cut after the day's end is the whole day; one before its start, nothing
    assert amounts(figures(side, period="yesterday", until="2026-11-22T09:00:00+01:00").json()) == amounts(whole)
    assert amounts(figures(side, period="yesterday", until="2026-11-20T23:00:00Z").json()) == (0, 0, 0, 0)
    assert amounts(figures(side, period="today", until="2026-11-22T10:00:00Z").json()) == (16000, 0, 16000, 1)


def test_a_segments_day_so_far(side: api.ReadSide) -> None:
    # members now: c1 (50.00), c3 (80.00), c4 (160.00); not c2 (20.00)
    body = figures(side, period="yesterday", segment="big", until="2026-11-21T10:00:00Z").json()
    assert (body["members"], body["gross_revenue"]["amount"], body["paid_orders"]) == (3, 1000, 1)
    assert body["paid_orders_refunded"]["amount"] == 500 and body["until"] == "2026-11-21T10:00:00+00:00"
    whole = figures(side, period="yesterday", segment="big").json()
    assert (whole["gross_revenue"]["amount"], whole["paid_orders"]) == (13000, 3)


@pytest.mark.parametrize("until", ["2026-11-21T10:30:00Z", "2026-11-21T10:00:00", "10:00"])
def test_an_until_off_the_hour_is_400_saying_so(side: api.ReadSide, until: str) -> None:
    r = figures(side, period="yesterday", until=until)
    assert r.status_code == 400
    assert r.json() == {"error": "until must be a whole hour with its offset, as 2026-03-04T15:00:00Z (figures are kept "
                                 f"by the hour), got {until!r}"}
