"""The read API's per-day parts (ws_gateway/day_cache.py) never change an answer: every list read
through a real SQLite read model, which stamps its days, equals the same list read through the same
model with its stamps hidden (one part for the whole period, computed afresh), before and after
writes that change past days, move an order to another day, or replay an older version; on SQLite and
on Redis, both stamped. And the read models' stamps themselves: a day's stamp moves with every applied
write to it (more in tests/test_readmodel_days.py)."""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from msgspec import Raw

from core.changes import Bucket, Change, Record, V
from core.config import parse_config
from core.figures import OPEN_END, quota_count
from core.records import Cart, Customer, CustomerMoney, Order
from state.day_stamps import DayStamped
from state.readmodel import ReadModel
from state.sqlite_connections import SqliteConnectionStats
from state.sqlite_readmodel import SqliteReadModel
from state.sqlite_rejected import SqliteRejectedStore
from web.app import build_app
from ws_gateway import api
from ws_gateway.day_cache import DayCache
from ws_gateway.limits import ApiLimits

TOKEN = "day-cache-token-0123456789"
CONFIG = f"""
[orgs.acme]
timezone = "Europe/Berlin"
currency = "EUR"
token = "{TOKEN}"
[orgs.acme.stores.web]
provider = "events"
secret = "day-cache-site-key-0123"
[orgs.acme.stores.shop]
provider = "events"
secret = "day-cache-site-key-4567"
"""
NOW = datetime(2026, 11, 22, 11, 0, tzinfo=UTC)
DAY_MS = 86_400_000
NOW_MS = int(NOW.timestamp() * 1000)


class Unstamped:
    """The model with its day stamps hidden: what Redis or a share link's view gives the read side."""

    def __init__(self, model: ReadModel) -> None:
        self.model = model

    def snapshot(self, org: str, grain: str | None = None) -> tuple[int, list[Bucket]]:
        return self.model.snapshot(org, grain)

    def records(self, org: str, kind: type[V], first: str = "", last: str = OPEN_END) -> list[Record[V]]:
        return self.model.records(org, kind, first, last)

    def caught_up_at(self, org: str) -> int | None:
        return self.model.caught_up_at(org)

    def write(self, changes: Sequence[Change]) -> None:
        self.model.write(changes)

    def caught_up(self, at: dict[str, int]) -> None:
        self.model.caught_up(at)

    def feed(self) -> AsyncIterator[list[Change] | None]:
        return self.model.feed()

    def close(self) -> None:
        pass


def _day(ms: int) -> str:
    return (datetime.fromtimestamp(ms / 1000, UTC) + timedelta(hours=1)).date().isoformat()  # Berlin in November


def _order(rng: random.Random, i: int, version: int, paid: int | None = None) -> Record[Order]:
    paid = NOW_MS - rng.randrange(12 * DAY_MS) if paid is None else paid
    store = rng.choice(("web", "shop"))
    lines = [(f"p{rng.randrange(8)}", rng.randrange(1, 4), rng.randrange(100, 5000), rng.choice(("", f"Name {i % 3}")))
             for _ in range(rng.randrange(1, 4))]
    return Record("acme", version, Order.KIND, f"{store}:o{i}", _day(paid), Order(
        store=store, order=f"o{i}", customer=None if i % 9 == 0 else f"c{rng.randrange(40)}",
        source=rng.choice(("web", "email_campaign")), placed=paid - 60_000, paid=paid,
        currency=rng.choice(("EUR", "EUR", "GBP")), amount=sum(q * u for _, q, u, _ in lines), refunded=0,
        cancelled=False, items=Raw(orjson.dumps(lines))))


