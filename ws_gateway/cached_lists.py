"""The read API's lists through the day cache (ws_gateway/day_cache.py): which records each reads, in
which parts, under which variant. Runs in a worker thread (it reads the model).

What a segment filter (?segment=) narrows is computed whole each time: membership changes apart from
the days' records, so a day's stamp does not say when such a part is stale.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from itertools import chain
from typing import Any
from zoneinfo import ZoneInfo

from core.changes import Record
from core.clock import utc_from_ms
from core.figures import OPEN_END, QUOTA_WINDOW_MS, Gap
from core.rates import Rates, RecordingRates
from core.records import AbandonedProduct, Cart, Customer, Order
from state.readmodel import ReadModel
from ws_gateway import list_parts, lists
from ws_gateway.day_cache import DayCache


def order_parts(cache: DayCache, model: ReadModel, org: str, first: str, last: str, *, currency: str,
                rates: Rates | None, store: str | None, members: frozenset[str] | None) -> list[list_parts.OrdersPart]:
    """The period's paid orders (of `store`, of `members`), a part a day."""
    if members is not None:
        return [list_parts.orders_part(model.records(org, Order, first, last), currency=currency, rates=rates,
                                       store=store, members=members)]
    compute = functools.partial(list_parts.orders_part, currency=currency, rates=rates, store=store)
    return cache.parts(model, org, Order, first, last, ("orders", currency, store), compute)


def latest_carts(cache: DayCache, model: ReadModel, org: str, first: str, last: str, *, store: str | None,
                 limit: int) -> list[Record[Cart]]:
    """The `limit` carts of the period (first active in it) with the latest activity, latest first."""
    compute = functools.partial(list_parts.carts_part, store=store)
    return list_parts.merge_carts(cache.parts(model, org, Cart, first, last, ("carts", store), compute), limit)


def abandoned_products(cache: DayCache, model: ReadModel, org: str, first: str, last: str) -> list[Record[AbandonedProduct]]:
    """The period's abandoned-product records (a few hundred a day), kept decoded."""
    return list(chain.from_iterable(cache.parts(model, org, AbandonedProduct, first, last, "records", list)))


def quota_times(cache: DayCache, model: ReadModel, org: str, at_ms: int, tz: ZoneInfo) -> list[int]:
    """Paid times of the orders that may be in the quota's window ending at `at_ms`: an order's day is
    the local day it was paid, so the window's days (and one either side, for safety at midnight) hold
    every one of them; lists.quota counts the window exactly."""
    lo = (utc_from_ms(at_ms - QUOTA_WINDOW_MS).astimezone(tz).date() - timedelta(days=1)).isoformat()
    hi = (utc_from_ms(at_ms).astimezone(tz).date() + timedelta(days=1)).isoformat()
    return list(chain.from_iterable(cache.parts(model, org, Order, lo, hi, "paid", list_parts.paid_times)))


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
    """Kept until a profile or (a bounded period) one of its orders changes: ranking and summing the
    customers of 90 days of 1M orders is ~650,000 customers' work, too much for each request."""
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
            parts = order_parts(cache, model, org, first, last, currency=currency, rates=rates, store=store, members=members)
            recording.gaps |= list_parts.gaps(parts)
            figures = list_parts.merge_customers(parts)
            guests = sum(p.guests for p in parts)
        first_ever = {k: life.first_paid for k in figures if (life := lives.get(k)) is not None and life.first_paid is not None}
        return BestCustomers(len(figures), lists.customers_list(figures, lives, sort=sort, limit=limit, currency=currency, tz=tz),
                             lists.customer_summary(figures, first_ever, guests, first, last, tz),
                             sum(c.orders for c in figures.values()), frozenset(recording.gaps))

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
