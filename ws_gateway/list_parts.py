"""The order lists (orders, products, pairs, period customers), carts and quota as merges of per-day
parts, so that the read side computes each day once (ws_gateway/day_cache.py). Pure.

Each `*_part` takes one day's records (or a whole period's: a merge of one part is the plain list),
each `merge_*` takes the parts in day order and gives what ws_gateway/lists.py and shoppers.py would
give over all those records at once: sums add up, a top N of the whole is in the union of each day's
top N (keys are unique). Nothing depends on the order records are met in (a product's name is its
latest order's, ties among the most-ordered products go by product), so a day's orders part can also
be updated from the records changed since (`OrdersUpdate`) and a period's sums kept across requests
(`OrdersMerge`), both equal to computing afresh.
"""
from __future__ import annotations

import heapq
import itertools
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import chain, combinations, islice
from typing import Any

from core.changes import Record
from core.figures import Gap
from core.rates import Rates, RecordingRates, convert
from core.records import Cart, Order
from ws_gateway import lists

MOST = 1000  # the largest ?limit= of a list (ws_gateway/api.py `_limit`): what a day keeps of its orders


_serials = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Step:
    """How an updated part was made from the part before it (its `serial`): these orders taken out,
    these put in. A period's sums holding that part apply the step instead of the two whole parts."""

    before: int
    out: tuple[lists.Paid, ...]
    into: tuple[lists.Paid, ...]


@dataclass(frozen=True, slots=True)
class OrdersPart:
    """A day's paid orders (of one store or all, in one presentation currency), as the lists need them."""

    count: int
    latest: list[lists.Paid]  # the MOST latest, by (paid, key) descending
    best: list[lists.Paid]  # the MOST largest, by (amount, key) descending
    by_source: dict[str, list[int]]  # source -> [orders, revenue]
    products: dict[str, list[Any]]  # lists.product_totals
    baskets: lists.Baskets
    gaps: frozenset[Gap]  # amounts left out for want of a rate
    serial: int = field(default_factory=lambda: next(_serials))
    step: Step | None = None


def _latest(o: lists.Paid) -> tuple[int, str]:
    return (o.paid, o.key)


def _best(o: lists.Paid) -> tuple[int, str]:
    return (o.amount, o.key)


def _mine(records: Iterable[Record[Order]], store: str | None, members: frozenset[str] | None) -> list[Record[Order]]:
    return [r for r in records if store in (None, r.value.store) and (members is None or r.value.customer in members)]


def orders_part(records: Iterable[Record[Order]], *, currency: str, rates: Rates | None, store: str | None,
                members: frozenset[str] | None = None) -> OrdersPart:
    """The part of these order records (of `store`, of `members` when given)."""
    recording = RecordingRates(rates)
    return _part(lists.paid_orders(_mine(records, store, members), currency, recording), frozenset(recording.gaps))


def _part(paid: list[lists.Paid], gaps: frozenset[Gap]) -> OrdersPart:
    by_source: dict[str, list[int]] = {}
    for o in paid:
        acc = by_source.setdefault(o.order.source, [0, 0])
        acc[0] += 1
        acc[1] += o.amount
    return OrdersPart(len(paid), heapq.nlargest(MOST, paid, key=_latest), heapq.nlargest(MOST, paid, key=_best),
                      by_source, lists.product_totals(paid), lists.baskets(paid), gaps)


@dataclass(frozen=True, slots=True)
class OrdersDay:
    """What updating a day's part from the records changed since needs (ws_gateway/day_cache.py): the
    version of every record it was computed from, and the paid orders it counts (to take them out)."""

    versions: dict[str, int]
    paid: dict[str, lists.Paid]
    currencies: dict[str, int]  # the paid orders counted per currency: what the part's gaps come from


