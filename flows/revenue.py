"""Revenue per organisation: paid orders and refunds folded into day totals. Pure.

Facts, not messages, decide the figures, so duplicates and disorder cannot move them:
- an order is counted once, however many events say it was paid (Stripe sends a checkout session,
  a payment intent and a charge for one payment). The earliest of those events, by (time, id),
  decides the order's day and amount, whatever order they arrive in;
- a refund's amount is the total refunded under its name so far; only an increase is counted,
  on the day of the event that reported it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from core.clock import local_day
from core.events import Event, Kind
from core.figures import DayTotals


@dataclass(slots=True)
class PaidOrder:
    time: int
    event_id: str
    store: str
    currency: str
    amount: int


@dataclass(slots=True)
class RevenueLedger:
    org: str
    timezone: str
    version: int = 0
    orders: dict[str, PaidOrder] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    # (store, day, currency) -> [gross, refunds, paid_orders]
    days: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)

    def apply(self, event: Event) -> list[DayTotals]:
        """Folds one event in; returns the day totals it changed, each with a new version."""
        if event.kind is Kind.ORDER_PAID:
            touched = self._paid(event)
        elif event.kind is Kind.ORDER_REFUNDED:
            touched = self._refunded(event)
        else:
            return []
        out = []
        for key in touched:
            self.version += 1
            gross, refunds, orders = self.days[key]
            out.append(DayTotals(self.org, self.version, key[0], key[1], key[2], gross, refunds, orders))
        return out

    def _day_key(self, store: str, time_ms: int, currency: str) -> tuple[str, str, str]:
        return (store, local_day(time_ms, ZoneInfo(self.timezone)).isoformat(), currency)

    def _add(self, key: tuple[str, str, str], gross: int, refunds: int, orders: int) -> None:
        totals = self.days.setdefault(key, [0, 0, 0])
        totals[0] += gross
        totals[1] += refunds
        totals[2] += orders

    def _paid(self, e: Event) -> list[tuple[str, str, str]]:
        order_key = f"{e.store}\x1f{e.order or e.id}"  # order ids count up per shop: two shops share them
        new = PaidOrder(e.time, e.id, e.store, e.currency, e.amount)
        old = self.orders.get(order_key)
        if old is not None and (old.time, old.event_id) <= (new.time, new.event_id):
            return []  # the same order, already counted from an earlier fact
        self.orders[order_key] = new
        new_key = self._day_key(new.store, new.time, new.currency)
        if old is None:
            self._add(new_key, new.amount, 0, 1)
            return [new_key]
        old_key = self._day_key(old.store, old.time, old.currency)
        self._add(old_key, -old.amount, 0, -1)
        self._add(new_key, new.amount, 0, 1)
        if old_key == new_key and old.amount == new.amount:
            return []
        return [old_key] if old_key == new_key else [old_key, new_key]

    def _refunded(self, e: Event) -> list[tuple[str, str, str]]:
        refund_key = f"{e.store}\x1f{e.refund or e.id}"
        increase = e.amount - self.refunded.get(refund_key, 0)
        if increase <= 0:
            return []  # a redelivery, or an older report of a refund we know more of
        self.refunded[refund_key] = e.amount
        key = self._day_key(e.store, e.time, e.currency)
        self._add(key, 0, increase, 0)
        return [key]
