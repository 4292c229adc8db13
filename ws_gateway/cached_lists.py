"""The read API's lists through the day cache (ws_gateway/day_cache.py): which records each reads, in
which parts, under which variant. Runs in a worker thread (it reads the model).

What a segment filter (?segment=) narrows is computed whole each time: membership changes apart from
the days' records, so a day's stamp does not say when such a part is stale.
"""

from __future__ import annotations

import functools
import threading
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import chain
from typing import Any
from zoneinfo import ZoneInfo

from core.changes import Record
from core.clock import utc_from_ms
from core.figures import OPEN_END, QUOTA_WINDOW_MS, Gap
from core.rates import Rates, RecordingRates
from core.records import AbandonedProduct, Cart, CartDay, Customer, OpenCarts, Order
from state.day_stamps import DayStamped
from state.readmodel import ReadModel
from ws_gateway import customer_rank, day_updates, list_parts, lists, shoppers
from ws_gateway.day_cache import DayCache


def order_parts(cache: DayCache, model: ReadModel, org: str, first: str, last: str, *, currency: str,
                rates: Rates | None, store: str | None, members: frozenset[str] | None) -> list[list_parts.OrdersPart]:
    """The period's paid orders (of `store`, of `members`), a part a day."""
    if members is not None or not isinstance(model, DayStamped):
        return [list_parts.orders_part(model.records(org, Order, first, last), currency=currency, rates=rates,
                                       store=store, members=members)]
    return [p for _, p in _day_order_parts(cache, model, org, first, last, currency=currency, rates=rates, store=store)]


def _day_order_parts(cache: DayCache, model: ReadModel, org: str, first: str, last: str, *, currency: str,
                     rates: Rates | None, store: str | None) -> list[tuple[str, list_parts.OrdersPart]]:
    """A stamped model's order parts by day, today's (any day's) updated from its records written since."""
    update = list_parts.OrdersUpdate(currency, rates, store)
    return cache.day_parts(model, org, Order, first, last, ("orders", currency, store), update.build_part, update=update)


def order_list(cache: DayCache, model: ReadModel, org: str, first: str, last: str, what: str, *, currency: str,
               rates: Rates | None, store: str | None, members: frozenset[str] | None, sort: str, limit: int,
               tz: ZoneInfo) -> tuple[dict[str, Any], frozenset[Gap]]:
    """The rows of /orders (with by_source), /products or /pairs (with orders_considered), and the
    amounts left out for want of a rate. Kept whole until a day of the period changes; the period's
    sums (products, pair counts, sources) are kept across changes (list_parts.OrdersMerge): merging 90
    days of pair counts is itself ~100,000 pairs' work."""
    stamped = members is None and isinstance(model, DayStamped)
    stamps = cache.stamps(model, org, Order, first, last) if stamped else None
    key = None if stamps is None else ("list", org, first, last, what, currency, store, sort, limit, str(tz), stamps)

    def compute() -> tuple[dict[str, Any], frozenset[Gap]]:
        if stamped:
            days = _day_order_parts(cache, model, org, first, last, currency=currency, rates=rates, store=store)
            merges = cache.state(("order merges", org, currency, store), _Merges, _Merges.weight)
            merge = merges.period(first, last)
            with merge.lock:
                merge.sync(dict(days))
                count, by_source, gaps = merge.count, merge.by_source, merge.gaps
                products = merge.products if what in ("products", "pairs") else {}  # pairs: their names
                baskets = merge.baskets if what == "pairs" else lists.Baskets()
                parts = [p for _, p in days]
                return _rows(what, parts, count, by_source, products, baskets, currency=currency, sort=sort,
                             limit=limit, tz=tz), gaps
        parts = order_parts(cache, model, org, first, last, currency=currency, rates=rates, store=store, members=members)
        return (_rows(what, parts, sum(p.count for p in parts), list_parts.merge_by_source(parts),
                      list_parts.merge_products(parts) if what in ("products", "pairs") else {},
                      list_parts.merge_baskets(parts) if what == "pairs" else lists.Baskets(),
                      currency=currency, sort=sort, limit=limit, tz=tz), frozenset(list_parts.gaps(parts)))

    return cache.answer(key, compute)