@dataclass(frozen=True, slots=True)
class OrdersUpdate:
    """Builds a day's OrdersPart with its OrdersDay, and updates both from the day's changed records
    (DayCache.day_parts' `update`). A day's amounts left out for want of a rate are those of the
    currencies its paid orders are in (a rate is one per currency and day), so its gaps follow them."""

    currency: str
    rates: Rates | None
    store: str | None

    def build(self, records: list[Record[Order]]) -> tuple[OrdersPart, OrdersDay]:
        recording = RecordingRates(self.rates)
        paid = lists.paid_orders(_mine(records, self.store, None), self.currency, recording)
        part = _part(paid, frozenset(recording.gaps))
        return part, OrdersDay({r.key: r.version for r in records}, {o.key: o for o in paid},
                               dict(Counter(o.order.currency for o in paid)))

    def build_part(self, records: list[Record[Order]]) -> OrdersPart:
        """The part alone (orders_part), for a day that keeps no detail."""
        return orders_part(records, currency=self.currency, rates=self.rates, store=self.store)

    def versions(self, day: OrdersDay) -> dict[str, int]:
        return day.versions

    def update(self, part: OrdersPart, day: OrdersDay, changed: list[Record[Order]],
               gone: Iterable[str]) -> tuple[OrdersPart, OrdersDay] | None:
        """The part and day after these records changed (new or rewritten: `changed`; no longer of the
        day: `gone`), copied: the old part stays what it was (a period's sums may hold it)."""
        versions, paid = dict(day.versions), dict(day.paid)
        out: list[lists.Paid] = []
        for k in chain(gone, (r.key for r in changed)):
            o = paid.pop(k, None)
            versions.pop(k, None)
            if o is not None:
                out.append(o)
        into = lists.paid_orders(_mine(changed, self.store, None), self.currency, RecordingRates(self.rates))
        currencies = Counter(day.currencies)
        add_counts(currencies, (o.order.currency for o in out), -1)
        add_counts(currencies, (o.order.currency for o in into), 1)
        for r in changed:
            versions[r.key] = r.version
        for o in into:
            paid[o.key] = o
        gaps = part.gaps
        if currencies.keys() != day.currencies.keys():  # a currency came or went: its rate's gap with it
            recording = RecordingRates(self.rates)
            for currency in currencies:  # each currency of the day once, as an order of it converts
                convert(recording, 0, currency, self.currency, next(iter(paid.values())).day)
            gaps = frozenset(recording.gaps)
        by_source = {s: list(a) for s, a in part.by_source.items()}
        _add_sources(by_source, out, -1)
        _add_sources(by_source, into, 1)
        products = {p: list(a) for p, a in part.products.items()}
        _rename(products, _add_products(products, out, into), [paid.values()])
        baskets = lists.Baskets(part.baskets.orders, Counter(part.baskets.freq), Counter(part.baskets.together))
        _add_baskets(baskets, out, -1)
        _add_baskets(baskets, into, 1)
        return (OrdersPart(part.count - len(out) + len(into), _top(part.latest, out, into, paid, _latest),
                           _top(part.best, out, into, paid, _best), by_source, products, baskets, gaps,
                           step=Step(part.serial, tuple(out), tuple(into))),
                OrdersDay(versions, paid, dict(currencies)))


def _add_sources(acc: dict[str, list[int]], orders: Iterable[lists.Paid], sign: int) -> None:
    for o in orders:
        a = acc.setdefault(o.order.source, [0, 0])
        a[0] += sign
        a[1] += sign * o.amount
        if not a[0]:
            del acc[o.order.source]


def _add_products(acc: dict[str, list[Any]], out: Iterable[lists.Paid], into: Iterable[lists.Paid]) -> dict[str, tuple[int, str]]:
    """Takes `out` out and puts `into` in; returns the products whose name left with an order taken
    out (and the order's (paid, key)) and that no order put in names as late."""
    lost: dict[str, tuple[int, str]] = {}
    for o in out:
        for p in lists.add_order(acc, o, -1):
            lost.setdefault(p, (o.paid, o.key))
    for o in into:
        lists.add_order(acc, o, 1)
    return {p: at for p, at in lost.items() if (a := acc.get(p)) is not None and (a[4] is None or a[4] < at)}


def _rename(acc: dict[str, list[Any]], lost: dict[str, tuple[int, str]], orders: Iterable[Iterable[lists.Paid]]) -> None:
    """The name of each lost product again: from the latest of these orders that names it."""
    if not lost:
        return
    for o in chain.from_iterable(orders):
        at = (o.paid, o.key)
        for product, name, _, _ in o.lines:
            if name and product in lost:
                a = acc[product]
                if a[4] is None or at > a[4]:
                    a[0], a[4] = name, at


def _basket(o: lists.Paid) -> list[str]:
    return sorted({p for p, _, _, _ in o.lines})


