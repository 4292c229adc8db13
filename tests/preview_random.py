"""Random customer, order and cart records and random customer rules of every criterion the preview
answers, for comparing the preview's columns (ws_gateway/preview_eval.py) with the records' path
(ws_gateway/segment_preview.py): tests/test_segment_preview_columns.py and its e2e sibling."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from msgspec import Raw

from core.changes import Record
from core.clock import local_day, local_midnight
from core.rates import parse_ecb_csv
from core.records import Cart, Customer, CustomerMoney, Order, RecordKind, Value

ORG, TZ, CURRENCY = "acme", "Europe/Berlin", "EUR"
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
# Now: an hour after the spring DST change in Berlin, so local days of 23 hours are in every window
NOW = local_midnight(date(2024, 3, 31), ZoneInfo(TZ)) + 4 * HOUR
STORES = ("s1", "s2", "s3")
PRODUCTS = tuple(f"p{i}" for i in range(8))
DURATIONS = ("30m", "24h", "2d", "7d", "30d", "90d")
DURATION_MS = {"30m": 30 * MIN, "24h": DAY, "2d": 2 * DAY, "7d": 7 * DAY, "30d": 30 * DAY, "90d": 90 * DAY}


def rates_csv() -> str:
    """USD and JPY fixings on weekdays from 2023-06-01 (GBP has none: its amounts count 0)."""
    lines = ["Date,USD,JPY,"]
    for i in range(400):
        day = date(2023, 6, 1) + timedelta(days=i)
        if day.weekday() < 5:
            lines.append(f"{day.isoformat()},{1 + (i * 37 % 41) / 100:.4f},{150 + i % 17}.{i % 10}0")
    return "\n".join(lines)


RATES = parse_ecb_csv(rates_csv())
_ZONE = ZoneInfo(TZ)


def _time(rnd: random.Random) -> int:
    """An instant near NOW, often exactly on a window's edge or a local midnight."""
    pick = rnd.random()
    if pick < 0.25:  # exactly now - d, or a ms either side: `within` keeps time > now - d
        return NOW - DURATION_MS[rnd.choice(DURATIONS)] + rnd.choice((-1, 0, 1))
    if pick < 0.4:  # on a local midnight, or a ms before
        day = local_day(NOW, _ZONE) - timedelta(days=rnd.randrange(0, 40))
        return local_midnight(day, _ZONE) - rnd.choice((0, 1))
    if pick < 0.45:
        return NOW + rnd.randrange(1, 3 * DAY)  # after now: counts wherever its time puts it
    return NOW - rnd.randrange(0, 200 * DAY)


def _day(t: int) -> str:
    return local_day(t, _ZONE).isoformat()