MERGES = 12  # periods whose order sums are kept per organisation, currency and store (as PERIODS below)


class _Merges:
    """An organisation's kept period sums of order parts in one currency and store, the MERGES last used.
    Bounded by count, not DayCache's weight: each holds its days' parts (which the cache may drop)."""

    def __init__(self) -> None:
        self.periods: OrderedDict[tuple[str, str], list_parts.OrdersMerge] = OrderedDict()
        self.lock = threading.Lock()

    def period(self, first: str, last: str) -> list_parts.OrdersMerge:
        """The period's sums; a new period takes those of the period a day before it (the dashboard's
        "7d" after midnight: one day out, one in), else starts empty."""
        with self.lock:
            kept = self.periods.pop((first, last), None)
            if kept is None:
                kept = self.periods.pop(_day_before(first, last), None) or list_parts.OrdersMerge()
            self.periods[(first, last)] = kept
            while len(self.periods) > MERGES:
                self.periods.popitem(last=False)
            return kept

    def locks(self) -> Iterator[threading.Lock]:
        """What a request takes to change these sums, in the order to take them (DayCache.still): the
        periods are listed once the first is held (no period comes in then)."""
        yield self.lock
        for merge in list(self.periods.values()):
            yield merge.lock

    def weight(self) -> int:
        """Its products and pair counts (DayCache.state's entries)."""
        return sum(m.weight() for m in list(self.periods.values()))


def _rows(what: str, parts: list[list_parts.OrdersPart], count: int, by_source: dict[str, list[int]],
          products: dict[str, list[Any]], baskets: lists.Baskets, *, currency: str, sort: str, limit: int,
          tz: ZoneInfo) -> dict[str, Any]:
    if what == "orders":
        ranked = list_parts.merge_orders(parts, sort=sort, limit=limit)
        return {"orders": lists.orders_list(ranked, sort=sort, limit=limit, currency=currency, tz=tz),
                "by_source": lists.by_source_json(by_source, currency)}
    if what == "products":
        return {"products": lists.rank_products(products, sort=sort, limit=limit, currency=currency)}
    return {"pairs": lists.rank_pairs(baskets, sort=sort, limit=limit, products=products), "orders_considered": count}


def latest_carts(cache: DayCache, model: ReadModel, org: str, first: str, last: str, *, store: str | None,
                 limit: int) -> list[Record[Cart]]:
    """The `limit` carts of the period (first active in it) with the latest activity, latest first."""
    compute = functools.partial(list_parts.carts_part, store=store)
    parts = cache.parts(model, org, Cart, first, last, ("carts", store), compute, weigh=lambda p: len(p.latest))
    return list_parts.merge_carts(parts, limit)


def abandoned_products(cache: DayCache, model: ReadModel, org: str, first: str, last: str) -> list[Record[AbandonedProduct]]:
    """The period's abandoned-product records (a few hundred a day), kept decoded."""
    return list(chain.from_iterable(cache.parts(model, org, AbandonedProduct, first, last, "records", list)))