def _add_baskets(b: lists.Baskets, orders: Iterable[lists.Paid], sign: int) -> None:
    for o in orders:
        basket = _basket(o)
        b.orders += sign
        add_counts(b.freq, basket, sign)
        add_counts(b.together, combinations(basket, 2), sign)


def add_counts(counter: Counter[Any], keys: Iterable[Any], sign: int) -> None:
    """Adds sign to each key's count; a count down to 0 is dropped (as if never met)."""
    for k in keys:
        n = counter[k] + sign
        if n:
            counter[k] = n
        else:
            del counter[k]


def _top(kept: list[lists.Paid], out: list[lists.Paid], into: list[lists.Paid], paid: dict[str, lists.Paid],
         key: Callable[[lists.Paid], tuple[int, str]]) -> list[lists.Paid]:
    """The MOST first of the day's paid orders by `key`, from `kept` (the MOST first before the change,
    or all when fewer). Every order not kept ranks below the last kept one, so the kept ones not taken
    out and those put in that rank at least as high are the first of the day, as long as they are
    MOST (or all the day's); else all the day's orders are ranked again."""
    if not out and not into:
        return kept
    full = len(kept) >= MOST
    bound = key(kept[-1]) if full else None
    gone = {o.key for o in out}
    left = [o for o in kept if o.key not in gone] if gone else list(kept)
    joining = [o for o in into if bound is None or key(o) >= bound]
    if full and len(left) + len(joining) < MOST:
        return heapq.nlargest(MOST, paid.values(), key=key)
    if not joining and len(left) == len(kept):
        return kept
    return heapq.nlargest(MOST, left + joining, key=key)


class OrdersMerge:
    """A period's sums of its days' OrdersParts (by source, products, pair counts), kept across requests:
    a request after a write to one day takes that day's old part out and puts its new one in (or
    applies the step between them), instead of merging 90 parts again. Equal to merge_by_source,
    merge_products and merge_baskets of the same parts (tests/test_today_parts.py)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one request at a time syncs it
        self._clear()

    def _clear(self) -> None:
        self.parts: dict[str, OrdersPart] = {}
        self.count = 0
        self.by_source: dict[str, list[int]] = {}
        self.products: dict[str, list[Any]] = {}
        self.baskets = lists.Baskets()
        self.gaps: frozenset[Gap] = frozenset()

    def sync(self, parts: dict[str, OrdersPart]) -> None:
        """Brings the sums to these parts (day -> part)."""
        changed = [d for d, p in parts.items() if self.parts.get(d) is not p]
        gone = [d for d in self.parts if d not in parts]
        if len(changed) + len(gone) > len(parts) // 2:  # most of it: sum everything again
            self._clear()
            changed, gone = list(parts), []
        lost: dict[str, tuple[int, str]] = {}
        for d in gone:
            self._add(self.parts[d], -1, lost)
        for d in changed:
            new, old = parts[d], self.parts.get(d)
            if old is not None and new.step is not None and new.step.before == old.serial:
                self._step(new.step, lost)
            else:
                if old is not None:
                    self._add(old, -1, lost)
                self._add(new, 1, lost)
        self.parts = dict(parts)
        self.gaps = frozenset().union(*(p.gaps for p in parts.values()))
        for product, at in lost.items():
            a = self.products.get(product)
            if a is None or (a[4] is not None and a[4] >= at):
                continue
            for p in parts.values():  # the latest name of the days left
                b = p.products.get(product)
                if b is not None and b[4] is not None and (a[4] is None or b[4] > a[4]):
                    a[0], a[4] = b[0], b[4]

    def _step(self, step: Step, lost: dict[str, tuple[int, str]]) -> None:
        self.count += len(step.into) - len(step.out)
        _add_sources(self.by_source, step.out, -1)
        _add_sources(self.by_source, step.into, 1)
        for p, at in _add_products(self.products, step.out, step.into).items():
            lost.setdefault(p, at)
        _add_baskets(self.baskets, step.out, -1)
        _add_baskets(self.baskets, step.into, 1)

    def _add(self, part: OrdersPart, sign: int, lost: dict[str, tuple[int, str]]) -> None:
        self.count += sign * part.count
        for source, (n, amount) in part.by_source.items():
            s = self.by_source.setdefault(source, [0, 0])
            s[0] += sign * n
            s[1] += sign * amount
            if not s[0]:
                del self.by_source[source]
        for product, (name, revenue, units, orders, at) in part.products.items():
            a = self.products.get(product)
            if a is None:
                a = self.products[product] = ["", 0, 0, 0, None]
            a[1] += sign * revenue
            a[2] += sign * units
            a[3] += sign * orders
            if sign > 0:
                if at is not None and (a[4] is None or at > a[4]):
                    a[0], a[4] = name, at
            elif not a[3]:
                del self.products[product]
            elif at is not None and a[4] == at:
                a[0], a[4] = "", None
                lost.setdefault(product, at)
        self.baskets.orders += sign * part.baskets.orders
        if sign > 0:
            self.baskets.freq.update(part.baskets.freq)
            self.baskets.together.update(part.baskets.together)
        else:
            _count_all(self.baskets.freq, part.baskets.freq)
            _count_all(self.baskets.together, part.baskets.together)

    def weight(self) -> int:
        """What it holds, in DayCache.state's entries: its products and pairs."""
        return len(self.products) + len(self.baskets.together)