def records(rnd: random.Random, customers: int) -> list[Record[Value]]:
    """Each customer's latest records (one version per key)."""
    out: list[Record[Value]] = []
    version = 0

    def add(kind: RecordKind, key: str, day: str, value: Value) -> None:
        nonlocal version
        version += 1
        out.append(Record(ORG, version, kind, key, day, value))

    for i in range(customers):
        key = f"c{i:04d}"
        profiled = rnd.random() < 0.9  # some customers have orders or carts and no profile record
        times, money = [], []
        for n in range(rnd.choice((0, 0, 1, 1, 2, 3, 6))):
            t = _time(rnd)
            paid = None if rnd.random() < 0.1 else t
            currency = rnd.choice(("EUR", "EUR", "EUR", "USD", "JPY", "GBP"))
            amount = rnd.choice((0, 999, 1000, 4999, 5000, 10_000, 25_000, rnd.randrange(100, 60_000)))
            lines = [[rnd.choice((*PRODUCTS, "")), rnd.randrange(1, 4), amount // 2, ""] for _ in range(rnd.randrange(0, 4))]
            store = rnd.choice(STORES)
            who = key if rnd.random() < 0.95 else None  # a guest order names no customer
            add(RecordKind.ORDER, f"{store}:{key}-{n}", _day(t),
                Order(store, f"{key}-{n}", who, "web", t, paid, currency, amount, 0, False, Raw(orjson.dumps(lines))))
            if paid is not None and who is not None:
                times.append(paid)
                money.append(CustomerMoney(store, currency, 1, 1, amount, rnd.choice((0, 0, 500, amount)), paid, paid))
        if profiled:
            first = min([NOW - rnd.randrange(0, 400 * DAY), *times])
            registered = None if rnd.random() < 0.3 else first + rnd.randrange(0, 10 * DAY)
            last_active = None if rnd.random() < 0.1 else _time(rnd)
            add(RecordKind.CUSTOMER, key, _day(registered or first),
                Customer(key, rnd.choice(STORES), registered, first, registered or first, last_active, None, None,
                         len(times), len(times), min(times, default=None), max(times, default=None), money))
        for n in range(rnd.choice((0, 0, 1, 2))):
            last = _time(rnd)
            status = rnd.choice(("open", "open", "abandoned", "recovered", "purchased", "empty"))
            due = None if status in ("open", "empty") and rnd.random() < 0.7 else last + HOUR
            currency = rnd.choice(("EUR", "EUR", "USD"))
            person = key if rnd.random() < 0.9 else None
            add(RecordKind.CART, f"{rnd.choice(STORES)}:cart-{key}-{n}", _day(last - 10 * MIN),
                Cart(rnd.choice(STORES), f"cart-{key}-{n}", person, status, currency, rnd.randrange(0, 20_000),
                     [("p1", 1, 1000)], last - 10 * MIN, last, due, None))
    return out


def _money(rnd: random.Random) -> str:
    return rnd.choice(("0", "9.99", "10.00", "49.99", "50.00", "100.00", "250.00"))


def _count(rnd: random.Random) -> Any:
    op = rnd.choice(("eq", "ne", "gt", "gte", "lt", "lte", "between", "in"))
    if op == "between":
        low = rnd.randrange(0, 3)
        return op, [low, low + rnd.randrange(0, 3)]
    if op == "in":
        return op, rnd.sample(range(0, 5), rnd.randrange(1, 3))
    return op, rnd.randrange(0, 4)


def _window(rnd: random.Random) -> dict[str, str]:
    w: dict[str, str] = {}
    if rnd.random() < 0.6:
        w["within"] = rnd.choice(DURATIONS)
    if rnd.random() < 0.15:
        w["since"] = (date(2024, 3, 31) - timedelta(days=rnd.randrange(1, 60))).isoformat()
    if rnd.random() < 0.15:
        w["until"] = (date(2024, 3, 31) - timedelta(days=rnd.randrange(0, 20))).isoformat()
    if "since" in w and "until" in w and w["since"] > w["until"]:
        del w["until"]
    return w


def _time_test(rnd: random.Random) -> dict[str, Any]:
    pick = rnd.random()
    if pick < 0.15:
        return {"exists": rnd.random() < 0.5}
    if pick < 0.3:
        return {"on": rnd.choice(("0d", "1d", "2d", "7d"))}
    if pick < 0.4:
        return {"on": (date(2024, 3, 31) - timedelta(days=rnd.randrange(0, 10))).isoformat()}
    if pick < 0.5:
        return {rnd.choice(("before", "after")): (date(2024, 3, 31) - timedelta(days=rnd.randrange(0, 60))).isoformat()}
    return {rnd.choice(("before", "after")): rnd.choice(DURATIONS)}


def condition(rnd: random.Random, segments: list[str]) -> dict[str, Any]:
    """One condition of any criterion the preview answers."""
    kind = rnd.randrange(12 if segments else 11)
    if kind == 0:
        op, v = _count(rnd)
        return {"orders": {op: v, **_window(rnd)}}
    if kind == 1:
        op = rnd.choice(("eq", "ne", "gt", "gte", "lt", "lte", "between"))
        money: Any = [_money(rnd), "1000.00"] if op == "between" else _money(rnd)
        return {"spent": {op: money, **_window(rnd)}}
    if kind == 2:
        return {"net_spent": {rnd.choice(("gt", "gte", "lt", "lte", "eq")): _money(rnd)}}  # lifetime only
    if kind == 3:
        return {"order_value": {rnd.choice(("gt", "gte", "lt", "lte")): _money(rnd), **_window(rnd)}}
    if kind == 4:
        op, v = _count(rnd)
        return {"items": {op: v, **_window(rnd)}}
    if kind == 5:
        op, v = _count(rnd)
        return {"bought_product": {"product": rnd.choice(PRODUCTS + ("unknown",)), op: v, **_window(rnd)}}
    if kind == 6:
        criterion = rnd.choice(("last_order_at", "first_order_at", "registered_at", "last_active_at",
                                "last_cart_created_at", "last_abandoned_cart_at"))
        return {criterion: _time_test(rnd)}
    if kind == 7:
        op = rnd.choice(("eq", "ne", "gt", "gte", "lt", "lte", "between"))
        return {"open_cart_value": {op: ["0", _money(rnd)] if op == "between" else _money(rnd)}}
    if kind == 8:
        op = rnd.choice(("eq", "ne", "in"))
        return {"store": {op: rnd.sample([*STORES, "nowhere"], 2) if op == "in" else rnd.choice([*STORES, "nowhere"])}}
    if kind == 9:
        op, v = _count(rnd)
        return {"stores": {op: v}}
    if kind == 10:
        return {"not": condition(rnd, segments)}
    op = rnd.choice(("eq", "ne", "in"))
    return {"in_segment": {op: rnd.sample(segments, min(2, len(segments))) if op == "in" else rnd.choice(segments)}}


def rule(rnd: random.Random, segments: list[str], depth: int = 0) -> dict[str, Any]:
    """A condition, or all/any/not of a few."""
    pick = rnd.random()
    if depth < 2 and pick < 0.35:
        return {rnd.choice(("all", "any")): [rule(rnd, segments, depth + 1) for _ in range(rnd.randrange(1, 4))]}
    if depth < 2 and pick < 0.4:
        return {"not": rule(rnd, segments, depth + 1)}
    return condition(rnd, segments)
