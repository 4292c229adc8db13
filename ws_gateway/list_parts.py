"""The order lists (orders, products, pairs, period customers), carts and quota as merges of per-day
parts, so that the read side computes each day once (ws_gateway/day_cache.py). Pure.

Each `*_part` takes one day's records (or a whole period's: a merge of one part is the plain list),
each `merge_*` takes the parts in day order and gives what ws_gateway/lists.py and shoppers.py would
give over all those records at once: sums add up, a top N of the whole is in the union of each day's
top N (keys are unique), and what depends on the order records were met in (a product's first name,
ties among the most-ordered products) is met in the same order, day by day.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice

from core.changes import Record
from core.figures import Gap
from core.rates import Rates, RecordingRates, convert
from core.records import Cart, Order
from ws_gateway import lists

MOST = 1000  # the largest ?limit= of a list (ws_gateway/api.py `_limit`): what a day keeps of its orders


@dataclass(frozen=True, slots=True)
class OrdersPart:
    """A day's paid orders (of one store or all, in one presentation currency), as the lists need them."""

    count: int
    latest: list[lists.Paid]  # the MOST latest, by (paid, key) descending
    best: list[lists.Paid]  # the MOST largest, by (amount, key) descending
    by_source: dict[str, list[int]]  # source -> [orders, revenue]
    products: dict[str, list[object]]  # lists.product_totals
    baskets: lists.Baskets
    customers: dict[str, lists.PeriodCustomer]  # lists.period_customers
    guests: int  # orders without a customer
    gaps: frozenset[Gap]  # amounts left out for want of a rate


def _latest(o: lists.Paid) -> tuple[int, str]:
    return (o.paid, o.key)


def _best(o: lists.Paid) -> tuple[int, str]:
    return (o.amount, o.key)


def orders_part(records: Iterable[Record[Order]], *, currency: str, rates: Rates | None, store: str | None,
                members: frozenset[str] | None = None) -> OrdersPart:
    """The part of these order records (of `store`, of `members` when given)."""
    recording = RecordingRates(rates)
    mine = [r for r in records if store in (None, r.value.store) and (members is None or r.value.customer in members)]
    paid = lists.paid_orders(mine, currency, recording)
    by_source: dict[str, list[int]] = {}
    for o in paid:
        acc = by_source.setdefault(o.order.source, [0, 0])
        acc[0] += 1
        acc[1] += o.amount
    return OrdersPart(len(paid), heapq.nlargest(MOST, paid, key=_latest), heapq.nlargest(MOST, paid, key=_best),
                      by_source, lists.product_totals(paid), lists.baskets(paid), lists.period_customers(paid),
                      sum(1 for o in paid if o.order.customer is None), frozenset(recording.gaps))


@dataclass(frozen=True, slots=True)
class CustomersPart:
    """A day's paid orders per customer: what an OrdersPart holds for the best customers alone, at
    half its cost (no product, basket or order list), so a write to today recomputes only this for
    /customers (ws_gateway/customer_rank.py)."""

    customers: dict[str, lists.PeriodCustomer]  # lists.period_customers
    guests: int  # paid orders without a customer
    gaps: frozenset[Gap]


def customers_part(records: Iterable[Record[Order]], *, currency: str, rates: Rates | None,
                   store: str | None) -> CustomersPart:
    """OrdersPart's customers, guests and gaps from these order records (of `store`)."""
    recording = RecordingRates(rates)
    acc: dict[str, lists.PeriodCustomer] = {}
    guests = 0
    for r in records:
        v = r.value
        if v.paid is None or store not in (None, v.store):
            continue
        amount = convert(recording, v.amount, v.currency, currency, r.day)  # an order's lines convert at the same rate
        if v.customer is None:
            guests += 1
            continue
        items = sum(qty for _, qty, _, _ in v.lines())
        c = acc.get(v.customer)
        if c is None:
            acc[v.customer] = lists.PeriodCustomer(amount, 1, items, v.paid, v.paid)
        else:
            c.revenue += amount
            c.orders += 1
            c.items += items
            c.first = v.paid if c.first is None else min(c.first, v.paid)
            c.last = v.paid if c.last is None else max(c.last, v.paid)
    return CustomersPart(acc, guests, frozenset(recording.gaps))


def gaps(parts: Sequence[OrdersPart | BestCartsPart | CustomersPart]) -> set[Gap]:
    return set().union(*(p.gaps for p in parts))


