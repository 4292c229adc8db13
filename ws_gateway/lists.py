"""Lists and customer figures from order records (the dataflow's exact per-order state) and from
customer profile records (flows/profiles.py). Pure.

Every amount is in the requested currency, each order converted at the rate of its own day (a
profile's lifetime totals: see `Lifetime`). Only paid orders count, with their items as paid;
refunds are shown on orders and in a customer's lifetime money but do not change product or
customer revenue (the figures' `refunds` and `net_revenue` carry them).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any
from zoneinfo import ZoneInfo

from core.changes import Record
from core.clock import ms_from_iso, utc_from_ms
from core.figures import QUOTA_WINDOW_MS, quota_count
from core.money import Money
from core.pickled import by_fields
from core.rates import LATEST, Rates, convert
from core.records import Customer, Order, QuotaAlert

PAIR_PRODUCTS = 300  # pairs are counted among the range's 300 most-ordered products: bounded work
SORTS = {
    "orders": ("latest", "best"),
    "products": ("revenue", "units", "orders"),
    "customers": ("revenue", "orders", "items", "registered"),
    "pairs": ("orders", "lift"),
}


class ListError(ValueError):
    pass


@by_fields
@dataclass(frozen=True, slots=True)
class Paid:
    """One paid order, its amounts already in the presentation currency."""

    key: str
    order: Order
    day: str
    paid: int  # the order's paid time (ms)
    amount: int
    lines: tuple[tuple[str, str, int, int], ...]  # (product, name, qty, line revenue)


def paid_orders(records: Iterable[Record[Order]], currency: str, rates: Rates | None) -> list[Paid]:
    out = []
    for r in records:
        v = r.value
        if v.paid is None:
            continue
        cur, day = v.currency, r.day
        lines = tuple((p, name, qty, convert(rates, qty * unit, cur, currency, day)) for p, qty, unit, name in v.lines())
        out.append(Paid(r.key, v, day, v.paid, convert(rates, v.amount, cur, currency, day), lines))
    return out


def _iso(ms: int | None, tz: ZoneInfo) -> str | None:
    return utc_from_ms(ms).astimezone(tz).isoformat() if ms is not None else None


def orders_list(orders: list[Paid], *, sort: str, limit: int, currency: str, tz: ZoneInfo) -> list[dict[str, Any]]:
    if sort == "latest":
        ranked = sorted(orders, key=lambda o: (o.paid, o.key), reverse=True)
    else:
        ranked = sorted(orders, key=lambda o: (o.amount, o.key), reverse=True)
    return [
        {"store": o.order.store, "order": o.order.order, "customer": o.order.customer, "buyer": o.order.buyer,
         "paid_at": _iso(o.paid, tz), "amount": Money(o.amount, currency).to_json(),
         "original": Money(o.order.amount, o.order.currency).to_json(),
         "refunded": Money(o.order.refunded, o.order.currency).to_json(), "cancelled": o.order.cancelled,
         "items": sum(q for _, _, q, _ in o.lines), "source": o.order.source}
        for o in ranked[:limit]
    ]


def orders_by_source(orders: list[Paid], currency: str) -> dict[str, dict[str, Any]]:
    out: dict[str, list[int]] = {}
    for o in orders:
        acc = out.setdefault(o.order.source, [0, 0])
        acc[0] += 1
        acc[1] += o.amount
    return by_source_json(out, currency)


def by_source_json(totals: dict[str, list[int]], currency: str) -> dict[str, dict[str, Any]]:
    """Per source ([orders, revenue]), by source name."""
    return {s: {"orders": n, "revenue": Money(a, currency).to_json()} for s, (n, a) in sorted(totals.items())}


def product_totals(orders: list[Paid]) -> dict[str, list[Any]]:
    """Per product: [name, revenue, units, orders, (paid, key) of the order the name is from]. The name
    is the one on the latest paid order (by paid time, then key) that names the product (its first
    line that does): whatever order the records come in, so a day's part can be updated and merged
    in any order (ws_gateway/list_parts.py), and a renamed product shows its newest name."""
    acc: dict[str, list[Any]] = {}
    for o in orders:
        add_order(acc, o, 1)
    return acc


def add_order(acc: dict[str, list[Any]], o: Paid, sign: int) -> list[str]:
    """Adds (sign 1) or takes out (sign -1) one order's lines in product_totals' `acc`; taking out drops
    a product left with no order. Returns the products whose name was the order's, taken out: their
    name is left empty (their [4] None), for the caller to find again among the orders left."""
    at = (o.paid, o.key)
    mine: dict[str, list[Any]] = {}  # product -> [first name given, revenue, units]
    for product, name, qty, revenue in o.lines:
        m = mine.get(product)
        if m is None:
            mine[product] = [name, revenue, qty]
        else:
            m[0], m[1], m[2] = m[0] or name, m[1] + revenue, m[2] + qty
    lost = []
    for product, (name, revenue, qty) in mine.items():
        a = acc.get(product)
        if a is None:
            a = acc[product] = ["", 0, 0, 0, None]
        a[1] += sign * revenue
        a[2] += sign * qty
        a[3] += sign
        if sign > 0:
            if name and (a[4] is None or at > a[4]):
                a[0], a[4] = name, at
        elif not a[3]:
            del acc[product]
        elif a[4] == at:
            a[0], a[4] = "", None
            lost.append(product)
    return lost


def rank_products(acc: dict[str, list[Any]], *, sort: str, limit: int, currency: str) -> list[dict[str, Any]]:
    """The top `limit` products; `store`: the store of the latest order naming it (the order record's key is
    "<store>:<order>"), so that a product sold by two stores under their own ids reads as two; None when
    no order named it."""
    index = {"revenue": 1, "units": 2, "orders": 3}[sort]
    ranked = heapq.nsmallest(limit, acc.items(), key=lambda kv: (-kv[1][index], kv[0]))
    return [{"product": p, "name": a[0], "store": None if a[4] is None else a[4][1].split(":", 1)[0],
             "revenue": Money(a[1], currency).to_json(), "units": a[2], "orders": a[3]} for p, a in ranked]


def products_list(orders: list[Paid], *, sort: str, limit: int, currency: str) -> list[dict[str, Any]]:
    return rank_products(product_totals(orders), sort=sort, limit=limit, currency=currency)


@by_fields
@dataclass(slots=True)
class Lifetime:
    """A customer's profile record (flows/profiles.py), its money in the presentation currency: each
    (store, currency) total converted at the rate of the day of its last paid order (without one,
    the latest rate). With a store, only that store's money and orders."""

    customer: str
    store: str  # where the customer was first seen
    registered_at: int
    last_active: int | None
    email: str | None
    name: str | None
    orders: int
    items: int
    revenue: int
    refunds: int
    first_paid: int | None
    last_paid: int | None


