"""The daily and weekly digest: what a shop owner reads first thing, computed from the figures. Pure.

A digest covers a span ending on a local day `last`: that day ("day") or the seven days up to it
("week"). Each measure is compared with the same span in each of the previous four weeks (a daily
digest for a Tuesday against the last four Tuesdays: weekday patterns are strong in retail, so
comparing with the day before would mostly report the weekday). The baseline is the mean of those
four spans, rounded half up; every span counts, an empty one as 0, so a new shop's baseline is low,
not missing.

Insights are facts in plain words, chosen by fixed thresholds (INSIGHT_PERCENT and friends), so the
same figures always give the same insights: no model, nothing random. `core/digest_text.py` puts them
into the organisation's language.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo

import orjson

from core.changes import DAY, Bucket, Record
from core.money import EXPONENTS, divide_half_up
from core.rates import Rates, convert
from core.records import CartDay, Order

WEEKS = 4  # comparison spans: the same span in each of the previous four weeks
TOP_PRODUCTS = 5
INSIGHT_PERCENT = 10  # a measure at least this far from its baseline, in percent, is worth a sentence
ABANDONMENT_POINTS = 5  # the abandonment rate at least this many points from its baseline
TOP_SHARE_PERCENT = 30  # one product making at least this share of the revenue
QUOTA_WARN_PERCENT = 80


class Span(StrEnum):
    DAY = "day"
    WEEK = "week"

    @property
    def days(self) -> int:
        return 1 if self is Span.DAY else 7


@dataclass(frozen=True, slots=True)
class Measure:
    value: int  # minor units of the digest's currency, a count, or tenths of a percent (abandonment)
    baseline: int  # mean of the comparison spans, rounded half up
    change: int | None  # percent against the baseline, rounded half up; None when the baseline is 0


@dataclass(frozen=True, slots=True)
class Product:
    product: str
    name: str
    units: int
    revenue: int  # minor units of the digest's currency


@dataclass(frozen=True, slots=True)
class Quota:
    count: int  # paid orders in the rolling 30 days
    limit: int


@dataclass(frozen=True, slots=True)
class SegmentMove:
    segment: str
    entered: int
    exited: int


class InsightKind(StrEnum):
    REVENUE_UP = "revenue_up"
    REVENUE_DOWN = "revenue_down"
    ORDERS_UP = "orders_up"
    ORDERS_DOWN = "orders_down"
    AOV_UP = "aov_up"
    AOV_DOWN = "aov_down"
    NO_ORDERS = "no_orders"  # none in the span although the baseline has some: check the shop and its tracking
    ABANDONMENT_UP = "abandonment_up"
    ABANDONMENT_DOWN = "abandonment_down"
    TOP_PRODUCT = "top_product"
    QUOTA = "quota"


@dataclass(frozen=True, slots=True)
class Insight:
    kind: InsightKind
    percent: int  # how far from the baseline (a share or quota use for TOP_PRODUCT / QUOTA), >= 0
    subject: str = ""  # the product of TOP_PRODUCT
    baseline: int = 0  # the baseline of the measure concerned


@dataclass(frozen=True, slots=True)
class Digest:
    org: str
    span: Span
    first: str  # local ISO days, inclusive
    last: str
    currency: str
    revenue: Measure  # gross revenue of the orders paid in the span
    net_revenue: Measure  # minus the refunds made in the span
    orders: Measure  # paid orders
    aov: Measure  # revenue / paid orders
    carts: int  # carts first active in the span
    abandoned: int  # of which abandoned
    abandonment: Measure  # abandoned / carts, in tenths of a percent
    top_products: tuple[Product, ...]
    quota: Quota | None
    segments: tuple[SegmentMove, ...]
    insights: tuple[Insight, ...]

    def to_json(self) -> dict[str, object]:
        """The digest as an automation's payload (and the webhook channel's body)."""
        def measure(m: Measure) -> dict[str, object]:
            return {"value": m.value, "baseline": m.baseline, "change": m.change}

        return {
            "org": self.org, "span": str(self.span), "first": self.first, "last": self.last, "currency": self.currency,
            "exponent": EXPONENTS[self.currency],  # the ISO 4217 digits of every amount below (docs/metrics.md)
            "revenue": measure(self.revenue), "net_revenue": measure(self.net_revenue), "orders": measure(self.orders),
            "aov": measure(self.aov), "carts": self.carts, "abandoned": self.abandoned,
            "abandonment_permille": measure(self.abandonment),
            "top_products": [{"product": p.product, "name": p.name, "units": p.units, "revenue": p.revenue}
                             for p in self.top_products],
            "quota": None if self.quota is None else {"count": self.quota.count, "limit": self.quota.limit},
            "segments": [{"segment": s.segment, "entered": s.entered, "exited": s.exited} for s in self.segments],
            "insights": [{"kind": str(i.kind), "percent": i.percent, "subject": i.subject, "baseline": i.baseline}
                         for i in self.insights],
        }


def spans(span: Span, last: date) -> list[tuple[str, str]]:
    """The digest's own span (first) and its WEEKS comparison spans, as (first, last) ISO days."""
    out = []
    for week in range(WEEKS + 1):
        end = last - timedelta(days=7 * week)
        out.append(((end - timedelta(days=span.days - 1)).isoformat(), end.isoformat()))
    return out


