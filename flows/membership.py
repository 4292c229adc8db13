"""Customer segments kept live: per customer, the facts the rules read (core/rules), membership of
every segment and a timer at the next instant time can change it. Pure: time comes in as arguments.

The organisation (flows/organisation.py) hands every event to `apply` after the profiles book has
seen whether it is a new order or refund (so a redelivered event or a second report of an order is
never counted twice: flows/profiles.py recognises orders at any distance), every cart record the
carts book emits to `cart`, every control event to `define`, and each move of the watermark to
`advance`. Each returns the records it changed (core/segment_records.py).

Semantics (docs/segments.md, "Membership over time"): a customer is a member at T when the rule
holds over their events up to T with now = T. For each customer the book keeps the instant it last
evaluated them (`at`). An event at t >= at is evaluated at t, after firing the customer's timers up
to t, so entries and exits land at their exact instants: the event's time (cause: its id) or the
instant a window or a relative time turned (cause "time"). An event older than `at` (out of order,
within the lateness) is folded into the facts and evaluated at `at`: membership from then on is
right, the history before it is not rewritten. A timer fires once the watermark passes its instant.
A segment defined (or changed) after the data arrived is evaluated for every customer at the
watermark (cause "defined"); deleting one makes its members leave the read model's member list.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

import msgspec

from core.changes import Record
from core.clock import utc_from_ms
from core.definitions import SegmentDefinition, read_definition, segment_of
from core.events import Event, Item, Kind
from core.rates import MissingRate
from core.records import Cart, RecordKind, Value
from core.rules import Context, CustomerFacts, Entry, RuleError, SegmentSet, attributes_of, changed_inputs, fold
from core.rules.graph import references
from core.rules.parse import parse_rule
from core.rules.tree import Rule
from core.segment_records import Segment, SegmentChange, SegmentClock, SegmentMember
from flows.book import Version
from flows.profiles import CONTACT, NOT_ACTIVITY
from flows.shoppers import Shoppers

ENTERED, EXITED = "entered", "exited"
TIME, DEFINED = "time", "defined"
_OPEN = "open"
_ABANDONED = ("abandoned", "recovered")
_CARTS_KEPT = 8  # per customer: its open carts and its latest closed ones (a record may still correct them)


@dataclass(frozen=True, slots=True)
class _CartState:
    """What the latest record of a cart says (core/records.py Cart)."""

    status: str
    first: int
    last: int
    due: int | None
    value: int
    currency: str


@dataclass(slots=True)
class _Customer:
    key: str
    facts: CustomerFacts
    at: int  # the instant of its latest evaluation
    mask: int = 0  # bit i: member of the segment of bit i (Membership.bits)
    nexts: dict[str, int] = field(default_factory=dict)  # segment -> the next instant its value may change
    carts: dict[str, _CartState] = field(default_factory=dict)  # its latest carts by "<store>:<cart>"
    created_floor: int | None = None  # latest first activity of the carts no longer kept
    abandoned_floor: int | None = None  # latest due of the abandoned carts no longer kept
    attrs_at: int = -(2**63)  # time of the latest event whose attributes were taken

    def due(self) -> int | None:
        return min(self.nexts.values()) if self.nexts else None


@dataclass(frozen=True, slots=True)
class Change:
    segment: str
    customer: str
    change: str
    at: int
    cause: str


@dataclass(slots=True)
class Stats:
    """Counters for Prometheus (flows/metrics.py reads and resets them)."""

    evaluations: int = 0
    changes: int = 0
    seconds: float = 0.0
    unconverted: int = 0  # amounts in another currency than the organisation's, without rates: counted as 0


class Membership:
    """The live segments of one organisation."""

    def __init__(self, org: str, timezone: str, currency: str, definitions: Mapping[str, SegmentDefinition],
                 version: Version | None = None) -> None:
        self.org, self.timezone, self.currency = org, timezone, currency
        self.version = version or Version()
        self.definitions: dict[str, SegmentDefinition] = dict(definitions)
        self.customers: dict[str, _Customer] = {}
        self.bits: dict[str, int] = {}  # segment -> its bit in every mask
        self.counts: dict[str, int] = {}  # segment -> members now
        self.timers: list[tuple[int, str]] = []  # (instant, customer): a heap; stale entries skipped
        self.cart_owners: dict[str, str] = {}  # cart -> the customer whose carts hold it
        self.watermark: int | None = None
        self.stats = Stats()
        self._dirty: set[str] = set(self.definitions)  # segments whose record must be emitted
        self._as_of: int | None = None  # the watermark at the latest change of any segment
        self._flushed_at: int | None = None
        self._build()

    def __getstate__(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in ("org", "timezone", "currency", "version", "definitions", "customers",
                                              "bits", "counts", "timers", "cart_owners", "watermark", "_dirty", "_as_of", "_flushed_at")}

    def __setstate__(self, state: dict[str, object]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
        self.stats = Stats()
        self._build()

    def _build(self) -> None:
        ctx = Context(self.timezone, self.currency)
        rules: dict[str, Rule] = {}
        for d in self.definitions.values():
            try:
                rules[d.id] = parse_rule(d.rule, currency=self.currency, timezone=self.timezone)
            except RuleError:
                continue  # checked before it was defined: a rule this version no longer reads is left out
        self.live = SegmentSet(_without_dangling(rules), ctx)
        for s in self.live.order:
            if s not in self.bits:
                self.bits[s] = max(self.bits.values(), default=-1) + 1
            self.counts.setdefault(s, 0)

    # --- input -----------------------------------------------------------------------------------

    def apply(self, e: Event, *, new_order: bool, new_refund: str | None) -> list[Record[Value]]:
        """Folds one event in. `new_order`: an `order.paid` for an order not known before; `new_refund`:
        the customer of an `order.refunded` for a refund not known before (None: not new, or nobody's)."""
        key = e.customer or (new_refund if e.kind is Kind.ORDER_REFUNDED else None)
        if not key:
            return []
        c = self.customers.get(key)
        old = None if c is None else c.facts
        facts = _person(old, e) if e.customer else old
        assert facts is not None or c is None
        if facts is None:
            return []
        if new_order and e.kind is Kind.ORDER_PAID:
            facts = replace(facts, orders=_insert(facts.orders, self._entry(e, e.amount, e.items)))
        elif new_refund is not None:
            facts = replace(facts, refunds=_insert(facts.refunds, self._entry(e, e.amount, ())))
        elif e.kind is Kind.EMAIL_ENGAGED and e.time not in facts.emails:
            facts = replace(facts, emails=tuple(sorted((*facts.emails, e.time))))
        if e.kind in CONTACT and e.attrs and c is not None and e.time < c.attrs_at:
            facts = replace(facts, attributes=old.attributes if old is not None else ())
        return self._changed(key, c, facts, e.time, e.id, attrs_at=e.time if e.kind in CONTACT and e.attrs else None)

    def cart(self, r: Record[Value], cause: str) -> list[Record[Value]]:
        """A cart record the carts book emitted. The cart facts are those of the latest record of each
        of the customer's carts, so a decision the carts book corrects (abandoned by the wall clock,
        then bought before its due) is corrected here too; a cart that now names someone else (or a
        visitor) leaves its former customer's carts."""
        v = r.value
        assert isinstance(v, Cart)
        out: list[Record[Value]] = []
        owner = self.cart_owners.get(r.key)
        if owner is not None and owner != v.person:
            del self.cart_owners[r.key]
            former = self.customers[owner]
            out += self._carts(former, {k: x for k, x in former.carts.items() if k != r.key}, v, cause)
        c = self.customers.get(v.person) if v.person else None
        if c is None:  # a visitor's cart: nobody the segments know (yet)
            return out
        self.cart_owners[r.key] = c.key
        carts = {**c.carts, r.key: _CartState(v.status, v.first, v.last, v.due, v.value, v.currency)}
        if len(carts) > _CARTS_KEPT:  # the oldest closed carts only count in the floors now
            closed = sorted((k for k, x in carts.items() if x.status != _OPEN), key=lambda k: carts[k].last)
            for k in closed[:len(carts) - _CARTS_KEPT]:
                x = carts.pop(k)
                self.cart_owners.pop(k, None)
                c.created_floor = max(c.created_floor or x.first, x.first)
                if x.status in _ABANDONED and x.due is not None:
                    c.abandoned_floor = max(c.abandoned_floor or x.due, x.due)
        return out + self._carts(c, carts, v, cause)

    def _carts(self, c: _Customer, carts: dict[str, _CartState], v: Cart, cause: str) -> list[Record[Value]]:
        """The customer with these carts: its cart facts, evaluated if they changed."""
        c.carts = carts
        f = c.facts
        opened = tuple(sorted((Entry(x.last, x.currency, x.value) for x in carts.values() if x.status == _OPEN),
                              key=lambda e: (e.time, e.amount)))
        created = max([x.first for x in carts.values()] + ([c.created_floor] if c.created_floor else []), default=None)
        abandoned = max([x.due for x in carts.values() if x.status in _ABANDONED and x.due is not None]
                        + ([c.abandoned_floor] if c.abandoned_floor else []), default=None)
        facts = replace(f, open_carts=opened if opened != f.open_carts else f.open_carts, last_cart_created=created,
                        last_cart_abandoned=abandoned)
        if facts == f:
            return []
        if abandoned is not None and abandoned != f.last_cart_abandoned and v.status in _ABANDONED:
            # the passing of time decided it, whatever event the carts book was folding then
            return self._changed(c.key, c, facts, max(abandoned, c.at), TIME)
        return self._changed(c.key, c, facts, max(v.last, c.at), cause)

    def define(self, e: Event) -> list[Record[Value]]:
        """A control event: a segment put or deleted. Evaluated for every customer at the watermark."""
        d = read_definition(e)
        if d is None or d.type != "segment":
            return []
        before = dict(self.definitions)
        if d.body is None:
            if self.definitions.pop(d.id, None) is None:
                return []
        else:
            s = segment_of(d)
            if s is None:
                return []
            self.definitions[d.id] = replace(s, predefined=False)
        old_rules = dict(self.live.rules)
        try:
            self._build()
        except RuleError:  # in_segment of a segment since deleted, or a cycle: the definition is refused
            self.definitions = before
            self._build()
            return []
        self._dirty.add(d.id)
        changed = {s for s in self.live.order if old_rules.get(s) != self.live.rules[s]}
        changed |= {s for s in self.live.order if _names(self.live.rules, s) & changed}
        out: list[Record[Value]] = []
        if d.body is None or d.id not in self.live.rules:
            out += self._forget(d.id)
        if changed:
            now = self.watermark if self.watermark is not None else max((c.at for c in self.customers.values()),
                                                                         default=0)
            order = [s for s in self.live.order if s in changed]
            for key in sorted(self.customers):
                out += self._evaluate(key, self.customers[key], order, now, DEFINED)
        return out

    def advance(self, watermark: int) -> list[Record[Value]]:
        """The watermark moved: fires every timer at or before it."""
        if self.watermark is not None and watermark <= self.watermark:
            return []
        self.watermark = watermark
        out: list[Record[Value]] = []
        while self.timers and self.timers[0][0] <= watermark:
            at, key = heapq.heappop(self.timers)
            c = self.customers.get(key)
            if c is not None and c.due() == at:
                out += self._fire(key, c, watermark)
        return out

    def flush(self) -> list[Record[Value]]:
        """The segment records whose definition or member count changed since the last flush, and the
        segment clock: the watermark at the latest change (membership is exact from then to the
        watermark now; it is not re-emitted at every move of the watermark, a write a second)."""
        out: list[Record[Value]] = []
        for s in sorted(self._dirty):
            d = self.definitions.get(s)
            deleted = d is None or s not in self.live.rules
            if d is None:
                d = SegmentDefinition(s, s, {})
            value = Segment(s, d.name, d.predefined, msgspec.Raw(msgspec.json.encode(d.rule)),
                            0 if deleted else self.counts.get(s, 0), deleted)
            out.append(Record(self.org, self.version.next(), RecordKind.SEGMENT, s, "", value))
        self._dirty = set()
        if self._as_of != self._flushed_at:
            self._flushed_at = self._as_of
            out.append(Record(self.org, self.version.next(), RecordKind.SEGMENT_CLOCK, "", "", SegmentClock(self._as_of)))
        return out

    # --- reading ---------------------------------------------------------------------------------

    def next_due(self) -> int | None:
        """The earliest pending timer (may be a stale one: firing it then does nothing)."""
        while self.timers:
            at, key = self.timers[0]
            c = self.customers.get(key)
            if c is not None and c.due() == at:
                return at
            heapq.heappop(self.timers)
        return None

    def members(self, segment: str) -> list[str]:
        bit = 1 << self.bits[segment]
        return sorted(k for k, c in self.customers.items() if c.mask & bit)

    def held(self) -> dict[str, int]:
        return {"customers": len(self.customers), "timers": len(self.timers), "segments": len(self.live.order)}

    # --- internals -------------------------------------------------------------------------------

    def _entry(self, e: Event, amount: int, items: Iterable[Item]) -> Entry:
        items = tuple(items)
        currency = e.currency or self.currency
        if currency != self.currency:
            try:
                self.live.ctx.value(amount, currency, e.time)
            except MissingRate:  # the dataflow has no rates file: count it, not its amount
                self.stats.unconverted += 1
                currency, amount = self.currency, 0
        return Entry(e.time, currency, amount, sum(i.qty for i in items),
                     _distinct(i.product for i in items), _distinct(i.category for i in items),
                     _distinct(i.brand for i in items))

    def _changed(self, key: str, c: _Customer | None, facts: CustomerFacts, t: int, cause: str,
                 attrs_at: int | None = None) -> list[Record[Value]]:
        out: list[Record[Value]] = []
        if c is None:
            c = self.customers[key] = _Customer(key, facts, t)
            changed = changed_inputs(None, facts)
        else:
            if t > c.at:
                out += self._fire(key, c, t - 1)  # its timers before the event first; one due at t sees the event
            changed = changed_inputs(c.facts, facts)
            c.facts = facts
        if attrs_at is not None and attrs_at >= c.attrs_at:
            c.attrs_at = attrs_at
        if changed:
            out += self._evaluate(key, c, self.live.touched(changed), max(t, c.at), cause)
        if self.watermark is not None:
            c.facts = fold(c.facts, self.live.keep, min(self.watermark, c.at), self.live.ctx)
        return out

    def _fire(self, key: str, c: _Customer, until: int) -> list[Record[Value]]:
        """The customer's timers up to `until`, in time order, each evaluated at its instant."""
        out: list[Record[Value]] = []
        while (due := c.due()) is not None and due <= until:
            out += self._evaluate(key, c, [s for s in self.live.order if c.nexts.get(s) == due], due, TIME)
        return out

    def _evaluate(self, key: str, c: _Customer, segments: Iterable[str], now: int, cause: str) -> list[Record[Value]]:
        started = time.perf_counter()
        segments = list(segments)
        results = self.live.evaluate(segments, c.facts, now)
        self.stats.evaluations += len(segments)
        before = c.due()
        c.at = max(c.at, now)
        out: list[Record[Value]] = []
        for s, (member, nxt) in results.items():
            bit = 1 << self.bits[s]
            if nxt is None:
                c.nexts.pop(s, None)
            else:
                c.nexts[s] = nxt
            if member == bool(c.mask & bit):
                continue
            c.mask ^= bit
            self.counts[s] += 1 if member else -1
            self._dirty.add(s)
            self._as_of = self.watermark
            out += self._records(Change(s, key, ENTERED if member else EXITED, now, cause))
        due = c.due()
        if due is not None and due != before:
            heapq.heappush(self.timers, (due, key))
        self.stats.seconds += time.perf_counter() - started
        return out

    def _records(self, ch: Change) -> list[Record[Value]]:
        self.stats.changes += 1
        v = self.version.next()
        entered = ch.at if ch.change == ENTERED else None
        day = f"{ch.segment}|{utc_from_ms(ch.at).isoformat(timespec='milliseconds')}"
        return [Record(self.org, v, RecordKind.SEGMENT_CHANGE, f"{ch.segment}|{ch.customer}|{ch.at}|{ch.change}", day,
                       SegmentChange(ch.segment, ch.customer, ch.change, ch.at, ch.cause)),
                Record(self.org, v, RecordKind.SEGMENT_MEMBER, f"{ch.segment}|{ch.customer}", ch.segment,
                       SegmentMember(ch.segment, ch.customer, ch.change == ENTERED, entered))]

    def _forget(self, segment: str) -> list[Record[Value]]:
        """A deleted segment: its members leave the member list (no change is recorded), its bit is freed."""
        bit = self.bits.pop(segment, None)
        self.counts.pop(segment, None)
        self._dirty.add(segment)
        if bit is None:
            return []
        out: list[Record[Value]] = []
        v = self.version.next()
        for key in sorted(self.customers):
            c = self.customers[key]
            c.nexts.pop(segment, None)
            if c.mask & (1 << bit):
                c.mask &= ~(1 << bit)
                out.append(Record(self.org, v, RecordKind.SEGMENT_MEMBER, f"{segment}|{key}", segment,
                                  SegmentMember(segment, key, False, None)))
        return out


def _person(old: CustomerFacts | None, e: Event) -> CustomerFacts:
    """First seen, registration, activity, stores and custom fields: every event naming the customer
    (the definitions of flows/profiles.py)."""
    if old is None:
        old = CustomerFacts(first_seen=e.time)
    first_seen = min(old.first_seen, e.time)
    last_active = old.last_active
    if e.kind not in NOT_ACTIVITY:
        last_active = e.time if last_active is None else max(last_active, e.time)
    stores = old.stores if not e.store or e.store in old.stores else tuple(sorted((*old.stores, e.store)))
    registered, attributes = old.registered, old.attributes
    if e.kind in CONTACT:
        at = _registered(e)
        if at is not None and (registered is None or at < registered):
            registered = at
        if e.attrs:
            attributes = attributes_of({**dict(old.attributes), **e.attrs})
    if (first_seen, last_active, stores, registered, attributes) == (
            old.first_seen, old.last_active, old.stores, old.registered, old.attributes):
        return old
    return replace(old, first_seen=first_seen, last_active=last_active, stores=stores, registered=registered,
                   attributes=attributes)


def _registered(e: Event) -> int | None:
    """As flows/profiles.py: the event's time for customer.created and identified, else the vendor's
    creation time (attrs created_at in ms, Stripe's created in s)."""
    found = [e.time] if e.kind in (Kind.CUSTOMER_CREATED, Kind.IDENTIFIED) else []
    if e.kind is not Kind.IDENTIFIED:
        for name, scale in (("created_at", 1), ("created", 1000)):
            v = e.attrs.get(name)
            if isinstance(v, int) and not isinstance(v, bool) and 0 < v * scale < 10**14:
                found.append(v * scale)
    return min(found, default=None)


def _insert(entries: tuple[Entry, ...], entry: Entry) -> tuple[Entry, ...]:
    """The entries with one more, kept in time order."""
    if not entries or entries[-1].time <= entry.time:
        return (*entries, entry)
    return tuple(sorted((*entries, entry), key=lambda x: x.time))


def _distinct(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({n for n in names if n}))


def _names(rules: Mapping[str, Rule], segment: str) -> set[str]:
    """The segments `segment` names through in_segment, directly or not."""
    seen: set[str] = set()
    pending = [segment]
    while pending:
        for ref in references(rules[pending.pop()]):
            if ref not in seen and ref in rules:
                seen.add(ref)
                pending.append(ref)
    return seen


def _without_dangling(rules: dict[str, Rule]) -> dict[str, Rule]:
    """The rules minus those naming (directly or not) a segment that is not defined."""
    rules = dict(rules)
    while dangling := [s for s, r in rules.items() if references(r) - rules.keys()]:
        for s in dangling:
            del rules[s]
    return rules


def segment_step(segments: Membership, shoppers: Shoppers, e: Event) -> list[Record[Value]]:
    """One event through the shoppers' books and then the segments: the records both changed. What
    is new (an order, a refund) is asked of the profiles book before it folds the event."""
    profiles = shoppers.profiles
    new_order = e.kind is Kind.ORDER_PAID and not profiles.knows_order(e)
    refund_before = profiles.refund_total(e) if e.kind is Kind.ORDER_REFUNDED else None
    out = shoppers.apply(e)
    new_refund = None
    if e.kind is Kind.ORDER_REFUNDED and refund_before is None and profiles.refund_total(e) is not None:
        new_refund = e.customer or (profiles.order_customer(e.store, e.order) if e.order else None)
    mine = segments.apply(e, new_order=new_order, new_refund=new_refund)
    for r in out:
        if r.kind is RecordKind.CART:
            mine += segments.cart(r, e.id)
    return out + mine