def _shop(rng: random.Random) -> list[Change]:
    out: list[Change] = [_order(rng, i, 1) for i in range(300)]
    for i in range(120):
        first = NOW_MS - rng.randrange(12 * DAY_MS)
        out.append(Record("acme", 1, Cart.KIND, f"web:k{i}", _day(first), Cart(
            store=rng.choice(("web", "shop")), cart=f"k{i}", person=None, status="open" if i % 3 else "abandoned",
            currency="EUR", value=100 + rng.randrange(5000), items=[("p1", 1, 100)], first=first, last=first + rng.randrange(100_000), due=None, paid=None)))
    for c in range(40):
        reg = NOW_MS - rng.randrange(20 * DAY_MS)
        money = [CustomerMoney("web", "EUR", c % 4, c % 5, 1000 * c, 0, reg, reg + c)] if c % 4 else []
        out.append(Record("acme", 1, Customer.KIND, f"c{c}", _day(reg), Customer(
            customer=f"c{c}", store="web", registered=reg, first_seen=reg, registered_at=reg, last_active=None,
            email=None, name=None, orders=c % 4, items=c % 5, first_paid=reg if c % 4 else None,
            last_paid=reg + c if c % 4 else None, money=money)))
    return out


# every list, with the parameters that select different parts and merges
ASKS: list[tuple[str, dict[str, Any]]] = [
    (what, {"period": period, **extra, **({"store": "shop"} if shop else {})})
    for period in ("7d", "30d", "today") for shop in (False, True)
    for what, extra in (("orders", {"sort": "latest", "limit": 7}), ("orders", {"sort": "best", "limit": 1000}),
                        ("products", {"sort": "revenue"}), ("products", {"sort": "units", "limit": 3}),
                        ("products", {"sort": "orders"}), ("pairs", {"sort": "orders"}), ("pairs", {"sort": "lift"}),
                        ("customers", {"sort": "revenue", "limit": 5}), ("customers", {"sort": "registered"}),
                        ("customers", {"filter": "never_bought"}), ("carts", {"limit": 4}))
] + [("customers", {"period": "all", "sort": s}) for s in ("revenue", "orders", "items")] + [
    ("quota", {"at": (NOW - timedelta(days=d)).isoformat()}) for d in (0, 3)]


def _answers(side: api.ReadSide) -> list[Any]:
    """Every ASKS answer (GBP orders with no rates: the gaps are part of the answer too)."""
    app = build_app(api.routes, api.handlers, {"read_side": side})

    async def ask() -> list[Any]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            out = []
            for what, params in ASKS:
                r = await client.get(f"/api/v1/orgs/acme/{what}", params=params)
                assert r.status_code == 200, (what, params, r.text)
                out.append((what, params, r.json()))
            return out

    return asyncio.run(ask())


def _side(model: ReadModel, tmp: Path) -> api.ReadSide:
    return api.ReadSide(parse_config(CONFIG, {}), model, SqliteRejectedStore(tmp / "rejected.sqlite3"),
                        SqliteConnectionStats(tmp / "connections.sqlite3"), ws_port=0, now=lambda: NOW,
                        limits=ApiLimits(rate=1e9, burst=1e9))


def test_every_list_through_day_parts_equals_the_whole_period_before_and_after_writes(stamped: ReadModel, tmp_path: Path) -> None:
    rng = random.Random(7)
    model = stamped
    model.write(_shop(rng))
    assert isinstance(model, DayStamped) and not isinstance(Unstamped(model), DayStamped)
    cached, whole = _side(model, tmp_path), _side(Unstamped(model), tmp_path)
    assert _answers(cached) == _answers(whole)
    assert cached.day_cache._parts, "the stamped model's lists were computed in day parts"
    # a past day changes (a new order, a moved order, a refund) and an older version is replayed
    moved = _order(rng, 5, 2, paid=NOW_MS - 9 * DAY_MS)
    old = _order(rng, 6, 0)
    model.write([_order(rng, 1000, 2, paid=NOW_MS - 3 * DAY_MS), moved, old])
    answers = _answers(cached)
    assert answers == _answers(whole)
    # the quota counted by day parts is core.figures.quota_count over every order
    paid = [r.value.paid for r in model.records("acme", Order) if r.value.paid is not None]
    quotas = [(params["at"], body["paid_orders_30d"]) for what, params, body in answers if what == "quota"]
    assert quotas == [(at, quota_count(paid, int(datetime.fromisoformat(at).timestamp() * 1000))) for at, _ in quotas]
    assert all(n > 0 for _, n in quotas)