@dataclass(slots=True)
class _Totals:
    gross: int = 0
    refunds: int = 0
    paid: int = 0
    carts: int = 0
    abandoned: int = 0


def compute_digest(
    org: str, span: Span, last: date, *, currency: str, buckets: Iterable[Bucket],
    orders: Iterable[Record[Order]] = (), cart_days: Iterable[Record[CartDay]] = (), rates: Rates | None = None,
    quota: Quota | None = None, segments: Iterable[SegmentMove] = (),
) -> Digest:
    """The digest of `span` ending on local day `last`, in `currency`. `buckets` are the revenue buckets
    (day grain is read), `orders` the order records (for the top products of the span), `cart_days` the
    carts' day records. Amounts are converted at each day's rate (MissingRate without one)."""
    windows = spans(span, last)
    totals = [_Totals() for _ in windows]

    def slot(day: str) -> _Totals | None:
        for (first, end), t in zip(windows, totals, strict=True):
            if first <= day <= end:
                return t
        return None

    for b in buckets:
        if b.grain != DAY or (t := slot(b.start)) is None:
            continue
        t.gross += convert(rates, b.gross, b.currency, currency, b.start)
        t.refunds += convert(rates, b.refunds, b.currency, currency, b.start)
        t.paid += b.paid_orders
    for r in cart_days:
        if (t := slot(r.day)) is not None:
            t.carts += r.value.carts
            t.abandoned += r.value.abandoned
    own, past = totals[0], totals[1:]
    revenue = _measure(own.gross, [t.gross for t in past])
    net = _measure(own.gross - own.refunds, [t.gross - t.refunds for t in past])
    paid = _measure(own.paid, [t.paid for t in past])
    aov = _measure(divide_half_up(own.gross, own.paid), [divide_half_up(t.gross, t.paid) for t in past if t.paid])
    abandonment = _measure(_permille(own.abandoned, own.carts),
                           [_permille(t.abandoned, t.carts) for t in past if t.carts])
    top = _top_products(orders, windows[0], currency, rates)
    moves = tuple(sorted((m for m in segments if m.entered or m.exited), key=lambda m: (-(m.entered + m.exited),
                                                                                       m.segment)))
    return Digest(org, span, windows[0][0], windows[0][1], currency, revenue, net, paid, aov, own.carts, own.abandoned,
                  abandonment, top, quota, moves, insights(revenue, paid, aov, abandonment, top, quota))


