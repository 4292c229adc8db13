"""The best customers' and the quota's day parts updated from the records changed since they were
computed (ws_gateway/day_cache.py `DayUpdate`), as list_parts.OrdersUpdate does the orders lists':
after a write to today, /customers and /quota redo today's changed orders, not its ~8,000. Pure.

Each `build` gives what list_parts.customers_part / paid_times give (the same values), with a detail: every record's
version and what each counted order brought, so that `update` takes that out and puts the new in.
The results are the same objects a recompute would give, field for field (tests/test_today_parts.py).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from itertools import chain

from core.changes import Record
from core.rates import Rates, RecordingRates, convert
from core.records import Order
from ws_gateway import list_parts, lists
from ws_gateway.list_parts import CustomersPart, add_counts

Counted = tuple[str | None, int, int, int, str]  # an order's (customer, amount, items, paid, currency)


@dataclass(frozen=True, slots=True)
class CustomersDay:
    day: str  # "" while it holds no record
    versions: dict[str, int]  # every record of the day: key -> version
    counted: dict[str, Counted]  # the paid orders the part counts, by key
    currencies: dict[str, int]  # how many of them per currency: the part's gaps are theirs


@dataclass(frozen=True, slots=True)
class CustomersUpdate:
    """list_parts.customers_part of a day (of `store`, in `currency`), built and updated."""

    currency: str
    rates: Rates | None
    store: str | None

    def build_part(self, records: list[Record[Order]]) -> CustomersPart:
        """The part alone, for a day that keeps no detail."""
        return list_parts.customers_part(records, currency=self.currency, rates=self.rates, store=self.store)

    def build(self, records: list[Record[Order]]) -> tuple[CustomersPart, CustomersDay]:
        """customers_part's, from what each order brings."""
        rates = RecordingRates(self.rates)
        counted = self._counted(records, rates)
        customers: dict[str, lists.PeriodCustomer] = {}
        guests = 0
        for who, amount, items, paid, _ in counted.values():
            if who is None:
                guests += 1
                continue
            c = customers.get(who)
            if c is None:
                customers[who] = lists.PeriodCustomer(amount, 1, items, paid, paid)
            else:
                c.revenue, c.orders, c.items = c.revenue + amount, c.orders + 1, c.items + items
                c.first, c.last = _min(c.first, paid), _max(c.last, paid)
        return (CustomersPart(customers, guests, frozenset(rates.gaps)),
                CustomersDay(records[0].day if records else "", {r.key: r.version for r in records}, counted,
                             dict(Counter(c[4] for c in counted.values()))))

    def _counted(self, records: Iterable[Record[Order]], rates: RecordingRates) -> dict[str, Counted]:
        """What each paid order of the store brings (amounts whose rate is missing: 0, as customers_part)."""
        out: dict[str, Counted] = {}
        for r in records:
            v = r.value
            if v.paid is None or self.store not in (None, v.store):
                continue
            items = 0 if v.customer is None else sum(qty for _, qty, _, _ in v.lines())
            out[r.key] = (v.customer, convert(rates, v.amount, v.currency, self.currency, r.day), items, v.paid, v.currency)
        return out

    def versions(self, day: CustomersDay) -> dict[str, int]:
        return day.versions

    def update(self, part: CustomersPart, day: CustomersDay, changed: list[Record[Order]],
               gone: Iterable[str]) -> tuple[CustomersPart, CustomersDay] | None:
        """The part and detail after these records changed; copied, entries too (a period's sums hold the
        old ones): only the customers whose orders changed get new entries."""
        versions, counted = dict(day.versions), dict(day.counted)
        out = [o for k in chain(gone, (r.key for r in changed)) if (o := counted.pop(k, None)) is not None]
        for k in gone:
            versions.pop(k, None)
        into = self._counted(changed, RecordingRates(self.rates))
        for r in changed:
            versions[r.key] = r.version
        counted.update(into)
        customers, guests = dict(part.customers), part.guests
        again: set[str] = set()  # customers whose first or last paid order may have left
        for who, amount, items, paid, _ in out:
            if who is None:
                guests -= 1
                continue
            c = customers[who]
            left = lists.PeriodCustomer(c.revenue - amount, c.orders - 1, c.items - items, c.first, c.last)
            if left.orders:
                customers[who] = left
                if paid in (c.first, c.last):
                    again.add(who)
            else:
                del customers[who]
        for who, amount, items, paid, _ in into.values():
            if who is None:
                guests += 1
                continue
            had = customers.get(who)
            customers[who] = (lists.PeriodCustomer(amount, 1, items, paid, paid) if had is None else lists.PeriodCustomer(
                had.revenue + amount, had.orders + 1, had.items + items, _min(had.first, paid), _max(had.last, paid)))
        if again:
            firsts: dict[str, tuple[int, int]] = {}
            for who, _, _, paid, _ in counted.values():
                if who in again and who in customers:
                    f = firsts.get(who)
                    firsts[who] = (paid, paid) if f is None else (min(f[0], paid), max(f[1], paid))
            for who, (first, last) in firsts.items():
                c = customers[who]
                customers[who] = lists.PeriodCustomer(c.revenue, c.orders, c.items, first, last)
        currencies = Counter(day.currencies)
        add_counts(currencies, (c[4] for c in out), -1)
        add_counts(currencies, (c[4] for c in into.values()), 1)
        name = day.day or (changed[0].day if changed else "")
        gaps = part.gaps
        if currencies.keys() != day.currencies.keys():  # a currency came or went: its gap with it
            recording = RecordingRates(self.rates)
            for currency in currencies:  # each currency of the day once, as an order of it converts
                convert(recording, 0, currency, self.currency, name)
            gaps = frozenset(recording.gaps)
        return CustomersPart(customers, guests, gaps), CustomersDay(name, versions, counted, dict(currencies))


def _min(a: int | None, b: int) -> int:
    return b if a is None else min(a, b)


def _max(a: int | None, b: int) -> int:
    return b if a is None else max(a, b)


@dataclass(frozen=True, slots=True)
class PaidTimesDay:
    versions: dict[str, int]
    paid: dict[str, int]  # key -> paid time of each paid order


class PaidTimesUpdate:
    """list_parts.paid_times of a day (the quota's part: its paid times, sorted), built and updated."""

    def build_part(self, records: list[Record[Order]]) -> list[int]:
        return list_parts.paid_times(records)

    def build(self, records: list[Record[Order]]) -> tuple[list[int], PaidTimesDay]:
        paid = {r.key: r.value.paid for r in records if r.value.paid is not None}
        return sorted(paid.values()), PaidTimesDay({r.key: r.version for r in records}, paid)

    def versions(self, day: PaidTimesDay) -> dict[str, int]:
        return day.versions

    def update(self, part: list[int], day: PaidTimesDay, changed: list[Record[Order]],
               gone: Iterable[str]) -> tuple[list[int], PaidTimesDay] | None:
        versions, paid, times = dict(day.versions), dict(day.paid), list(part)
        for k in chain(gone, (r.key for r in changed)):
            versions.pop(k, None)
            if (t := paid.pop(k, None)) is not None:
                del times[bisect_left(times, t)]
        for r in changed:
            versions[r.key] = r.version
            if (t := r.value.paid) is not None:
                paid[r.key] = t
                insort(times, t)
        return times, PaidTimesDay(versions, paid)
