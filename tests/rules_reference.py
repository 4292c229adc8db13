"""A brute-force reading of docs/segments.md: evaluates a rule as JSON, straight from the definitions,
over unfolded facts. It shares no code with core/rules but the facts' dataclasses and core.rates, so
that the property tests compare two independent readings of the same text."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from core.money import EXPONENTS
from core.rates import Rates, convert
from core.rules.facts import CustomerFacts, Entry

UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000}
TIME_VALUE = {
    "last_order_at": lambda f: max((o.time for o in f.orders), default=None),
    "first_order_at": lambda f: min((o.time for o in f.orders), default=None),
    "registered_at": lambda f: f.registered if f.registered is not None else f.first_seen,
    "last_active_at": lambda f: f.last_active,
    "last_cart_created_at": lambda f: f.last_cart_created,
    "last_abandoned_cart_at": lambda f: f.last_cart_abandoned,
}


class Org:
    def __init__(self, tz: str, currency: str, rates: Rates | None, segments: dict[str, Any]) -> None:
        self.tz, self.currency, self.rates, self.segments = ZoneInfo(tz), currency, rates, segments

    def local_date(self, ms: int) -> date:
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).astimezone(self.tz).date()

    def midnight(self, d: date) -> int:
        start = datetime(d.year, d.month, d.day, tzinfo=self.tz)
        return (start - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)

    def money(self, e: Entry) -> int:
        return convert(self.rates, e.amount, e.currency, self.currency, self.local_date(e.time).isoformat())

    def minor(self, text: str) -> int:
        return int(Decimal(text).scaleb(EXPONENTS[self.currency]))


def duration(text: str) -> int:
    return int(text[:-1]) * UNIT_MS[text[-1]]


def in_window(org: Org, t: int, body: dict[str, Any], now: int) -> bool:
    if "within" in body and not t > now - duration(body["within"]):
        return False
    if "since" in body and not t >= org.midnight(date.fromisoformat(body["since"])):
        return False
    return "until" not in body or t < org.midnight(date.fromisoformat(body["until"]) + timedelta(days=1))


def compare(op: str, x: Any, v: Any) -> bool:
    if op == "eq":
        return bool(x == v)
    if op == "ne":
        return bool(x != v)
    if op == "gt":
        return bool(x > v)
    if op == "gte":
        return bool(x >= v)
    if op == "lt":
        return bool(x < v)
    if op == "lte":
        return bool(x <= v)
    if op == "between":
        return bool(v[0] <= x <= v[1])
    assert op == "in"
    return x in v


def comparison(body: dict[str, Any]) -> tuple[str, Any]:
    [op] = [k for k in body if k in ("eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "exists",
                                     "before", "after", "on")]
    return op, body[op]


def holds(rule: dict[str, Any], f: CustomerFacts, now: int, org: Org) -> bool:  # noqa: C901 - the oracle: one branch per criterion, as docs/segments.md lists them
    [(key, body)] = rule.items()
    if key == "all":
        return all(holds(r, f, now, org) for r in body)
    if key == "any":
        return any(holds(r, f, now, org) for r in body)
    if key == "not":
        return not holds(body, f, now, org)
    op, v = comparison(body)
    if key in TIME_VALUE:
        return time_test(org, TIME_VALUE[key](f), op, v, now)
    if key == "attribute":
        return attribute(dict(f.attributes), body["name"], op, v)
    if key == "store":
        if op == "eq":
            return v in f.stores
        if op == "ne":
            return v not in f.stores
        return any(s in f.stores for s in v)
    if key == "in_segment":
        ids = v if op == "in" else [v]
        member = [holds(org.segments[i], f, now, org) for i in ids]
        return not member[0] if op == "ne" else any(member)
    if key == "stores":
        return compare(op, len(f.stores), v)
    is_money = key in ("spent", "net_spent", "order_value", "open_cart_value")
    if is_money:
        v = [org.minor(x) for x in v] if isinstance(v, list) else org.minor(v)
    orders = [o for o in f.orders if in_window(org, o.time, body, now)]
    if key == "orders":
        x = len(orders)
    elif key == "spent":
        x = sum(org.money(o) for o in orders)
    elif key == "net_spent":
        x = sum(org.money(o) for o in orders) - sum(org.money(r) for r in f.refunds if in_window(org, r.time, body, now))
    elif key == "order_value":
        return any(compare(op, org.money(o), v) for o in orders)
    elif key == "items":
        x = sum(o.units for o in orders)
    elif key == "bought_product":
        x = sum(1 for o in orders if body["product"] in o.products)
    elif key == "bought_category":
        x = sum(1 for o in orders if body["category"] in o.categories)
    elif key == "bought_brand":
        x = sum(1 for o in orders if body["brand"] in o.brands)
    elif key == "refunds":
        x = sum(1 for r in f.refunds if in_window(org, r.time, body, now))
    elif key == "email_engaged":
        x = sum(1 for t in f.emails if in_window(org, t, body, now))
    elif key == "open_cart_value":
        x = sum(org.money(c) for c in f.open_carts)
    else:
        raise AssertionError(key)
    return compare(op, x, v)


def time_test(org: Org, t: int | None, op: str, v: Any, now: int) -> bool:
    if op == "exists":
        return (t is not None) == v
    if t is None:
        return False
    is_date = len(v) == 10 and v[4] == "-"
    if op == "before":
        return t < org.midnight(date.fromisoformat(v)) if is_date else t <= now - duration(v)
    if op == "after":
        return t >= org.midnight(date.fromisoformat(v) + timedelta(days=1)) if is_date else t > now - duration(v)
    assert op == "on"
    if is_date:
        return org.local_date(t) == date.fromisoformat(v)
    return org.local_date(t) == org.local_date(now) - timedelta(days=int(v[:-1]))


def attribute(attributes: Any, name: str, op: str, v: Any) -> bool:
    if op == "exists":
        return (name in attributes) == v
    if name not in attributes:
        return False
    value = attributes[name]
    if op == "in":
        return any(attribute(attributes, name, "eq", c) for c in v)
    if op == "between":
        return attribute(attributes, name, "gte", v[0]) and attribute(attributes, name, "lte", v[1])
    wanted = Decimal(repr(v)) if isinstance(v, float) else v
    kind = {bool: "bool", str: "text"}.get(type(wanted), "number")
    if kind == "number" and isinstance(value, str):
        try:
            value = Decimal(value.strip())
        except InvalidOperation:
            return op == "ne"
        if not value.is_finite():
            return op == "ne"
    have = {bool: "bool", str: "text"}.get(type(value), "number")
    if have != kind:
        return op == "ne"
    return compare(op, value, wanted)