def test_a_days_stamp_moves_with_each_applied_write(stamped: ReadModel) -> None:
    model = stamped
    assert isinstance(model, DayStamped)
    rng = random.Random(3)
    first = _order(rng, 1, 1, paid=NOW_MS - 5 * DAY_MS)
    model.write([first])
    d5, d2 = _day(NOW_MS - 5 * DAY_MS), _day(NOW_MS - 2 * DAY_MS)
    assert model.day_stamps("acme", Order) == {d5: 1}
    model.write([_order(rng, 1, 0, paid=NOW_MS - 5 * DAY_MS)])  # an older version: not applied
    assert model.day_stamps("acme", Order) == {d5: 1}
    moved = Record("acme", 2, Order.KIND, first.key, d2, first.value)  # paid later than first reported
    model.write([moved])
    assert model.day_stamps("acme", Order) == {d5: 2, d2: 1}
    assert model.day_stamps("acme", Order, d2, d2) == {d2: 1} and model.day_stamps("acme", Cart) == {}


def test_an_old_file_gets_stamps(tmp_path: Path) -> None:
    """A SQLite file written before the stamps existed: they are counted from its records when it is
    opened (Redis's previous layout: tests/test_readmodel_days.py)."""
    path = tmp_path / "readmodel.sqlite3"
    model = SqliteReadModel(path)
    rng = random.Random(3)
    first = _order(rng, 1, 1, paid=NOW_MS - 5 * DAY_MS)
    d2 = _day(NOW_MS - 2 * DAY_MS)
    model.write([first, Record("acme", 2, Order.KIND, first.key, d2, first.value)])
    model.close()
    with sqlite3.connect(path) as conn:
        conn.executescript("DROP TRIGGER record_days_insert; DROP TRIGGER record_days_update; DROP TABLE record_days;")
    reopened = SqliteReadModel(path)
    assert reopened.day_stamps("acme", Order) == {d2: 1}
    reopened.write([_order(rng, 2, 3, paid=NOW_MS - 2 * DAY_MS)])
    assert reopened.day_stamps("acme", Order) == {d2: 2}
    reopened.close()


def test_the_cache_keeps_parts_up_to_its_weight_and_recomputes_what_it_dropped(tmp_path: Path) -> None:
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    model.write(_shop(random.Random(5)))
    days = model.day_stamps("acme", Order)
    computed: list[int] = []

    def count(records: list[Record[Order]]) -> int:
        computed.append(len(records))
        return len(records)

    roomy, tight = DayCache(), DayCache(most=120)  # 300 orders over 12 days: ~26 a day, 120 keep ~4 days
    for cache in (roomy, tight):
        computed.clear()
        first = cache.parts(model, "acme", Order, "", OPEN_END, "n", count)
        assert first == [len(model.records("acme", Order, d, d)) for d in sorted(days)] and len(computed) == len(days)
        computed.clear()
        kept = sum(1 for d in days if ("acme", Order.KIND, "n", d) in cache._parts)
        assert kept == len(days) if cache is roomy else 0 < kept < len(days)  # the tight one: the last days it met
        assert cache.parts(model, "acme", Order, "", OPEN_END, "n", count) == first
        assert cache._weight <= cache.most
        # the roomy cache recomputes nothing; the tight one what it dropped
        assert len(computed) == len(days) - kept
    model.close()


def test_a_part_that_holds_a_few_records_weighs_what_it_holds(tmp_path: Path) -> None:
    """A day's top carts or cart names hold a bounded few of its records: weighed by the records they were
    computed from, three such kinds over 90 days of carts pushed the orders' and customers' parts out at 1M
    (a first /carts of 90 days 11 s instead of 2 ms, bench/RESULTS.md); weighed by what they hold, not."""
    model = SqliteReadModel(tmp_path / "readmodel.sqlite3")
    model.write(_shop(random.Random(5)))
    days = model.day_stamps("acme", Order)
    cache = DayCache(most=120)  # ~26 orders a day: by records, ~4 days fit

    def top(records: list[Record[Order]]) -> list[str]:
        return sorted(r.key for r in records)[:2]

    cache.parts(model, "acme", Order, "", OPEN_END, "top", top, weigh=len)
    assert all(("acme", Order.KIND, "top", d) in cache._parts for d in days) and cache._weight == 3 * len(days)
    cache.parts(model, "acme", Order, "", OPEN_END, "by records", top)
    assert cache._weight <= cache.most and not all(("acme", Order.KIND, "by records", d) in cache._parts for d in days)
    model.close()
