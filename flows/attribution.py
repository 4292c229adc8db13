"""Revenue attributed to e-mail: each paid order to the last campaign touch within 7 days. Pure.

- A touch is an `email.engaged` event (open or click) with a `campaign` (campaign or automation id).
- An order is the earliest `order.paid` event, by (time, id), of its (`store`, `order`) (an event
  without `order` is its own order): that event gives the order's time, day, amount, currency and
  person. The person is "c:<customer>", else "v:<visitor>", across the organisation's stores (the
  e-mail platform is usually a connection of its own); an order with neither is never attributed.
- The order is attributed to the campaign of the person's latest touch by (time, id) whose time is
  in [order time - 7 days, order time]; with none, it is not attributed. Last touch wins.

Records (absolute, each with a new organisation version):
- "attribution", key "<store>|<day>|<campaign>|<currency>", day = the order's local day:
  {orders, revenue} of the orders of that store and day attributed to the campaign;
- "order_attribution", key "<store>:<order>" (the key of the "order" record), day = the order's day:
  {campaign, touch_time, touch} for an attributed order, and again (campaign None) if it loses it.

State bound (W = watermark, from the caller; `keep` = 7 days by default): an order is held until
W - keep passes its latest paid report (so every report of a forgotten order, a copy appended again
after the log's dedupe window included, is too late), and decided once W - keep passes its time: a
touch no longer moves it. A touch is held until W - keep - 7 days passes it; an order older than
W - keep, or a touch older than W - keep - 7 days, is too late and ignored (`too_late`, per store in
`late`). The paid events of one order are expected within `keep` of each other. Sums of a day are
dropped once no order of that day can still arrive (the day ended before W - keep).
"""

from __future__ import annotations

import heapq
from bisect import insort
from dataclasses import dataclass
from typing import Any

from core.changes import Record
from core.events import Event, Kind
from core.records import Attribution as Attributed
from core.records import OrderAttribution, RecordKind, Value
from flows.book import DAY_MS, DEFAULT_KEEP_MS, Days, TooLate, Version

WINDOW_MS = 7 * DAY_MS
ORDERS, TOUCHES = "attribution_orders", "attribution_touches"  # its tables in the snapshot files
TABLES = (ORDERS, TOUCHES)

Touch = tuple[int, str, str, str]  # (time, id, campaign, "open"/"click")


@dataclass(slots=True)
class Order:
    store: str
    order: str
    time: int
    id: str
    day: str
    amount: int
    currency: str
    person: str | None
    touch: Touch | None = None
    latest: int = 0  # the time of its latest paid report, when later than `time` (0: none later)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        # Snapshots pickle a week of orders each epoch: a plain tuple pickles faster (1.7x for the
        # ledger's OrderFacts, flows/revenue.py).
        return (Order, (self.store, self.order, self.time, self.id, self.day, self.amount, self.currency, self.person,
                        self.touch, self.latest))

    @property
    def held_until(self) -> int:
        """Held while W - keep has not passed this: then a copy of any of its reports is too late."""
        return max(self.time, self.latest)


def person_of(e: Event) -> str | None:
    return f"c:{e.customer}" if e.customer else f"v:{e.visitor}" if e.visitor else None