def lifetimes(records: Iterable[Record[Customer]], *, currency: str, rates: Rates | None, tz: ZoneInfo,
              store: str | None) -> dict[str, Lifetime]:
    """Each profile record as a `Lifetime`, by customer."""
    out = {}
    for r in records:
        v = r.value
        revenue = refunds = orders = items = 0
        first: int | None = None
        last: int | None = None
        for m in v.money:
            if store is not None and m.store != store:
                continue
            day = _day(m.last_paid, tz) if m.last_paid is not None else LATEST
            revenue += convert(rates, m.gross, m.currency, currency, day)
            refunds += convert(rates, m.refunds, m.currency, currency, day)
            orders, items = orders + m.orders, items + m.items
            if m.orders and m.first_paid is not None and m.last_paid is not None:  # a paid order has both
                first = m.first_paid if first is None else min(first, m.first_paid)
                last = m.last_paid if last is None else max(last, m.last_paid)
        out[r.key] = Lifetime(r.key, v.store, v.registered_at, v.last_active, v.email, v.name,
                              orders, items, revenue, refunds, first, last)
    return out


@by_fields
@dataclass(slots=True)
class PeriodCustomer:
    """A customer's paid orders over a period, in the presentation currency."""

    revenue: int = 0
    orders: int = 0
    items: int = 0
    first: int | None = None
    last: int | None = None


