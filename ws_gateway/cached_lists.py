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
from zoneinfo import ZoneInfo

from core.changes import Record
from core.clock import utc_from_ms
from core.figures import QUOTA_WINDOW_MS, Gap
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


def lifetimes(cache: DayCache, model: ReadModel, org: str, first: str, last: str, *, currency: str,
              rates: RecordingRates, tz: ZoneInfo, store: str | None) -> dict[str, lists.Lifetime]:
    """lists.lifetimes of the profiles registered in [first, last]; what lacked a rate goes into `rates`."""
    compute = functools.partial(_lives_part, currency=currency, rates=rates.inner, tz=tz, store=store)
    out: dict[str, lists.Lifetime] = {}
    for part in cache.parts(model, org, Customer, first, last, ("lives", currency, store, str(tz)), compute):
        out.update(part.lives)
        rates.gaps |= part.gaps
    return out
