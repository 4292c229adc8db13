"""Revenue per organisation: orders and refunds folded into day and hour buckets. Pure.

Facts, not messages, decide the figures, so duplicates and disorder cannot move them:
- an order is counted once, however many events say it was placed or paid. Its earliest
  placed-or-paid event decides when it was placed; its earliest paid event, by (time, id), decides
  when it was paid and for how much, whatever order the events arrive in;
- a refund's amount is the total refunded under its name so far; only an increase is counted,
  in the bucket of the event that reported it.
Orders of two stores never share a key: order numbers count up per shop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timezone
from zoneinfo import ZoneInfo

from core.clock import utc_from_ms
from core.events import Event, Kind
from core.figures import DAY, HOUR, Bucket

# Bucket key: (grain, start, store, currency); value: [gross, refunds, orders, paid_orders, items]
Key = tuple[str, str, str, str]
GROSS, REFUNDS, ORDERS, PAID, ITEMS = range(5)


@dataclass(slots=True)
class OrderFacts:
    store: str
    placed: tuple[int, str]  # (time, event id) of the earliest placed-or-paid event
    placed_currency: str
    paid: tuple[int, str] | None = None  # (time, event id) of the earliest paid event
    currency: str = ""
    amount: int = 0
    items: int = 0


@dataclass(slots=True)
class RevenueLedger:
    org: str
    timezone: str
    version: int = 0
    orders: dict[str, OrderFacts] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    buckets: dict[Key, list[int]] = field(default_factory=dict)

    def apply(self, event: Event) -> list[Bucket]:
        """Folds one event in; returns the buckets it changed, each with a new version."""
        touched: set[Key] = set()
        if event.kind in (Kind.ORDER_PAID, Kind.ORDER_PLACED):
            self._order(event, touched)
        elif event.kind is Kind.ORDER_REFUNDED:
            self._refund(event, touched)
        out = []
        for key in sorted(touched):
            self.version += 1
            v = self.buckets[key]
            out.append(Bucket(self.org, self.version, key[0], key[1], key[2], key[3], *v))
        return out

    def _keys(self, store: str, time_ms: int, currency: str) -> tuple[Key, Key]:
        utc = utc_from_ms(time_ms)
        day = utc.astimezone(ZoneInfo(self.timezone)).date().isoformat()
        return (DAY, day, store, currency), (HOUR, utc.astimezone(timezone.utc).strftime("%Y-%m-%dT%H"), store, currency)

    def _add(self, touched: set[Key], store: str, time_ms: int, currency: str, field_: int, delta: int) -> None:
        if delta == 0:
            return
        for key in self._keys(store, time_ms, currency):
            self.buckets.setdefault(key, [0, 0, 0, 0, 0])[field_] += delta
            touched.add(key)

    def _order(self, e: Event, touched: set[Key]) -> None:
        key = f"{e.store}\x1f{e.order or e.id}"
        seen = (e.time, e.id)
        o = self.orders.get(key)
        if o is None:
            o = self.orders[key] = OrderFacts(e.store, seen, e.currency)
            self._add(touched, o.store, e.time, e.currency, ORDERS, 1)
        elif seen < o.placed:
            self._add(touched, o.store, o.placed[0], o.placed_currency, ORDERS, -1)
            o.placed, o.placed_currency = seen, e.currency
            self._add(touched, o.store, e.time, e.currency, ORDERS, 1)
        if e.kind is not Kind.ORDER_PAID or (o.paid is not None and o.paid <= seen):
            return
        if o.paid is not None:  # an earlier report of the same payment: move it there
            for f, v in ((GROSS, o.amount), (PAID, 1), (ITEMS, o.items)):
                self._add(touched, o.store, o.paid[0], o.currency, f, -v)
        o.paid, o.currency, o.amount = seen, e.currency, e.amount
        o.items = sum(i.qty for i in e.items)
        for f, v in ((GROSS, o.amount), (PAID, 1), (ITEMS, o.items)):
            self._add(touched, o.store, e.time, o.currency, f, v)

    def _refund(self, e: Event, touched: set[Key]) -> None:
        key = f"{e.store}\x1f{e.refund or e.id}"
        increase = e.amount - self.refunded.get(key, 0)
        if increase <= 0:
            return  # a redelivery, or an older report of a refund we know more of
        self.refunded[key] = e.amount
        self._add(touched, e.store, e.time, e.currency, REFUNDS, increase)