def period_customers(orders: list[Paid]) -> dict[str, PeriodCustomer]:
    """Per customer, the paid orders of the period (guests excluded: they have no history to rank)."""
    acc: dict[str, PeriodCustomer] = {}
    for o in orders:
        cust = o.order.customer
        if cust is None:
            continue
        c = acc.setdefault(cust, PeriodCustomer(first=o.paid, last=o.paid))
        c.revenue += o.amount
        c.orders += 1
        c.items += sum(q for _, _, q, _ in o.lines)
        c.first = o.paid if c.first is None else min(c.first, o.paid)
        c.last = o.paid if c.last is None else max(c.last, o.paid)
    return acc


def lifetime_customers(lives: dict[str, Lifetime]) -> dict[str, PeriodCustomer]:
    """The same figures over all time, straight from the profiles."""
    return {k: PeriodCustomer(c.revenue, c.orders, c.items, c.first_paid, c.last_paid) for k, c in lives.items() if c.orders}


def customers_list(figures: dict[str, PeriodCustomer], lives: dict[str, Lifetime], *, sort: str, limit: int,
                   currency: str, tz: ZoneInfo) -> list[dict[str, Any]]:
    """Ranked rows: the period's figures, the profile (registration, contact, activity) and its lifetime money."""
    if sort == "registered":  # newest registration first; customers without a profile last
        def key(k: str) -> tuple[Any, ...]:
            life = lives.get(k)
            return (life is None, -life.registered_at if life else 0, k)
    else:
        def key(k: str) -> tuple[Any, ...]:
            return (-getattr(figures[k], sort), k)
    # keys are unique (they end with the customer): as sorted()[:limit]
    return customer_rows(heapq.nsmallest(limit, figures, key=key), figures, lives, currency=currency, tz=tz)


def customer_rows(ranked: Iterable[str], figures: dict[str, PeriodCustomer], lives: dict[str, Lifetime], *,
                  currency: str, tz: ZoneInfo) -> list[dict[str, Any]]:
    """These customers' rows, in this order (customers_list's; ws_gateway/customer_rank.py's)."""
    rows = []
    for k in ranked:
        c, life = figures[k], lives.get(k)
        rows.append({
            "customer": k, "revenue": Money(c.revenue, currency).to_json(), "orders": c.orders, "items": c.items,
            "first_order_at": _iso(c.first, tz), "last_order_at": _iso(c.last, tz),
            "registered_at": _iso(life.registered_at, tz) if life else None,
            "email": life.email if life else None, "name": life.name if life else None,
            "last_active_at": _iso(life.last_active, tz) if life else None,
            "lifetime": None if life is None else {
                "orders": life.orders, "items": life.items, "revenue": Money(life.revenue, currency).to_json(),
                "refunds": Money(life.refunds, currency).to_json(),
                "net_revenue": Money(life.revenue - life.refunds, currency).to_json()},
        })
    return rows


def never_bought(lives: dict[str, Lifetime], store: str | None) -> dict[str, PeriodCustomer]:
    """Customers (first seen at `store`, if given) with no paid order in the organisation: all zero."""
    return {k: PeriodCustomer() for k, c in lives.items() if not c.orders and (store is None or c.store == store)}


def customer_summary(figures: dict[str, PeriodCustomer], first_ever: dict[str, int], guest_orders: int, first: str,
                     last: str, tz: ZoneInfo) -> dict[str, Any]:
    """Repeat purchase and new vs returning among the customers who paid in the range.

    A repeat customer has two or more paid orders up to the range's end: a returning one (an order
    before the range and one in it), or a new one with two in it. Counting only the range's own
    orders would make a day's rate all but 0 % whatever the shop's loyalty."""
    customers = len(figures)
    repeat = new = 0
    for k, c in figures.items():
        first_paid = first_ever.get(k, c.first)
        assert first_paid is not None  # every customer of the period paid in it: period_customers set first
        if first <= _day(first_paid, tz) <= last:
            new += 1
            repeat += c.orders >= 2
        else:
            repeat += 1
    return {
        "customers": customers, "repeat_customers": repeat,
        "repeat_purchase_rate": round(repeat / customers, 6) if customers else 0.0,
        "new_customers": new, "returning_customers": customers - new, "guest_orders": guest_orders,
    }


