"""Revenue figures: the day totals the dataflow keeps, and the periods the read side sums them into.

A `DayTotals` is an absolute value (never an increment) with the organisation's version at which it
was produced, so writing it twice, or out of order, leaves the read model right.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import orjson

from core.money import Money, divide_half_up

PERIODS = ("today", "7d", "30d", "all")


@dataclass(frozen=True, slots=True)
class DayTotals:
    org: str
    version: int  # the organisation's change version that produced this value
    store: str
    day: str  # ISO date in the organisation's time zone
    currency: str
    gross: int  # minor units: value of orders paid that day
    refunds: int  # minor units refunded that day (whatever day the order was paid)
    paid_orders: int

    @property
    def key(self) -> str:
        return f"{self.store}|{self.day}|{self.currency}"

    def to_json(self) -> bytes:
        return orjson.dumps(self)


def day_totals_from_json(data: bytes | str) -> DayTotals:
    return DayTotals(**orjson.loads(data))


class MissingRate(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Figures:
    gross_revenue: Money
    refunds: Money
    net_revenue: Money
    paid_orders: int
    aov: Money  # gross revenue / paid orders, rounded half up; 0 with no orders

    def to_json(self) -> dict[str, object]:
        return {
            "gross_revenue": self.gross_revenue.to_json(),
            "refunds": self.refunds.to_json(),
            "net_revenue": self.net_revenue.to_json(),
            "paid_orders": self.paid_orders,
            "aov": self.aov.to_json(),
        }


def period_start(period: str, today: date) -> date | None:
    """First day of a period ending today (inclusive); None for all time."""
    if period == "today":
        return today
    if period == "7d":
        return today - timedelta(days=6)
    if period == "30d":
        return today - timedelta(days=29)
    if period == "all":
        return None
    raise ValueError(f"unknown period {period!r}: use one of {', '.join(PERIODS)}")


def compute_figures(
    days: Iterable[DayTotals], *, period: str, now: datetime, tz: ZoneInfo, currency: str, store: str | None = None
) -> Figures:
    """Sums day totals over a period (cut in `tz`, ending on the day `now` falls on there).

    Amounts in another currency than `currency` cannot be added without a rate: that is an error
    naming the currency and day, never a silent 1:1.
    """
    today = now.astimezone(tz).date()
    start = period_start(period, today)
    # "all" has no end either: an event stamped ahead of our clock still counts in all time.
    first, last = (start.isoformat(), today.isoformat()) if start else ("", "\uffff")
    gross = refunds = orders = 0
    for d in days:
        if store is not None and d.store != store:
            continue
        if d.day > last or d.day < first:
            continue
        if d.currency != currency:
            raise MissingRate(f"no exchange rate from {d.currency} to {currency} for {d.day}")
        gross += d.gross
        refunds += d.refunds
        orders += d.paid_orders
    return Figures(
        Money(gross, currency),
        Money(refunds, currency),
        Money(gross - refunds, currency),
        orders,
        Money(divide_half_up(gross, orders), currency),
    )


def all_periods(
    days: list[DayTotals], *, now: datetime, tz: ZoneInfo, currency: str, stores: Iterable[str]
) -> dict[str, object]:
    """Every period for the whole organisation and for each store: what a dashboard shows."""
    out: dict[str, object] = {
        "total": {p: compute_figures(days, period=p, now=now, tz=tz, currency=currency).to_json() for p in PERIODS}
    }
    out["stores"] = {
        s: {p: compute_figures(days, period=p, now=now, tz=tz, currency=currency, store=s).to_json() for p in PERIODS}
        for s in stores
    }
    return out