def carts(cache: DayCache, model: ReadModel, org: str, first: str, last: str, *, currency: str, rates: Rates | None,
          store: str | None, limit: int) -> tuple[dict[str, Any], frozenset[Gap]]:
    """shoppers.carts_summary of the period, and the amounts left out for want of a rate; kept whole
    until a day of its carts, cart days or abandoned products, or the open carts, change."""
    stamps = [cache.stamps(model, org, k, first, last) for k in (CartDay, AbandonedProduct, Cart)]
    stamps.append(cache.stamps(model, org, OpenCarts, "", OPEN_END))
    key = None if None in stamps else ("carts", org, first, last, currency, store, limit, *stamps)

    def compute() -> tuple[dict[str, Any], frozenset[Gap]]:
        recording = RecordingRates(rates)
        compute_best = functools.partial(list_parts.best_carts_part, store=store, currency=currency, rates=rates)
        best = cache.parts(model, org, Cart, first, last, ("best carts", store, currency), compute_best,
                           weigh=lambda p: len(p.best))
        recording.gaps |= list_parts.gaps(best)
        names = list_parts.merge_cart_names(cache.parts(model, org, Cart, first, last, "names", list_parts.cart_names_part,
                                                        weigh=len))
        body = shoppers.carts_summary(model.records(org, CartDay, first, last), model.records(org, OpenCarts),
                                      abandoned_products(cache, model, org, first, last),
                                      latest_carts(cache, model, org, first, last, store=store, limit=limit),
                                      currency=currency, rates=recording, limit=limit, store=store,
                                      best=list_parts.merge_best_carts(best, limit), names=names)
        return body, frozenset(recording.gaps)

    return cache.answer(key, compute)


def quota_count(cache: DayCache, model: ReadModel, org: str, at_ms: int, tz: ZoneInfo) -> int:
    """core.figures.quota_count of every order: paid times in (at - 30 days, at]. An order's day is the
    local day it was paid, so the window's days (and one either side, for safety at midnight) hold
    every such order; each day's times are kept sorted and counted by bisection."""
    since = at_ms - QUOTA_WINDOW_MS
    lo = (utc_from_ms(since).astimezone(tz).date() - timedelta(days=1)).isoformat()
    hi = (utc_from_ms(at_ms).astimezone(tz).date() + timedelta(days=1)).isoformat()
    if isinstance(model, DayStamped):  # today's paid times updated from its orders changed since
        update = day_updates.PaidTimesUpdate()
        days = [t for _, t in cache.day_parts(model, org, Order, lo, hi, "paid", update.build_part, update=update)]
    else:
        days = cache.parts(model, org, Order, lo, hi, "paid", list_parts.paid_times)
    return sum(bisect_right(times, at_ms) - bisect_right(times, since) for times in days)


@dataclass(frozen=True, slots=True)
class LivesPart:
    lives: dict[str, lists.Lifetime]
    gaps: frozenset[Gap]


def _lives_part(records: list[Record[Customer]], *, currency: str, rates: Rates | None, tz: ZoneInfo,
                store: str | None) -> LivesPart:
    recording = RecordingRates(rates)
    return LivesPart(lists.lifetimes(records, currency=currency, rates=recording, tz=tz, store=store),
                     frozenset(recording.gaps))


@dataclass(frozen=True, slots=True)
class BestCustomers:
    """The customers who paid in a period (all time: every profile with a paid order), ranked."""

    total: int
    rows: list[dict[str, Any]]  # lists.customers_list
    summary: dict[str, Any]  # lists.customer_summary; all time: without guest orders (the caller's, from the figures)
    customer_orders: int  # the paid orders of those customers
    gaps: frozenset[Gap]