def insights(revenue: Measure, orders: Measure, aov: Measure, abandonment: Measure, top: tuple[Product, ...],
             quota: Quota | None) -> tuple[Insight, ...]:
    """The facts worth a sentence, most important first."""
    out: list[Insight] = []
    if orders.value == 0 and orders.baseline > 0:
        out.append(Insight(InsightKind.NO_ORDERS, 100, baseline=orders.baseline))
    else:
        for m, up, down in ((revenue, InsightKind.REVENUE_UP, InsightKind.REVENUE_DOWN),
                            (orders, InsightKind.ORDERS_UP, InsightKind.ORDERS_DOWN),
                            (aov, InsightKind.AOV_UP, InsightKind.AOV_DOWN)):
            if m.change is not None and abs(m.change) >= INSIGHT_PERCENT:
                out.append(Insight(up if m.change > 0 else down, abs(m.change), baseline=m.baseline))
    if abandonment.baseline and abs(abandonment.value - abandonment.baseline) >= ABANDONMENT_POINTS * 10:
        kind = InsightKind.ABANDONMENT_UP if abandonment.value > abandonment.baseline else InsightKind.ABANDONMENT_DOWN
        out.append(Insight(kind, divide_half_up(abs(abandonment.value - abandonment.baseline), 10),
                           baseline=abandonment.baseline))
    if len(top) > 1 and revenue.value > 0:  # with a single product, its share says nothing
        share = divide_half_up(top[0].revenue * 100, revenue.value)
        if share >= TOP_SHARE_PERCENT:
            out.append(Insight(InsightKind.TOP_PRODUCT, share, subject=top[0].name or top[0].product))
    if quota is not None and quota.limit > 0:
        used = divide_half_up(quota.count * 100, quota.limit)
        if used >= QUOTA_WARN_PERCENT:
            out.append(Insight(InsightKind.QUOTA, used, baseline=quota.limit))
    return tuple(out)


def _measure(value: int, past: list[int]) -> Measure:
    """`value` against the mean of the WEEKS comparison spans (a span left out of `past` counts as 0, except
    for ratios, whose caller leaves out the spans where the ratio is undefined)."""
    baseline = divide_half_up(sum(past), len(past)) if past else 0
    change = None if baseline == 0 else divide_half_up((value - baseline) * 100, baseline)
    return Measure(value, baseline, change)


def _permille(part: int, whole: int) -> int:
    return divide_half_up(part * 1000, whole)


def _top_products(orders: Iterable[Record[Order]], window: tuple[str, str], currency: str,
                  rates: Rates | None) -> tuple[Product, ...]:
    """The products of the orders paid in the window, by revenue (quantity x unit price, converted at the
    order's day), then units, then id."""
    first, last = window
    units: dict[str, int] = {}
    revenue: dict[str, int] = {}
    names: dict[str, str] = {}
    for r in orders:
        o = r.value
        if o.paid is None or o.cancelled or not first <= r.day <= last:
            continue
        for product, qty, unit_price, name in orjson.loads(bytes(o.items)):  # Raw: the ledger keeps it as JSON
            units[product] = units.get(product, 0) + qty
            revenue[product] = revenue.get(product, 0) + convert(rates, qty * unit_price, o.currency, currency, r.day)
            if name:
                names[product] = name
    ranked = sorted(units, key=lambda p: (-revenue[p], -units[p], p))[:TOP_PRODUCTS]
    return tuple(Product(p, names.get(p, ""), units[p], revenue[p]) for p in ranked)


def digest_payload(span: str | None, at: int, timezone: str) -> dict[str, str]:
    """A digest schedule's payload: which digest, ending on the local day before the instant it fires
    (the notifier's outbox fills in the figures: notifier/digests.py; flows/automations.py fires it)."""
    if span is None:
        return {}
    day = datetime.fromtimestamp(at / 1000, ZoneInfo(timezone)).date() - timedelta(days=1)
    return {"digest": span, "last": day.isoformat()}