def merge_orders(parts: list[OrdersPart], *, sort: str, limit: int) -> list[lists.Paid]:
    """The `limit` (at most MOST) first orders of the period by `sort` (latest, best), in that order:
    each part's list is in that order already, so this reads `limit` of them, not 90 days' worth."""
    if sort == "latest":
        return list(islice(heapq.merge(*(p.latest for p in parts), key=_latest, reverse=True), limit))
    return list(islice(heapq.merge(*(p.best for p in parts), key=_best, reverse=True), limit))


def merge_by_source(parts: list[OrdersPart]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for p in parts:
        for source, (n, amount) in p.by_source.items():
            acc = out.setdefault(source, [0, 0])
            acc[0] += n
            acc[1] += amount
    return out


def merge_products(parts: list[OrdersPart]) -> dict[str, list[object]]:
    out: dict[str, list[object]] = {}
    for p in parts:
        for product, (name, revenue, units, orders) in p.products.items():
            a = out.get(product)
            if a is None:
                out[product] = [name, revenue, units, orders]
            else:
                a[0] = a[0] or name
                a[1] += revenue  # type: ignore[operator]  # product_totals' [str, int, int, int]
                a[2] += units  # type: ignore[operator]
                a[3] += orders  # type: ignore[operator]
    return out


def merge_baskets(parts: list[OrdersPart]) -> lists.Baskets:
    out = lists.Baskets()
    for p in parts:
        out.orders += p.baskets.orders
        out.freq.update(p.baskets.freq)  # new products are added in the order met: as one pass would
        out.together.update(p.baskets.together)
    return out


def merge_customers(parts: list[OrdersPart]) -> dict[str, lists.PeriodCustomer]:
    """lists.period_customers over all the parts' orders."""
    out: dict[str, lists.PeriodCustomer] = {}
    for p in parts:
        for k, c in p.customers.items():
            acc = out.get(k)
            if acc is None:
                out[k] = lists.PeriodCustomer(c.revenue, c.orders, c.items, c.first, c.last)
            else:
                acc.revenue += c.revenue
                acc.orders += c.orders
                acc.items += c.items
                acc.first = _min(acc.first, c.first)
                acc.last = _max(acc.last, c.last)
    return out


def _min(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


@dataclass(frozen=True, slots=True)
class CartsPart:
    """A day's latest carts (of one store or all): the MOST latest by (last activity, key)."""

    latest: list[Record[Cart]] = field(default_factory=list)


def _cart_latest(r: Record[Cart]) -> tuple[int, str]:
    return (r.value.last, r.key)


def carts_part(records: Iterable[Record[Cart]], store: str | None) -> CartsPart:
    return CartsPart(heapq.nlargest(MOST, (r for r in records if store in (None, r.value.store)), key=_cart_latest))


def merge_carts(parts: list[CartsPart], limit: int) -> list[Record[Cart]]:
    return list(islice(heapq.merge(*(p.latest for p in parts), key=_cart_latest, reverse=True), limit))


@dataclass(frozen=True, slots=True)
class BestCartsPart:
    """A day's open carts (first active that day) by value in one currency, largest first, at most MOST."""

    best: list[tuple[int, str, Record[Cart]]]  # (-value in the currency at the cart's day, key, record)
    gaps: frozenset[Gap]


def best_carts_part(records: Iterable[Record[Cart]], store: str | None, currency: str, rates: Rates | None) -> BestCartsPart:
    """What shoppers.carts_summary's best carts take from these records: the same order, (-value, key)."""
    recording = RecordingRates(rates)
    rows = ((-convert(recording, r.value.value, r.value.currency, currency, r.day), r.key, r) for r in records
            if r.value.status == "open" and store in (None, r.value.store))
    return BestCartsPart(heapq.nsmallest(MOST, rows, key=_best_key), frozenset(recording.gaps))


def merge_best_carts(parts: list[BestCartsPart], limit: int) -> list[Record[Cart]]:
    return [r for _, _, r in islice(heapq.merge(*(p.best for p in parts), key=_best_key), limit)]


def _best_key(row: tuple[int, str, Record[Cart]]) -> tuple[int, str]:
    return row[0], row[1]


def paid_times(records: Iterable[Record[Order]]) -> list[int]:
    """A day's paid times (what the quota counts), sorted."""
    return sorted(r.value.paid for r in records if r.value.paid is not None)