def best_customers(cache: DayCache, model: ReadModel, org: str, first: str, last: str, *, currency: str,
                   rates: Rates | None, tz: ZoneInfo, store: str | None, members: frozenset[str] | None, sort: str,
                   limit: int) -> BestCustomers:
    """From a stamped model, kept in step with the days that changed (ranked_customers); else (a share
    link's scoped view, a segment's members) computed whole: ranking and summing the customers
    of 90 days of 1M orders is ~650,000 customers' work, seconds."""
    if members is None and isinstance(model, DayStamped):
        return ranked_customers(cache, model, org, first, last, currency=currency, rates=rates, tz=tz, store=store,
                                sort=sort, limit=limit)
    whole = first == "" and last == OPEN_END
    key = None
    if members is None:
        orders = None if whole else cache.stamps(model, org, Order, first, last)
        profiles = cache.stamps(model, org, Customer, "", OPEN_END)
        if profiles is not None and (whole or orders is not None):
            key = ("customers", org, first, last, currency, store, str(tz), sort, limit, orders, profiles)

    def compute() -> BestCustomers:
        recording = RecordingRates(rates)
        lives = lifetimes(cache, model, org, "", OPEN_END, currency=currency, rates=recording, tz=tz, store=store)
        if members is not None:
            lives = {k: v for k, v in lives.items() if k in members}
        guests = 0
        if whole:  # all time: the profiles alone, no order is read
            figures = lists.lifetime_customers(lives)
        else:  # a bounded period sums its own paid orders, selected by day
            part = list_parts.customers_part(model.records(org, Order, first, last), currency=currency, rates=rates,
                                             store=store, members=members)  # computed whole: see the docstring
            recording.gaps |= part.gaps
            figures = list_parts.merge_customers([part])
            guests = part.guests
        first_ever = {k: life.first_paid for k in figures if (life := lives.get(k)) is not None and life.first_paid is not None}
        return BestCustomers(len(figures), lists.customers_list(figures, lives, sort=sort, limit=limit, currency=currency, tz=tz),
                             lists.customer_summary(figures, first_ever, guests, first, last, tz),
                             sum(c.orders for c in figures.values()), frozenset(recording.gaps))

    return cache.answer(key, compute)


def never_bought(cache: DayCache, model: ReadModel, org: str, first: str, last: str, *, currency: str,
                 rates: Rates | None, tz: ZoneInfo, store: str | None, members: frozenset[str] | None, sort: str,
                 limit: int) -> tuple[int, list[dict[str, Any]], frozenset[Gap]]:
    """How many customers registered in [first, last] (first seen at `store`) never paid an order, the
    first `limit` of them, and the amounts left out for want of a rate; kept until a profile of the
    period changes."""
    stamps = None if members is not None else cache.stamps(model, org, Customer, first, last)
    key = None if stamps is None else ("never_bought", org, first, last, currency, store, str(tz), sort, limit, stamps)

    def compute() -> tuple[int, list[dict[str, Any]], frozenset[Gap]]:
        recording = RecordingRates(rates)
        lives = lifetimes(cache, model, org, first, last, currency=currency, rates=recording, tz=tz, store=None)
        if members is not None:
            lives = {k: v for k, v in lives.items() if k in members}
        figures = lists.never_bought(lives, store)
        rows = lists.customers_list(figures, lives, sort=sort, limit=limit, currency=currency, tz=tz)
        return len(figures), rows, frozenset(recording.gaps)

    return cache.answer(key, compute)


def lifetimes(cache: DayCache, model: ReadModel, org: str, first: str, last: str, *, currency: str,
              rates: RecordingRates, tz: ZoneInfo, store: str | None) -> dict[str, lists.Lifetime]:
    """lists.lifetimes of the profiles registered in [first, last]; what lacked a rate goes into `rates`."""
    compute = functools.partial(_lives_part, currency=currency, rates=rates.inner, tz=tz, store=store)
    out: dict[str, lists.Lifetime] = {}
    for part in cache.parts(model, org, Customer, first, last, ("lives", currency, store, str(tz)), compute):
        out.update(part.lives)
        rates.gaps |= part.gaps
    return out


