"""Lists and customer figures computed from order records (the dataflow's exact per-order state). Pure.

Every amount is in the requested currency, each order converted at the rate of its own day.
Only paid orders count, with their items as paid; refunds are shown on orders but do not change
product or customer revenue (the figures' `refunds` and `net_revenue` carry them).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import combinations
from typing import Any
from zoneinfo import ZoneInfo

from core.clock import ms_from_iso, utc_from_ms
from core.figures import Record
from core.money import Money
from core.rates import Rates, convert

PAIR_PRODUCTS = 300  # pairs are counted among the range's 300 most-ordered products: bounded work
SORTS = {
    "orders": ("latest", "best"),
    "products": ("revenue", "units", "orders"),
    "customers": ("revenue", "orders", "items"),
    "pairs": ("orders", "lift"),
}


class ListError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Paid:
    """One paid order, its amounts already in the presentation currency."""

    key: str
    value: dict[str, Any]
    day: str
    amount: int
    lines: tuple[tuple[str, str, int, int], ...]  # (product, name, qty, line revenue)


def paid_orders(records: Iterable[Record], currency: str, rates: Rates | None) -> list[Paid]:
    out = []
    for r in records:
        v = r.value
        if v.get("paid") is None:
            continue
        cur, day = v["currency"], r.day
        lines = tuple((p, name, qty, convert(rates, qty * unit, cur, currency, day)) for p, qty, unit, name in v["items"])
        out.append(Paid(r.key, v, day, convert(rates, v["amount"], cur, currency, day), lines))
    return out


def _iso(ms: int | None, tz: ZoneInfo) -> str | None:
    return utc_from_ms(ms).astimezone(tz).isoformat() if ms is not None else None


def orders_list(orders: list[Paid], *, sort: str, limit: int, currency: str, tz: ZoneInfo) -> list[dict[str, Any]]:
    if sort == "latest":
        ranked = sorted(orders, key=lambda o: (o.value["paid"], o.key), reverse=True)
    else:
        ranked = sorted(orders, key=lambda o: (o.amount, o.key), reverse=True)
    return [
        {"store": o.value["store"], "order": o.value["order"], "customer": o.value["customer"],
         "paid_at": _iso(o.value["paid"], tz), "amount": Money(o.amount, currency).to_json(),
         "original": Money(o.value["amount"], o.value["currency"]).to_json(),
         "refunded": Money(o.value["refunded"], o.value["currency"]).to_json(), "cancelled": o.value["cancelled"],
         "items": sum(q for _, _, q, _ in o.lines), "source": o.value["source"]}
        for o in ranked[:limit]
    ]


def orders_by_source(orders: list[Paid], currency: str) -> dict[str, dict[str, Any]]:
    out: dict[str, list[int]] = {}
    for o in orders:
        acc = out.setdefault(o.value["source"], [0, 0])
        acc[0] += 1
        acc[1] += o.amount
    return {s: {"orders": n, "revenue": Money(a, currency).to_json()} for s, (n, a) in sorted(out.items())}


def products_list(orders: list[Paid], *, sort: str, limit: int, currency: str) -> list[dict[str, Any]]:
    acc: dict[str, list[Any]] = {}
    for o in orders:
        seen = set()
        for product, name, qty, revenue in o.lines:
            a = acc.setdefault(product, [name, 0, 0, 0])
            a[0] = a[0] or name
            a[1] += revenue
            a[2] += qty
            if product not in seen:
                a[3] += 1
                seen.add(product)
    index = {"revenue": 1, "units": 2, "orders": 3}[sort]
    ranked = sorted(acc.items(), key=lambda kv: (-kv[1][index], kv[0]))
    return [{"product": p, "name": a[0], "revenue": Money(a[1], currency).to_json(), "units": a[2], "orders": a[3]}
            for p, a in ranked[:limit]]


@dataclass(slots=True)
class _Customer:
    revenue: int = 0
    orders: int = 0
    items: int = 0
    first: int = 0
    last: int = 0


def customers_list(orders: list[Paid], *, sort: str, limit: int, currency: str, tz: ZoneInfo) -> list[dict[str, Any]]:
    acc: dict[str, _Customer] = {}
    for o in orders:
        cust = o.value["customer"]
        if cust is None:
            continue  # guests have no history to rank
        c = acc.setdefault(cust, _Customer(first=o.value["paid"], last=o.value["paid"]))
        c.revenue += o.amount
        c.orders += 1
        c.items += sum(q for _, _, q, _ in o.lines)
        c.first, c.last = min(c.first, o.value["paid"]), max(c.last, o.value["paid"])
    ranked = sorted(acc.items(), key=lambda kv: (-getattr(kv[1], sort), kv[0]))
    return [{"customer": k, "revenue": Money(c.revenue, currency).to_json(), "orders": c.orders, "items": c.items,
             "first_order_at": _iso(c.first, tz), "last_order_at": _iso(c.last, tz)} for k, c in ranked[:limit]]


def customer_figures(in_range: list[Paid], first_ever: dict[str, int], first: str, last: str,
                     tz: ZoneInfo) -> dict[str, Any]:
    """Repeat purchase and new vs returning among the customers who paid in the range."""
    per: Counter[str] = Counter(o.value["customer"] for o in in_range if o.value["customer"] is not None)
    customers = len(per)
    repeat = sum(1 for n in per.values() if n >= 2)
    new = sum(1 for c in per if first <= utc_from_ms(first_ever[c]).astimezone(tz).date().isoformat() <= last)
    return {
        "customers": customers, "repeat_customers": repeat,
        "repeat_purchase_rate": round(repeat / customers, 6) if customers else 0.0,
        "new_customers": new, "returning_customers": customers - new,
        "guest_orders": sum(1 for o in in_range if o.value["customer"] is None),
    }


def pairs_list(orders: list[Paid], *, sort: str, limit: int) -> list[dict[str, Any]]:
    """Products bought together: orders with both, support = that / all orders, lift = P(a,b) / (P(a) P(b))."""
    n = len(orders)
    baskets = [frozenset(p for p, _, _, _ in o.lines) for o in orders]
    freq: Counter[str] = Counter(p for b in baskets for p in b)
    top = {p for p, _ in freq.most_common(PAIR_PRODUCTS)}
    together: Counter[tuple[str, str]] = Counter()
    for b in baskets:
        together.update(combinations(sorted(b & top), 2))
    rows = []
    for (a, b), k in together.items():
        lift = (k * n) / (freq[a] * freq[b])
        rows.append({"a": a, "b": b, "orders": k, "support": round(k / n, 6), "lift": round(lift, 6)})
    key = (lambda r: (-r["orders"], r["a"], r["b"])) if sort == "orders" else (lambda r: (-r["lift"], -r["orders"], r["a"], r["b"]))
    return sorted(rows, key=key)[:limit]


def quota(paid_times: Iterable[int], at_ms: int, limit: int | None) -> dict[str, Any]:
    """Distinct paid orders with a paid time in (at - 30 days, at], against the plan limit."""
    since = at_ms - int(timedelta(days=30).total_seconds() * 1000)
    count = sum(1 for t in paid_times if since < t <= at_ms)
    used = round(count / limit, 6) if limit else None
    return {"paid_orders_30d": count, "plan_limit": limit, "used": used,
            "crossed": [p for p in (80, 100) if limit and count * 100 >= limit * p],
            "window": {"from_exclusive": _utc_iso(since), "to": _utc_iso(at_ms)}}


def _utc_iso(ms: int) -> str:
    return utc_from_ms(ms).isoformat()


def first_paid_by_customer(orders: Iterable[Paid]) -> dict[str, int]:
    first: dict[str, int] = {}
    for o in orders:
        c = o.value["customer"]
        if c is not None and (c not in first or o.value["paid"] < first[c]):
            first[c] = o.value["paid"]
    return first


def parse_at(value: str | None, now: datetime) -> int:
    if value is None:
        return int(now.timestamp() * 1000)
    try:
        return ms_from_iso(value)
    except ValueError as exc:
        raise ListError(f"at: {exc}") from None
