"""Revenue per organisation: orders and refunds folded into buckets and order records. Pure.

Facts, not messages, decide the figures, so duplicates and disorder cannot move them:
- an order is counted once, however many events say it was placed or paid. Its earliest
  placed-or-paid event decides when it was placed; its earliest paid event, by (time, id), decides
  when it was paid, for how much and with which items, whatever order the events arrive in;
- a refund's amount is the total refunded under its name so far; only an increase is counted,
  in the bucket of the event that reported it, and on its order's record.
Orders of two stores never share a key: order numbers count up per shop.

Versions: after a batch, the organisation's version is the number of events folded so far, and
everything the batch changed carries it. The state after N events does not depend on how the
events were batched, so a replay after a restart (batched differently) writes each key either a
value the read model already has, or a newer one with a higher version: never an older one over it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from zoneinfo import ZoneInfo

import orjson

from core.clock import utc_from_ms
from core.events import Event, Kind
from core.figures import DAY, HOUR, Bucket, Record
from flows.quota import QuotaWindow

# Every zone's offset is a whole number of quarter hours, so an instant's local day and UTC hour are
# those of its quarter-hour slot: computed once per slot, not per event.
_SLOT_MS = 15 * 60 * 1000


@lru_cache(maxsize=1 << 16)
def _slot(tz: str, slot: int) -> tuple[str, str]:
    utc = utc_from_ms(slot * _SLOT_MS)
    return utc.astimezone(ZoneInfo(tz)).date().isoformat(), utc.strftime("%Y-%m-%dT%H")


# Bucket key: (grain, start, store, currency); value: [gross, refunds, orders, paid_orders, items]
Key = tuple[str, str, str, str]
GROSS, REFUNDS, ORDERS, PAID, ITEMS = range(5)


@dataclass(slots=True)
class OrderFacts:
    store: str
    order: str
    placed: tuple[int, str] | None = None  # (time, event id) of the earliest placed-or-paid event
    placed_currency: str = ""
    paid: tuple[int, str] | None = None  # (time, event id) of the earliest paid event
    currency: str = ""
    amount: int = 0
    # [[product, qty, unit price, name], ...] as JSON bytes: one object to snapshot instead of ~100
    # per order (snapshots pickle every order each epoch), written into records as it is.
    items: bytes = b"[]"
    units: int = 0
    customer: str | None = None
    source: str = "web"
    refunds: dict[str, int] = field(default_factory=dict)  # refund name -> total so far
    cancelled: bool = False

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Snapshots pickle every order each epoch: a plain tuple of fields pickles several times faster.
        return (OrderFacts, tuple(getattr(self, f) for f in self.__slots__))

    def record_value(self) -> dict[str, object]:
        return {
            "store": self.store, "order": self.order, "customer": self.customer, "source": self.source,
            "placed": self.placed[0] if self.placed else None, "paid": self.paid[0] if self.paid else None,
            "currency": self.currency or self.placed_currency, "amount": self.amount,
            "refunded": sum(self.refunds.values()), "cancelled": self.cancelled,
            "items": orjson.Fragment(self.items),
        }


@dataclass(slots=True)
class RevenueLedger:
    org: str
    timezone: str
    plan_limit: int | None = None
    version: int = 0
    orders: dict[str, OrderFacts] = field(default_factory=dict)
    refunded: dict[str, int] = field(default_factory=dict)
    buckets: dict[Key, list[int]] = field(default_factory=dict)
    quota: QuotaWindow | None = None
    # What changed since the last flush; emitted once each, however often it changed in between.
    _touched: set[Key] = field(default_factory=set)
    _changed_orders: dict[str, OrderFacts] = field(default_factory=dict)
    _alerts: list[Record] = field(default_factory=list)

    def apply(self, event: Event) -> list[Bucket | Record]:
        """Folds one event in; returns the buckets and records it changed, each with a new version."""
        return self.apply_all([event])

    def apply_all(self, events: list[Event]) -> list[Bucket | Record]:
        """Folds a batch in; each bucket or record it changed is returned once, with its final value."""
        for event in events:
            self.version += 1
            self._fold(event)
        return self._flush()

    def _fold(self, event: Event) -> None:
        touched = self._touched
        order: OrderFacts | None = None
        if event.kind in (Kind.ORDER_PAID, Kind.ORDER_PLACED):
            facts = self._facts(event)
            newly_paid = event.kind is Kind.ORDER_PAID and facts.paid is None
            order = self._order(facts, event, touched)
            if newly_paid:
                self._quota(event.time)
        elif event.kind is Kind.ORDER_REFUNDED:
            order = self._refund(event, touched)
        elif event.kind is Kind.ORDER_CANCELLED and event.order:
            facts = self._facts(event)
            if not facts.cancelled:  # revenue moves only with refunds; the record says it was cancelled
                facts.cancelled, order = True, facts
        if order is not None:
            self._changed_orders[f"{order.store}:{order.order}"] = order

    def _flush(self) -> list[Bucket | Record]:
        out: list[Bucket | Record] = self._alerts
        for key in sorted(self._touched):
            out.append(Bucket(self.org, self.version, key[0], key[1], key[2], key[3], *self.buckets[key]))
        for key, order in self._changed_orders.items():
            when = order.paid or order.placed
            day = self._day(when[0]) if when else ""
            out.append(Record(self.org, self.version, "order", key, day, order.record_value()))
        self._touched, self._changed_orders, self._alerts = set(), {}, []
        return out

    def _quota(self, time_ms: int) -> None:
        if self.quota is None:
            self.quota = QuotaWindow(self.plan_limit)
        for a in self.quota.paid(time_ms):
            value = {"percent": a.percent, "count": a.count, "limit": a.limit, "at": a.at}
            self._alerts.append(Record(self.org, self.version, "quota_alert", f"{a.percent}:{a.at}", self._day(a.at), value))

    def _day(self, time_ms: int) -> str:
        return _slot(self.timezone, time_ms // _SLOT_MS)[0]

    def _keys(self, store: str, time_ms: int, currency: str) -> tuple[Key, Key]:
        day, hour = _slot(self.timezone, time_ms // _SLOT_MS)
        return (DAY, day, store, currency), (HOUR, hour, store, currency)

    def _add(self, touched: set[Key], store: str, time_ms: int, currency: str, field_: int, delta: int) -> None:
        if delta == 0:
            return
        for key in self._keys(store, time_ms, currency):
            self.buckets.setdefault(key, [0, 0, 0, 0, 0])[field_] += delta
            touched.add(key)

    def _facts(self, e: Event) -> OrderFacts:
        order = e.order or e.id
        key = f"{e.store}\x1f{order}"
        o = self.orders.get(key)
        if o is None:
            o = self.orders[key] = OrderFacts(e.store, order)
        return o

    def _order(self, o: OrderFacts, e: Event, touched: set[Key]) -> OrderFacts | None:
        seen = (e.time, e.id)
        changed = False
        if o.placed is None or seen < o.placed:
            if o.placed is not None:
                self._add(touched, o.store, o.placed[0], o.placed_currency, ORDERS, -1)
            o.placed, o.placed_currency = seen, e.currency
            self._add(touched, o.store, e.time, e.currency, ORDERS, 1)
            changed = True
        if o.customer is None and e.customer:
            o.customer, changed = e.customer, True
        if e.kind is not Kind.ORDER_PAID or (o.paid is not None and o.paid <= seen):
            return o if changed else None
        if o.paid is not None:  # an earlier report of the same payment: move it there
            for f, v in ((GROSS, o.amount), (PAID, 1), (ITEMS, o.units)):
                self._add(touched, o.store, o.paid[0], o.currency, f, -v)
        o.paid, o.currency, o.amount = seen, e.currency, e.amount
        # copied: orjson returns its whole work buffer, kilobytes for a few items
        o.items = bytes(memoryview(orjson.dumps([(i.product, i.qty, i.unit_price, i.name) for i in e.items])))
        o.units = sum([i.qty for i in e.items])
        o.customer = e.customer or o.customer
        o.source = str(e.source)
        for f, v in ((GROSS, o.amount), (PAID, 1), (ITEMS, o.units)):
            self._add(touched, o.store, e.time, o.currency, f, v)
        return o

    def _refund(self, e: Event, touched: set[Key]) -> OrderFacts | None:
        name = e.refund or e.id
        key = f"{e.store}\x1f{name}"
        increase = e.amount - self.refunded.get(key, 0)
        if increase <= 0:
            return None  # a redelivery, or an older report of a refund we know more of
        self.refunded[key] = e.amount
        self._add(touched, e.store, e.time, e.currency, REFUNDS, increase)
        if not e.order:
            return None  # a refund with no order (a credit note): figures only
        o = self._facts(e)
        o.refunds[name] = e.amount
        return o