def _count_all(counter: Counter[Any], minus: Counter[Any]) -> None:
    for k, n in minus.items():
        left = counter[k] - n
        if left:
            counter[k] = left
        else:
            del counter[k]


@dataclass(frozen=True, slots=True)
class CustomersPart:
    """A day's paid orders per customer, for the best customers (ws_gateway/customer_rank.py): apart
    from the OrdersPart, so a write to today recomputes only this for /customers."""

    customers: dict[str, lists.PeriodCustomer]  # lists.period_customers
    guests: int  # paid orders without a customer
    gaps: frozenset[Gap]


def customers_part(records: Iterable[Record[Order]], *, currency: str, rates: Rates | None,
                   store: str | None, members: frozenset[str] | None = None) -> CustomersPart:
    """lists.period_customers, the guest orders and gaps of these order records (of `store`, of
    `members` when given)."""
    recording = RecordingRates(rates)
    acc: dict[str, lists.PeriodCustomer] = {}
    guests = 0
    for r in records:
        v = r.value
        if v.paid is None or store not in (None, v.store) or (members is not None and v.customer not in members):
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


def merge_products(parts: list[OrdersPart]) -> dict[str, list[Any]]:
    """Sums; a product's name the latest (lists.product_totals)."""
    out: dict[str, list[Any]] = {}
    for p in parts:
        for product, (name, revenue, units, orders, at) in p.products.items():
            a = out.get(product)
            if a is None:
                out[product] = [name, revenue, units, orders, at]
            else:
                a[1] += revenue
                a[2] += units
                a[3] += orders
                if at is not None and (a[4] is None or at > a[4]):
                    a[0], a[4] = name, at
    return out


def merge_baskets(parts: list[OrdersPart]) -> lists.Baskets:
    out = lists.Baskets()
    for p in parts:
        out.orders += p.baskets.orders
        out.freq.update(p.baskets.freq)  # new products are added in the order met: as one pass would
        out.together.update(p.baskets.together)
    return out


def merge_customers(parts: list[CustomersPart]) -> dict[str, lists.PeriodCustomer]:
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


CartNames = dict[str, tuple[int, str, str]]  # product -> (last activity, cart key, name) of the latest cart naming it


def cart_names_part(records: Iterable[Record[Cart]]) -> CartNames:
    """What names the products of these (a day's) carts: each one's name in the latest cart naming it."""
    return _latest_marks((product, (r.value.last, r.key, name)) for r in records for product, name in r.value.names.items())


def merge_cart_names(parts: Iterable[CartNames]) -> dict[str, str]:
    """Product -> its name in the latest cart of any part naming it (by last activity, then key)."""
    return {product: mark[2] for product, mark in _latest_marks(kv for part in parts for kv in part.items()).items()}


def _latest_marks(marks: Iterable[tuple[str, tuple[int, str, str]]]) -> CartNames:
    out: CartNames = {}
    for product, mark in marks:
        if product not in out or mark > out[product]:
            out[product] = mark
    return out


def paid_times(records: Iterable[Record[Order]]) -> list[int]:
    """A day's paid times (what the quota counts), sorted."""
    return sorted(r.value.paid for r in records if r.value.paid is not None)