@dataclass(slots=True)
class _Ranked:
    """An organisation's best customers in one currency, store and time zone: its profiles merged
    once, and a `customer_rank.RankedPeriod` per period asked for (the PERIODS last used)."""

    lives: customer_rank.LivesMerge = field(default_factory=customer_rank.LivesMerge)
    periods: OrderedDict[tuple[str, str], customer_rank.RankedPeriod] = field(default_factory=OrderedDict)
    whole: dict[str, tuple[LivesPart, customer_rank.Figures]] = field(default_factory=dict)  # all time's day parts
    lock: threading.Lock = field(default_factory=threading.Lock)  # one request at a time updates them

    def period(self, first: str, last: str, tz: ZoneInfo) -> customer_rank.RankedPeriod:
        kept = self.periods.pop((first, last), None)
        if kept is None:  # a new period; or a kept one a day later (the dashboard's "7d" after midnight)
            before = self.periods.pop(_day_before(first, last), None)
            kept = before.roll(first, last) if before is not None else customer_rank.RankedPeriod(first, last, tz)
        self.periods[(first, last)] = kept
        while len(self.periods) > PERIODS:
            self.periods.popitem(last=False)
        return kept

    def locks(self) -> Iterator[threading.Lock]:
        """What a request takes to change it (DayCache.still)."""
        yield self.lock

    def weight(self) -> int:
        """The customers it holds (DayCache.state's bound): a profile, and one per customer of each period."""
        periods = list(self.periods.values())  # one C call: atomic while a request updates them
        return len(self.lives.lives) + sum(len(p.merge.figures) for p in periods)

    def lifetime_figures(self, day: str, part: LivesPart) -> customer_rank.Figures:
        """All time's figures of a profile day (lists.lifetime_customers), the same object while its part stands."""
        kept = self.whole.get(day)
        if kept is None or kept[0] is not part:
            kept = self.whole[day] = (part, lists.lifetime_customers(part.lives))
        return kept[1]


def _day_before(first: str, last: str) -> tuple[str, str]:
    """The period one day earlier (an open end stays open)."""
    def before(day: str) -> str:
        try:
            return (date.fromisoformat(day) - timedelta(days=1)).isoformat()
        except ValueError:
            return day  # "" or OPEN_END
    return before(first), before(last)


CUSTOMERS_WEIGHT = 0.4  # a customers part holds ~100 B a record, an orders part ~240 (tracemalloc, bench data)
PERIODS = 12  # periods kept per organisation and currency: the dashboard's today, 7d, 30d, 90d and all, the 7, 30 and
# 90 days before (what the overview compares with: warmed at start), and room for a custom range or two; with 6, warming
# dropped the 30 days' ranking before its first request (2.5 s at 1M customers). Their weight is DayCache's to bound.


def ranked_customers(cache: DayCache, model: ReadModel, org: str, first: str, last: str, *, currency: str,
                     rates: Rates | None, tz: ZoneInfo, store: str | None, sort: str, limit: int) -> BestCustomers:
    """lists.customers_list and lists.customer_summary of the period (all time: of the profiles), from
    sums kept across requests (ws_gateway/customer_rank.py): a request after a write recomputes the
    parts of the days it touched and re-sums the customers whose entry in them changed."""
    ranked = cache.state(("customers", org, currency, store, str(tz)), _Ranked, _Ranked.weight)
    compute_lives = functools.partial(_lives_part, currency=currency, rates=rates, tz=tz, store=store)
    update = day_updates.CustomersUpdate(currency, rates, store)  # today's updated from its orders changed since
    with ranked.lock:
        lives = cache.day_parts(model, org, Customer, "", OPEN_END, ("lives", currency, store, str(tz)), compute_lives)
        ranked.lives.sync({d: p.lives for d, p in lives})
        gaps = set().union(*(p.gaps for _, p in lives))
        period = ranked.period(first, last, tz)
        if first == "" and last == OPEN_END:  # all time: the profiles alone, no order is read
            ranked.whole = {d: ranked.whole[d] for d, _ in lives if d in ranked.whole}  # drop days gone
            period.sync({d: ranked.lifetime_figures(d, p) for d, p in lives}, ranked.lives)
            guests = 0
        else:
            orders = cache.day_parts(model, org, Order, first, last, ("customers", currency, store), update.build_part,
                                     per_record=CUSTOMERS_WEIGHT, update=update)
            period.sync({d: p.customers for d, p in orders}, ranked.lives)
            gaps |= list_parts.gaps([p for _, p in orders])
            guests = sum(p.guests for _, p in orders)
        figures = period.merge.figures
        rows = lists.customer_rows(period.ranked(sort, limit), figures, ranked.lives.lives, currency=currency, tz=tz)
        return BestCustomers(len(figures), rows, period.summary(guests), period.merge.orders, frozenset(gaps))