class Attribution:
    """E-mail attribution of one organisation: `apply(event)`, `advance(watermark_ms)`."""

    def __init__(self, org: str, timezone: str, keep_ms: int = DEFAULT_KEEP_MS, version: Version | None = None) -> None:
        self.org = org
        self.days = Days(timezone)
        self.keep = keep_ms
        self.version = version or Version()
        self.watermark: int | None = None
        self.late = TooLate()
        self.orders: dict[tuple[str, str], Order] = {}
        self.by_person: dict[str, set[tuple[str, str]]] = {}
        self.touches: dict[str, list[Touch]] = {}  # person -> touches sorted by (time, id)
        self.sums: dict[tuple[str, str, str, str], list[int]] = {}  # (store, day, campaign, currency) -> [orders, revenue]
        self._orders_by_time: list[tuple[int, str, str]] = []
        self._touches_by_time: list[tuple[int, str]] = []
        self._sums_by_end: list[tuple[int, str, str, str, str]] = []
        # what changed since the last snapshot (flows/tabled.py): a week of orders and touches were
        # pickled whole into every epoch's snapshot (2.2 MB an epoch at 2,000 orders/s)
        self._dirty_orders: set[tuple[str, str]] = set()
        self._dirty_touches: set[str] = set()

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if "_dirty_orders" not in state:  # pickled whole by an older storepulse: the next snapshot writes all
            self._dirty_orders, self._dirty_touches = set(self.orders), set(self.touches)

    # --- the large tables, for snapshot files (flows/snapshots.py) -----------------------------------

    def table_names(self) -> tuple[str, ...]:
        return TABLES

    def tables(self) -> dict[str, dict[Any, Any]]:
        return {ORDERS: dict(self.orders), TOUCHES: dict(self.touches)}

    def held_entries(self) -> int:
        return len(self.orders) + len(self.touches)

    def take_changes(self) -> dict[str, dict[Any, Any]]:
        """The orders and persons' touches changed since the last call (None: dropped)."""
        out: dict[str, dict[Any, Any]] = {ORDERS: {k: self.orders.get(k) for k in self._dirty_orders},
               TOUCHES: {p: self.touches.get(p) for p in self._dirty_touches}}
        self._dirty_orders, self._dirty_touches = set(), set()
        return out

    def without_tables(self) -> Attribution:
        small = Attribution.__new__(Attribution)
        small.__dict__.update(self.__dict__)
        small.orders, small.by_person, small.touches = {}, {}, {}
        small._orders_by_time, small._touches_by_time = [], []
        small._dirty_orders, small._dirty_touches = set(), set()
        return small

    def with_tables(self, tables: dict[str, dict[Any, Any]]) -> Attribution:
        """Puts restored tables back and rebuilds what is derived from them. With none at all the book
        stays as unpickled (an older snapshot held them in it)."""
        if not tables:
            return self
        self.orders = {k: o for k, o in tables.get(ORDERS, {}).items() if o is not None}
        self.touches = {p: t for p, t in tables.get(TOUCHES, {}).items() if t}
        self.by_person = {}
        for key, o in self.orders.items():
            if o.person is not None:
                self.by_person.setdefault(o.person, set()).add(key)
        # one heap entry per order at its held_until: `advance` forgets it once that is past, as it did
        # when the last of its entries (its time, then each later report's) came out
        self._orders_by_time = [(o.held_until, store, order) for (store, order), o in self.orders.items()]
        heapq.heapify(self._orders_by_time)
        self._touches_by_time = [(t[0], p) for p, ts in self.touches.items() for t in ts]
        heapq.heapify(self._touches_by_time)
        self._dirty_orders, self._dirty_touches = set(), set()
        return self

    def apply(self, event: Event) -> list[Record[Value]]:
        if event.kind is Kind.EMAIL_ENGAGED:
            return self._touch(event)
        if event.kind is Kind.ORDER_PAID:
            return self._order(event)
        return []

    def advance(self, watermark_ms: int) -> list[Record[Value]]:
        """Moves the watermark forward and drops what no on-time event can change any more (emits nothing)."""
        if self.watermark is not None and watermark_ms <= self.watermark:
            return []
        self.watermark = watermark_ms
        while self._orders_by_time and self._orders_by_time[0][0] < watermark_ms - self.keep:
            _, store, order = heapq.heappop(self._orders_by_time)
            o = self.orders.get((store, order))
            if o is not None and o.held_until < watermark_ms - self.keep:
                del self.orders[(store, order)]
                self._dirty_orders.add((store, order))
                if o.person is not None:
                    mine = self.by_person[o.person]
                    mine.discard((store, order))
                    if not mine:
                        del self.by_person[o.person]
        oldest = watermark_ms - self.keep - WINDOW_MS
        while self._touches_by_time and self._touches_by_time[0][0] < oldest:
            _, person = heapq.heappop(self._touches_by_time)
            kept = [t for t in self.touches.get(person, ()) if t[0] >= oldest]
            if kept:
                self.touches[person] = kept
            else:
                self.touches.pop(person, None)
            self._dirty_touches.add(person)
        while self._sums_by_end and self._sums_by_end[0][0] <= watermark_ms - self.keep:
            _, *key = heapq.heappop(self._sums_by_end)
            self.sums.pop(tuple(key), None)  # type: ignore[arg-type]  # a heap entry is (end, *key): tuple(key) is the key
        return []

    @property
    def too_late(self) -> int:
        return self.late.count

    def held(self) -> dict[str, int]:
        return {"orders": len(self.orders), "touches": sum(len(t) for t in self.touches.values()),
                "sums": len(self.sums)}

    # --- internals -------------------------------------------------------------------------------

    def _late(self, e: Event, window: int) -> bool:
        if self.watermark is not None and e.time < self.watermark - self.keep - window:
            self.late.refuse(e)
            return True
        return False

    def _touch(self, e: Event) -> list[Record[Value]]:
        person = person_of(e)
        if person is None or not e.campaign or self._late(e, WINDOW_MS):
            return []
        touches = self.touches.setdefault(person, [])
        touch = (e.time, e.id, e.campaign, e.name)
        if touch in touches:
            return []
        insort(touches, touch)
        self._dirty_touches.add(person)
        heapq.heappush(self._touches_by_time, (e.time, person))
        out: list[Record[Value]] = []
        final = None if self.watermark is None else self.watermark - self.keep  # older orders are decided
        for key in sorted(self.by_person.get(person, ())):
            o = self.orders[key]
            if o.time - WINDOW_MS <= e.time <= o.time and (final is None or o.time >= final):
                self._settle(o, (self._key(o), o.amount, o.touch), out)
        return out

    def _order(self, e: Event) -> list[Record[Value]]:
        if self._late(e, 0):
            return []
        key = (e.store, e.order or e.id)
        old = self.orders.get(key)
        if old is not None and (old.time, old.id) <= (e.time, e.id):
            if e.time > old.held_until:  # a later report: a copy of it must find the order held
                old.latest = e.time
                self._dirty_orders.add(key)
                heapq.heappush(self._orders_by_time, (e.time, key[0], key[1]))
            return []  # a redelivery or a later report of the same payment
        o = Order(e.store, key[1], e.time, e.id, self.days.of(e.time), e.amount, e.currency, person_of(e),
                  latest=old.held_until if old is not None else 0)
        if old is not None and old.person is not None and old.person != o.person:
            self.by_person[old.person].discard(key)
        if o.person is not None:
            self.by_person.setdefault(o.person, set()).add(key)
        self.orders[key] = o
        self._dirty_orders.add(key)
        heapq.heappush(self._orders_by_time, (o.time, key[0], key[1]))
        out: list[Record[Value]] = []
        self._settle(o, (self._key(old), old.amount, old.touch) if old is not None else (None, 0, None), out)
        return out

    def _settle(self, o: Order, before: tuple[tuple[str, str, str, str] | None, int, Touch | None],
                out: list[Record[Value]]) -> None:
        """Recomputes `o`'s last touch and moves its contribution from where `before` (its previous
        sums key, amount and touch) had it."""
        old_key, old_amount, old_touch = before
        o.touch = self._last_touch(o)
        self._dirty_orders.add((o.store, o.order))
        key = self._key(o)
        if (old_key, old_amount) != (key, o.amount):
            changed = set()
            for k, amount, sign in ((old_key, old_amount, -1), (key, o.amount, 1)):
                if k is None:
                    continue
                s = self.sums.get(k)
                if s is None:
                    s = self.sums[k] = [0, 0]
                    heapq.heappush(self._sums_by_end, (self.days.end(k[1]), *k))
                s[0] += sign
                s[1] += sign * amount
                changed.add(k)
            for store, day, campaign, currency in sorted(changed):
                n, revenue = self.sums[(store, day, campaign, currency)]
                out.append(Record(self.org, self.version.next(), RecordKind.ATTRIBUTION,
                                  f"{store}|{day}|{campaign}|{currency}", day,
                                  Attributed(store, campaign, currency, orders=n, revenue=revenue)))
        if (o.touch, key) != (old_touch, old_key) and (o.touch is not None or old_touch is not None):
            t = o.touch
            out.append(Record(self.org, self.version.next(), RecordKind.ORDER_ATTRIBUTION, f"{o.store}:{o.order}", o.day,
                              OrderAttribution(o.store, o.order, campaign=t[2] if t else None,
                                               touch_time=t[0] if t else None, touch=t[3] if t else None)))

    def _last_touch(self, o: Order) -> Touch | None:
        if o.person is None:
            return None
        best = None
        for t in self.touches.get(o.person, ()):
            if t[0] > o.time:
                break
            if t[0] >= o.time - WINDOW_MS:
                best = t
        return best

    @staticmethod
    def _key(o: Order) -> tuple[str, str, str, str] | None:
        if o.touch is None:
            return None
        return (o.store, o.day, o.touch[2], o.currency)