def _day(ms: int, tz: ZoneInfo) -> str:
    return utc_from_ms(ms).astimezone(tz).date().isoformat()


@dataclass(slots=True)
class Baskets:
    """What products bought together are counted from: orders, orders with each product (in the order
    first met), and orders with each pair (a, b), a < b, of all products."""

    orders: int = 0
    freq: Counter[str] = field(default_factory=Counter)
    together: Counter[tuple[str, str]] = field(default_factory=Counter)


def baskets(orders: list[Paid]) -> Baskets:
    out = Baskets(len(orders))
    for o in orders:
        basket = frozenset(p for p, _, _, _ in o.lines)
        out.freq.update(basket)
        out.together.update(combinations(sorted(basket), 2))
    return out


def rank_pairs(b: Baskets, *, sort: str, limit: int, products: dict[str, list[Any]] | None = None) -> list[dict[str, Any]]:
    """Products bought together, among the PAIR_PRODUCTS most-ordered products: orders with both,
    support = that / all orders, lift = P(a,b) / (P(a) P(b)). With the period's `products`
    (product_sums), each is named as the products list names it (`a_name`, `b_name`)."""
    n, freq = b.orders, b.freq
    # the most-ordered, ties by product: not by the order met, so parts merge in any order
    top = {p for p, _ in heapq.nsmallest(PAIR_PRODUCTS, freq.items(), key=lambda pc: (-pc[1], pc[0]))}
    mine = [(pair, k) for pair, k in b.together.items() if pair[0] in top and pair[1] in top]
    if sort == "orders":
        ranked = heapq.nsmallest(limit, mine, key=lambda pk: (-pk[1], pk[0]))
    else:  # by lift as shown (rounded), then orders, then the pair
        ranked = heapq.nsmallest(limit, mine, key=lambda pk: (-round(pk[1] * n / (freq[pk[0][0]] * freq[pk[0][1]]), 6),
                                                              -pk[1], pk[0]))
    rows = []
    for (a, c), k in ranked:
        row: dict[str, Any] = {"a": a, "b": c}
        if products is not None:
            row["a_name"], row["b_name"] = ((products[p][0] or "") if p in products else "" for p in (a, c))
        rows.append({**row, "orders": k, "support": round(k / n, 6), "lift": round((k * n) / (freq[a] * freq[c]), 6)})
    return rows


def pairs_list(orders: list[Paid], *, sort: str, limit: int) -> list[dict[str, Any]]:
    return rank_pairs(baskets(orders), sort=sort, limit=limit)


def quota(paid_times: Iterable[int], at_ms: int, limit: int | None) -> dict[str, Any]:
    """Distinct paid orders with a paid time in (at - 30 days, at], against the plan limit."""
    return quota_json(quota_count(paid_times, at_ms), at_ms, limit)


def quota_json(count: int, at_ms: int, limit: int | None) -> dict[str, Any]:
    """`count` paid orders in the quota's window ending at `at_ms`, against the plan limit."""
    since = at_ms - QUOTA_WINDOW_MS
    used = round(count / limit, 6) if limit else None
    return {"paid_orders_30d": count, "plan_limit": limit, "used": used,
            "crossed": [p for p in (80, 100) if limit and count * 100 >= limit * p],
            "window": {"from_exclusive": _utc_iso(since), "to": _utc_iso(at_ms)}}


def alert_json(a: QuotaAlert) -> dict[str, int]:
    """A quota alert as the read API and the WebSocket show it."""
    return {"percent": a.percent, "count": a.count, "limit": a.limit, "at": a.at}


def _utc_iso(ms: int) -> str:
    return utc_from_ms(ms).isoformat()


def parse_at(value: str | None, now_ms: int) -> int:
    if value is None:
        return now_ms
    try:
        return ms_from_iso(value)
    except ValueError as exc:
        raise ListError(f"at: {exc}") from None
