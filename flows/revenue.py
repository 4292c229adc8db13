"""Revenue per organisation: orders and refunds folded into buckets and order records. Pure.

Facts, not messages, decide the figures, so duplicates and disorder cannot move them (a copy of an
event that the log appended again after its dedupe window, state/log.py, included):
- an order is counted once, however many events say it was placed or paid. Its earliest
  placed-or-paid event decides when it was placed; its earliest paid event, by (time, id), decides
  when it was paid, for how much and with which items, whatever order the events arrive in;
- a refund's amount is the total refunded under its name so far; only an increase is counted,
  in the bucket of the event that reported it, and on its order's record.
Orders of two stores never share a key: order numbers count up per shop.

Versions: after a batch, the ledger's version is the number of events folded so far, and
everything the batch changed carries it (flows/organisation.py folds and flushes with a version
of its own, which counts the same events). The state after N events does not depend on how the events were batched, so
a replay after a restart (batched differently) writes each key either a value the read model
already has, or a newer one with a higher version: never an older one over it.

Bounded state (the refund horizon H, `horizon_ms`, 366 days by default; W is the watermark the
caller passes with each event):
- an order's facts are held while W <= its latest event + H (placed, paid, refund or cancel) and
  forgotten after. So when they are forgotten, every event they were made of is too late: a copy
  of one, or a later report of a payment or a refund's running total, finds them while it counts;
- a refund without an order (a credit note) is held while W <= its latest report + H;
- day and hour buckets are held while they can still change: until W - H is past their end (swept
  once a week of W's progress, so up to a week longer).
An order, cancel or refund event older than W - H is too late: it is not counted (`too_late`, per store in `late`),
since the buckets it would change are no longer held. A refund naming an order whose facts are not held
(its latest event more than H before W, or not seen yet) is counted on its own day as usual and
counted in `unmatched_refunds`; its order's record is not rewritten from what is left of it (a
record is only emitted for an order with a placed or paid event). A running refund total reported
again after its order was forgotten counts in full: the horizon is the price of bounded state.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from functools import lru_cache
from operator import attrgetter
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from msgspec import Raw

from core.changes import DAY, HOUR, Bucket, Change, Record
from core.clock import utc_from_ms
from core.events import Event, Kind, buyer_of
from core.records import Order, QuotaAlert, RecordKind
from flows.book import DAY_MS, HOUR_MS, TooLate
from flows.quota import QuotaWindow

DEFAULT_HORIZON_MS = 366 * DAY_MS
OLD_RECOVERY_STATE = (
    "the dataflow's recovery state was written by an older storepulse: stop storepulse, delete "
    "<data-dir>/recovery and the read model (readmodel.sqlite3, or the sp:rm:* keys on Redis), and start "
    "again; the dataflow replays the log")

# Every zone's offset is a whole number of quarter hours, so an instant's local day and UTC hour are
# those of its quarter-hour slot: computed once per slot, not per event.
_SLOT_MS = 15 * 60 * 1000


@lru_cache(maxsize=1 << 16)
def _slot(tz: str, slot: int) -> tuple[str, str]:
    utc = utc_from_ms(slot * _SLOT_MS)
    return utc.astimezone(ZoneInfo(tz)).date().isoformat(), utc.strftime("%Y-%m-%dT%H")


@lru_cache(maxsize=64)
def _oldest_buckets(horizon_ms: int, watermark_ms: int) -> tuple[tuple[str, str], tuple[str, str]]:
    """(day, hour): buckets sorting before these (grain, start) can no longer change at this
    watermark. A day is kept a day longer than needed: local days are offset from UTC by up to 14 h."""
    edge = watermark_ms - horizon_ms
    return (DAY, utc_from_ms(edge - DAY_MS).date().isoformat()), (HOUR, utc_from_ms(edge - HOUR_MS).strftime("%Y-%m-%dT%H"))


# Bucket key: (grain, start, store, currency); value: [gross, refunds, orders, paid_orders, items]
Key = tuple[str, str, str, str]
GROSS, REFUNDS, ORDERS, PAID, ITEMS = range(5)
LEDGER_KINDS = frozenset({Kind.ORDER_PAID, Kind.ORDER_PLACED, Kind.ORDER_REFUNDED, Kind.ORDER_CANCELLED})
_LINE = attrgetter("product", "qty", "unit_price", "name")  # an item as its record shows it
_QTY = attrgetter("qty")
# The tables that flows/snapshot_files.py keeps on disk: everything else of a ledger is small.
TABLES = ("orders", "refunds", "buckets")


@dataclass(slots=True)
class OrderFacts:
    store: str
    order: str
    placed: tuple[int, str] | None = None  # (time, event id) of the earliest placed-or-paid event
    placed_currency: str = ""
    paid: tuple[int, str] | None = None  # (time, event id) of the earliest paid event
    currency: str = ""
    amount: int = 0
    # [[product, qty, unit price, name], ...] as JSON bytes: one object to keep instead of ~100 per
    # order, written into records as it is.
    items: bytes = b"[]"
    units: int = 0
    customer: str | None = None
    source: str = "web"
    refunds: dict[str, int] = field(default_factory=dict)  # refund name -> total so far
    cancelled: bool = False
    noted: int = 0  # the latest time of any event folded into it (placed, paid, refund, cancel)
    buyer: str = ""  # the buyer's name (else e-mail) as typed at the checkout: taken as `customer` is

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Segments pickle orders by the thousand: as a plain tuple of fields, 100,000 orders pickle in
        # 418 ms instead of 722 ms (1.7x, best of 5 on this machine).
        return (OrderFacts, (self.store, self.order, self.placed, self.placed_currency, self.paid, self.currency,
                             self.amount, self.items, self.units, self.customer, self.source, self.refunds,
                             self.cancelled, self.noted, self.buyer))

    @property
    def anchor(self) -> int:
        """The time its facts are held from: its latest event (see the module docstring). (A state
        saved before `noted` counted placed and paid events has it 0 on a placed order.)"""
        return max(self.placed[0], self.noted) if self.placed is not None else self.noted

    def record_value(self) -> Order:
        return Order(
            store=self.store, order=self.order, customer=self.customer, source=self.source,
            placed=self.placed[0] if self.placed else None, paid=self.paid[0] if self.paid else None,
            currency=self.currency or self.placed_currency, amount=self.amount,
            refunded=sum(self.refunds.values()), cancelled=self.cancelled, items=Raw(self.items), buyer=self.buyer,
        )


@dataclass(slots=True)
class RevenueLedger:
    org: str
    timezone: str
    plan_limit: int | None = None
    horizon_ms: int = DEFAULT_HORIZON_MS
    version: int = 0  # events folded so far
    orders: dict[str, OrderFacts] = field(default_factory=dict)  # "store\x1forder" -> facts
    refunds: dict[str, tuple[int, int]] = field(default_factory=dict)  # "store\x1fname" -> (total, latest report)
    buckets: dict[Key, list[int]] = field(default_factory=dict)
    quota: QuotaWindow | None = None
    watermark: int | None = None
    late: TooLate = field(default_factory=TooLate)
    unmatched_refunds: int = 0
    # What changed since the last flush; emitted once each, however often it changed in between.
    _touched: set[Key] = field(default_factory=set)
    _changed_orders: dict[str, OrderFacts] = field(default_factory=dict)
    _alerts: list[Record[QuotaAlert]] = field(default_factory=list)
    # What changed since the last `take_changes` (for segments), by table.
    _dirty: dict[str, set[object]] = field(default_factory=lambda: {t: set() for t in TABLES})
    # Forgetting: day -> keys of orders ("o") and credit notes ("r") that may be forgotten after it
    # (checked when it comes: an anchor may have moved), and a heap of those days.
    _expiry: dict[int, list[tuple[str, str]]] = field(default_factory=dict)
    _expiry_days: list[int] = field(default_factory=list)
    _swept_day: int = -(2**62)
    _swept_week: int = -(2**62)

    def __setstate__(self, state: tuple[None, dict[str, object]]) -> None:
        if "refunded" in state[1]:  # the one-key state of storepulse before segments
            raise RuntimeError(OLD_RECOVERY_STATE)
        for name, value in state[1].items():
            if name == "too_late":  # a snapshot from before refusals were kept per store
                name, value = "late", TooLate(value)  # type: ignore[arg-type]
            setattr(self, name, value)

    # --- input -----------------------------------------------------------------------------------

    def apply(self, event: Event) -> list[Change]:
        """Folds one event in; returns the buckets and records it changed, each with a new version."""
        return self.apply_all([event])

    def apply_all(self, events: list[Event]) -> list[Change]:
        """Folds a batch in; each bucket or record it changed is returned once, with its final value
        and the version: the number of events folded so far."""
        for event in events:
            self.fold(event, self.watermark)
        return self.flush(self.version)

    def fold(self, event: Event, watermark_ms: int | None) -> None:
        """Folds one event in at watermark `watermark_ms` (None: no watermark yet); `flush` emits."""
        self.version += 1
        if watermark_ms is not None and (self.watermark is None or watermark_ms > self.watermark):
            self.watermark = watermark_ms
        if event.kind not in LEDGER_KINDS:
            return
        if self.watermark is not None and event.time < self.watermark - self.horizon_ms:
            self.late.refuse(event)
            return
        touched = self._touched
        order: OrderFacts | None = None
        if event.kind is Kind.ORDER_PAID or event.kind is Kind.ORDER_PLACED:
            facts = self._facts(event)
            newly_paid = event.kind is Kind.ORDER_PAID and facts.paid is None
            order = self._order(facts, event, touched)
            if newly_paid:
                self._quota(event.time)
        elif event.kind is Kind.ORDER_REFUNDED:
            order = self._refund(event, touched)
        elif event.order:  # cancelled
            facts = self._facts(event)
            self._note(facts, event.time)
            if not facts.cancelled:  # revenue moves only with refunds; the record says it was cancelled
                facts.cancelled, order = True, facts
        if order is not None:
            self._dirty["orders"].add(f"{order.store}\x1f{order.order}")
            if order.placed is not None:
                self._changed_orders[f"{order.store}:{order.order}"] = order

    def advance(self, watermark_ms: int, version: int) -> list[Change]:
        """Moves the watermark with no event (the wall clock): forgets what it puts behind the horizon."""
        if self.watermark is None or watermark_ms > self.watermark:
            self.watermark = watermark_ms
        return self.flush(version)

    def flush(self, version: int) -> list[Change]:
        """What changed since the last flush, each once with its final value and `version`."""
        out: list[Change] = [Record(a.org, version, a.kind, a.key, a.day, a.value) for a in self._alerts]
        for key in sorted(self._touched):
            out.append(Bucket(self.org, version, key[0], key[1], key[2], key[3], *self.buckets[key]))
        for order_key, order in self._changed_orders.items():
            when = order.paid or order.placed
            day = self._day(when[0]) if when else ""
            out.append(Record(self.org, version, RecordKind.ORDER, order_key, day, order.record_value()))
        self._dirty["buckets"].update(self._touched)
        self._touched, self._changed_orders, self._alerts = set(), {}, []
        if self.watermark is not None:
            self._forget(self.watermark)
        return out

    # --- state held ------------------------------------------------------------------------------

    @property
    def too_late(self) -> int:
        return self.late.count

    def held(self) -> dict[str, int]:
        return {"orders": len(self.orders), "refunds": len(self.refunds), "buckets": len(self.buckets),
                "quota_times": len(self.quota.times) if self.quota else 0}

    def table_names(self) -> tuple[str, ...]:
        return TABLES

    def held_entries(self) -> int:
        return len(self.orders) + len(self.refunds) + len(self.buckets)

    def tables(self) -> dict[str, dict[Any, Any]]:
        """The large tables, as they are (not copies)."""
        return {"orders": self.orders, "refunds": self.refunds, "buckets": self.buckets}

    def take_changes(self) -> dict[str, dict[Any, Any]]:
        """The entries of the large tables changed since the last call (forgotten ones left out)."""
        out: dict[str, dict[Any, Any]] = {}
        for name, table in self.tables().items():
            dirty = self._dirty[name]
            out[name] = {k: table[k] for k in dirty if k in table}
            dirty.clear()
        return out

    def keeps(self, table: str, key: Any, value: Any, watermark_ms: int | None) -> bool:
        """Whether an entry of a large table is still held at a watermark (the forgetting rules):
        `key` and `value` are an entry of the table named (an order, a refund or a bucket)."""
        if watermark_ms is None:
            return True
        kept: bool
        if table == "orders":
            kept = value.anchor + self.horizon_ms >= watermark_ms
        elif table == "refunds":
            kept = value[1] + self.horizon_ms >= watermark_ms
        else:
            kept = key >= _oldest_buckets(self.horizon_ms, watermark_ms)[key[0] == HOUR]
        return kept

    def without_tables(self) -> RevenueLedger:
        """A shallow copy without the large tables and the work lists: what a snapshot pickles
        beside the segments."""
        small = RevenueLedger(self.org, self.timezone, self.plan_limit, self.horizon_ms, self.version,
                              quota=self.quota, watermark=self.watermark, late=self.late,
                              unmatched_refunds=self.unmatched_refunds)
        small._swept_day, small._swept_week = self._swept_day, self._swept_week
        return small

    def with_tables(self, tables: dict[str, dict[Any, Any]]) -> RevenueLedger:
        """Puts restored tables back (after `without_tables`) and re-indexes them for forgetting."""
        self.orders, self.refunds, self.buckets = tables.get("orders", {}), tables.get("refunds", {}), tables.get("buckets", {})
        self._expiry, self._expiry_days = {}, []
        for k, o in self.orders.items():
            self._expire("o", k, o.anchor)
        for k, r in self.refunds.items():
            self._expire("r", k, r[1])
        self._swept_day = self._swept_week = -(2**62)
        return self

    # --- internals -------------------------------------------------------------------------------

    def _quota(self, time_ms: int) -> None:
        if self.quota is None:
            self.quota = QuotaWindow(self.plan_limit)
        for a in self.quota.paid(time_ms):
            self._alerts.append(Record(self.org, 0, RecordKind.QUOTA_ALERT, f"{a.percent}:{a.at}", self._day(a.at), a))

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

    def _add_paid(self, touched: set[Key], o: OrderFacts, time_ms: int, sign: int, placed: int) -> None:
        """Adds (sign 1) or takes out (-1) a paid order's gross, count and items, and `placed` orders,
        in the buckets of `time_ms`: one pass over the day and hour buckets."""
        buckets = self.buckets
        for key in self._keys(o.store, time_ms, o.currency):
            b = buckets.get(key)
            if b is None:
                b = buckets[key] = [0, 0, 0, 0, 0]
            b[GROSS] += sign * o.amount
            b[ORDERS] += placed
            b[PAID] += sign
            b[ITEMS] += sign * o.units
            touched.add(key)

    def _held(self, key: str) -> OrderFacts | None:
        """An order's facts, if still held at the current watermark (they may not be swept yet)."""
        o = self.orders.get(key)
        return o if o is None or self.keeps("orders", key, o, self.watermark) else None

    def _facts(self, e: Event) -> OrderFacts:
        order = e.order or e.id
        key = f"{e.store}\x1f{order}"
        o = self._held(key)
        if o is None:
            o = self.orders[key] = OrderFacts(e.store, order)
        return o

    def _order(self, o: OrderFacts, e: Event, touched: set[Key]) -> OrderFacts | None:
        self._note(o, e.time)
        seen = (e.time, e.id)
        changed = placed_here = False
        if o.placed is None or seen < o.placed:
            if o.placed is not None:
                self._add(touched, o.store, o.placed[0], o.placed_currency, ORDERS, -1)
            o.placed, o.placed_currency = seen, e.currency
            changed = placed_here = True
        if o.customer is None and e.customer:
            o.customer, changed = e.customer, True
        typed = buyer_of(e)
        if not o.buyer and typed:
            o.buyer, changed = typed, True
        if e.kind is not Kind.ORDER_PAID or (o.paid is not None and o.paid <= seen):
            if placed_here:
                self._add(touched, o.store, e.time, e.currency, ORDERS, 1)
            return o if changed else None
        if o.paid is not None:  # an earlier report of the same payment: move it there
            self._add_paid(touched, o, o.paid[0], -1, 0)
        o.paid, o.currency, o.amount = seen, e.currency, e.amount
        # copied: orjson returns its whole work buffer, kilobytes for a few items
        o.items = bytes(memoryview(orjson.dumps(list(map(_LINE, e.items)))))
        o.units = sum(map(_QTY, e.items))
        o.customer = e.customer or o.customer
        o.buyer = typed or o.buyer
        o.source = str(e.source)
        self._add_paid(touched, o, e.time, 1, 1 if placed_here else 0)
        return o

    def _refund(self, e: Event, touched: set[Key]) -> OrderFacts | None:
        name = e.refund or e.id
        if not e.order:  # a refund with no order (a credit note): figures only
            key = f"{e.store}\x1f{name}"
            known = self.refunds.get(key)
            if known is not None and not self.keeps("refunds", key, known, self.watermark):
                known = None  # forgotten, not swept yet
            increase = e.amount - (known[0] if known else 0)
            if increase <= 0:
                return None  # a redelivery, or an older report of a refund we know more of
            self.refunds[key] = (e.amount, max(e.time, known[1] if known else e.time))
            self._dirty["refunds"].add(key)
            self._expire("r", key, self.refunds[key][1])
            self._add(touched, e.store, e.time, e.currency, REFUNDS, increase)
            return None
        o = self._facts(e)
        self._note(o, e.time)
        increase = e.amount - o.refunds.get(name, 0)
        if increase <= 0:
            return None
        if o.placed is None:
            self.unmatched_refunds += 1
        o.refunds[name] = e.amount
        self._add(touched, e.store, e.time, e.currency, REFUNDS, increase)
        return o

    def _expire(self, table: str, key: str, anchor_ms: int) -> None:
        """Files an entry to be looked at once the watermark is a horizon past its anchor's day."""
        day = anchor_ms // DAY_MS
        keys = self._expiry.get(day)
        if keys is None:
            keys = self._expiry[day] = []
            heapq.heappush(self._expiry_days, day)
        keys.append((table, key))

    def _note(self, o: OrderFacts, time_ms: int) -> None:
        """An event of the order at `time_ms`: its facts are held until W passes its latest + H."""
        anchor = o.anchor
        if time_ms > anchor:
            o.noted = time_ms
            key = f"{o.store}\x1f{o.order}"
            self._dirty["orders"].add(key)  # segments must keep the new anchor even if nothing else moved
            if time_ms // DAY_MS != anchor // DAY_MS:  # filed under its day already otherwise
                self._expire("o", key, time_ms)

    def _forget(self, watermark_ms: int) -> None:
        """Drops what the watermark has put behind the horizon (values are unchanged: it was already
        invisible to `_held`); at most once per day of watermark progress."""
        day = (watermark_ms - self.horizon_ms) // DAY_MS
        if day <= self._swept_day:
            return
        self._swept_day = day
        while self._expiry_days and self._expiry_days[0] < day:
            for table, key in self._expiry.pop(heapq.heappop(self._expiry_days)):
                if table == "o":
                    o = self.orders.get(key)
                    if o is not None and not self.keeps("orders", key, o, watermark_ms):
                        del self.orders[key]
                else:
                    r = self.refunds.get(key)
                    if r is not None and not self.keeps("refunds", key, r, watermark_ms):
                        del self.refunds[key]
        if day // 7 > self._swept_week:  # buckets are few: looked over once per week of progress
            self._swept_week = day // 7
            for k in [k for k in self.buckets if not self.keeps("buckets", k, None, watermark_ms)]:
                del self.buckets[k]
