"""The customer journey per store and local day: visitors -> added to cart -> purchased -> again. Pure.

A person is `customer` when the event has one, else `visitor`, per store (two shops' customer
numbers are different people): raw keys "c:<customer>" and "v:<visitor>". An `identified` event
(visitor V is customer C, at time t) makes V count as C on every local day from the day of t to
the day of t + `identify_for` (30 days by default); where several identifications of V cover a
day, the latest by (time, id) wins. Events with neither customer nor visitor count nowhere.

Per store and local day (the day of the event's time in the organisation's time zone):
- visitors: distinct persons with a visit event: page or product viewed, cart updated, item added
  or removed, checkout started or completed, order placed or paid;
- added_to_cart: distinct persons with `cart.item_added`, or `cart.updated` / `checkout.started`
  with at least one item;
- purchased: distinct persons with an `order.paid` event;
- purchased_again: distinct persons with `order.paid` events of at least two distinct orders
  (`order`, else the event id) that day.
Over a range of days every figure is the SUM of its daily values (a person counts once per day:
visits are person-days); conversion rate = purchased / visitors over the same days.

A day's distinct sets are held only while the day is open: until the watermark W reaches the
day's end (W promises every event with time < W has arrived). Then its record is emitted with
`final: true` and the sets are dropped; an event arriving later for that day is too late and
counted nowhere (`too_late`, per store in `late`). Identifications are dropped once the last day
they cover is final.

Records: "journey_day", key "<store>|<day>", absolute counters, each with a new organisation version.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

from core.changes import Record
from core.events import Event, Kind
from core.records import JourneyDay, RecordKind, Value
from flows.book import DAY_MS, Days, TooLate, Version

VISIT = frozenset({
    Kind.PAGE_VIEWED, Kind.PRODUCT_VIEWED, Kind.CART_UPDATED, Kind.CART_ITEM_ADDED, Kind.CART_ITEM_REMOVED,
    Kind.CHECKOUT_STARTED, Kind.CHECKOUT_COMPLETED, Kind.ORDER_PLACED, Kind.ORDER_PAID,
})
DEFAULT_IDENTIFY_FOR_MS = 30 * DAY_MS


def added(e: Event) -> bool:
    return e.kind is Kind.CART_ITEM_ADDED or (e.kind in (Kind.CART_UPDATED, Kind.CHECKOUT_STARTED) and bool(e.items))


@dataclass(slots=True)
class Raw:
    """What one raw key did on one day."""

    person: str  # the person it counts as
    added: bool = False
    # At most two distinct orders: the counters only ask "one?" and "two or more?". Two per raw key
    # still answer both exactly for a person with several keys (a key with two decides "two"; with
    # at most one each, the sets are whole), and a person with thousands of orders a day stays O(1).
    orders: set[str] = field(default_factory=set)


@dataclass(slots=True)
class Day:
    store: str
    day: str
    end: int
    raws: dict[str, Raw] = field(default_factory=dict)
    people: dict[str, set[str]] = field(default_factory=dict)  # person -> its raw keys on this day
    counts: list[int] = field(default_factory=lambda: [0, 0, 0, 0])  # visitors, added, purchased, again

    def contribution(self, person: str) -> tuple[int, int, int, int]:
        raws = [self.raws[r] for r in self.people.get(person, ())]
        if not raws:
            return (0, 0, 0, 0)
        orders = len(set().union(*(r.orders for r in raws)))
        return (1, int(any(r.added for r in raws)), int(orders >= 1), int(orders >= 2))


@dataclass(frozen=True, slots=True)
class Identification:
    time: int
    id: str
    customer: str
    first: str  # first local day it covers
    last: str  # last local day it covers


class Journey:
    """The journey counters of one organisation: `apply(event)`, `advance(watermark_ms)`."""

    def __init__(self, org: str, timezone: str, identify_for_ms: int = DEFAULT_IDENTIFY_FOR_MS,
                 version: Version | None = None, keep_ms: int = 0) -> None:
        self.org = org
        self.keep = keep_ms  # a day stays open (late events count) until keep_ms after it ends
        self.days = Days(timezone)
        self.identify_for = identify_for_ms
        self.version = version or Version()
        self.watermark: int | None = None
        self.late = TooLate()
        self.open: dict[tuple[str, str], Day] = {}
        self.identities: dict[tuple[str, str], list[Identification]] = {}  # (store, visitor) -> sorted
        self._expiries: list[tuple[int, str, str, str]] = []  # (end of last day, store, visitor, id)

    def apply(self, event: Event) -> list[Record[Value]]:
        if event.kind is Kind.IDENTIFIED:
            return self._identify(event)
        if event.kind not in VISIT:
            return []
        raw = f"c:{event.customer}" if event.customer else f"v:{event.visitor}" if event.visitor else None
        if raw is None:
            return []
        day_ = self.days.of(event.time)
        d = self.open.get((event.store, day_))
        if d is None:
            end = self.days.end(day_) + self.keep
            if self.watermark is not None and end <= self.watermark:
                self.late.refuse(event)
                return []
            d = self.open[(event.store, day_)] = Day(event.store, day_, end)
        r = d.raws.get(raw)
        order = (event.order or event.id) if event.kind is Kind.ORDER_PAID else None
        is_add = added(event)
        if r is not None and (r.added or not is_add) and (order is None or order in r.orders or len(r.orders) >= 2):
            return []  # nothing new: a redelivery, or this person already counted for it
        before = self._counts(d)
        if r is None:
            person = self._person(event.store, raw, day_)
            old = d.contribution(person)
            r = d.raws[raw] = Raw(person)
            d.people.setdefault(person, set()).add(raw)
        else:
            old = d.contribution(r.person)
        r.added |= is_add
        if order is not None:  # fewer than two orders held: two or more returned above
            r.orders.add(order)
        self._add(d, old, d.contribution(r.person))
        return self._emit(d) if self._counts(d) != before else []

    def advance(self, watermark_ms: int) -> list[Record[Value]]:
        """Moves the watermark forward; days it closes are emitted with `final: true` and dropped."""
        if self.watermark is not None and watermark_ms <= self.watermark:
            return []
        self.watermark = watermark_ms
        out: list[Record[Value]] = []
        for key in sorted(k for k, d in self.open.items() if d.end <= watermark_ms):
            out += self._emit(self.open.pop(key), final=True)
        while self._expiries and self._expiries[0][0] <= watermark_ms:
            _, store, visitor, id_ = heapq.heappop(self._expiries)
            kept = [i for i in self.identities.get((store, visitor), ()) if i.id != id_]
            if kept:
                self.identities[(store, visitor)] = kept
            else:
                self.identities.pop((store, visitor), None)
        return out

    @property
    def too_late(self) -> int:
        return self.late.count

    def held(self) -> dict[str, int]:
        return {"days": len(self.open), "people": sum(len(d.raws) for d in self.open.values()),
                "identities": sum(len(i) for i in self.identities.values())}

    # --- internals -------------------------------------------------------------------------------

    def _person(self, store: str, raw: str, day: str) -> str:
        if raw.startswith("v:"):
            for i in reversed(self.identities.get((store, raw[2:]), ())):
                if i.first <= day <= i.last:
                    return f"c:{i.customer}"
        return raw

    @staticmethod
    def _counts(d: Day) -> tuple[int, ...]:
        return tuple(d.counts)

    @staticmethod
    def _add(d: Day, old: tuple[int, ...], new: tuple[int, ...]) -> None:
        for i in range(4):
            d.counts[i] += new[i] - old[i]

    def _identify(self, e: Event) -> list[Record[Value]]:
        if not e.visitor or not e.customer:
            return []
        last = self.days.of(e.time + self.identify_for)
        if self.watermark is not None and self.days.end(last) <= self.watermark:
            self.late.refuse(e)
            return []
        key = (e.store, e.visitor)
        ids = self.identities.setdefault(key, [])
        if any(i.id == e.id for i in ids):
            return []
        ids.append(Identification(e.time, e.id, e.customer, self.days.of(e.time), last))
        ids.sort(key=lambda i: (i.time, i.id))
        heapq.heappush(self._expiries, (self.days.end(last), e.store, e.visitor, e.id))
        out: list[Record[Value]] = []
        raw = f"v:{e.visitor}"
        for dkey in sorted(self.open):
            d = self.open[dkey]
            r = d.raws.get(raw)
            if dkey[0] != e.store or r is None:
                continue
            person = self._person(e.store, raw, d.day)
            if person == r.person:
                continue
            before = self._counts(d)
            olds = d.contribution(r.person), d.contribution(person)
            d.people[r.person].discard(raw)
            if not d.people[r.person]:
                del d.people[r.person]
            news_person = r.person
            r.person = person
            d.people.setdefault(person, set()).add(raw)
            self._add(d, olds[0], d.contribution(news_person))
            self._add(d, olds[1], d.contribution(person))
            if self._counts(d) != before:
                out += self._emit(d)
        return out

    def _emit(self, d: Day, final: bool = False) -> list[Record[Value]]:
        visitors, added_to_cart, purchased, again = d.counts
        value = JourneyDay(d.store, visitors, added_to_cart, purchased, again, final)
        return [Record(self.org, self.version.next(), RecordKind.JOURNEY_DAY, f"{d.store}|{d.day}", d.day, value)]
