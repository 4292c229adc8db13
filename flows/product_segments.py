"""Product segments kept live (docs/segments.md, "Product segments"): the machinery of
flows/membership.py (timers, exact instants, rewinding out-of-order inputs) over `ProductFacts`
instead of a customer's facts. Pure.

- a paid order not known before (`ProfileBook.knows_order`, so never twice) adds one sale to each
  product it contains, at its paid time: Σ qty × unit price of its lines of that product (in the
  order's currency), Σ qty; the product takes the category and brand its item names (when it names one);
- a cart the carts book counts abandoned adds, at its `due`, one abandon to each product in it (once
  per cart); a cart the carts book later corrects (abandoned by the wall clock, then bought before its
  due) takes it back.

Records are those of customer segments, with the product in the `customer` field.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.changes import Record
from core.definitions import SegmentDefinition
from core.events import Event, Kind
from core.rates import MissingRate
from core.records import Cart, RecordKind, Value
from core.rules import Entry, ProductFacts, Subject
from core.segment_records import SegmentMember
from flows.book import Version
from flows.membership import TIME, Input, Membership, State
from flows.segment_facts import ABANDONED, insert

SALE, ABANDON, TAKEN_BACK = "sale", "abandon", "taken back"


class ProductMembership(Membership):
    SUBJECT = Subject.PRODUCT
    CLOCK = False  # the customer segments write the organisation's segment clock

    def __init__(self, org: str, timezone: str, currency: str, definitions: Mapping[str, SegmentDefinition],
                 version: Version | None = None) -> None:
        super().__init__(org, timezone, currency, definitions, version)
        self.abandoned: dict[str, tuple[int, tuple[str, ...]]] = {}  # cart counted abandoned -> (due, its products)

    _STATE = (*Membership._STATE, "abandoned")

    def order(self, e: Event, new_order: bool) -> list[Record[Value]]:
        """A paid order: one sale per product in it, if the order is new."""
        if e.kind is not Kind.ORDER_PAID or not new_order or not self.live.order:
            return []
        lines: dict[str, list[int]] = {}
        labels: dict[str, tuple[str, str]] = {}
        for item in e.items:
            if not item.product:
                continue
            line = lines.setdefault(item.product, [0, 0])
            line[0] += item.qty * item.unit_price
            line[1] += item.qty
            labels[item.product] = (item.category or labels.get(item.product, ("", ""))[0],
                                    item.brand or labels.get(item.product, ("", ""))[1])
        out: list[Record[Value]] = []
        for product in sorted(lines):
            amount, units = lines[product]
            currency = e.currency or self.currency
            if currency != self.currency:
                try:
                    self.live.ctx.value(amount, currency, e.time)
                except MissingRate:  # the dataflow has no rates file: count the sale, not its amount
                    self.stats.unconverted += 1
                    currency, amount = self.currency, 0
            entry = Entry(e.time, currency, amount, units)
            out += self._take(product, Input(e.time, self._next_seq(), e.id, payload=(SALE, entry, *labels[product])))
        return out

    def cart(self, r: Record[Value], cause: str, at: int | None) -> list[Record[Value]]:
        """A cart counted abandoned: one abandon, at its due, per product in it (once per cart). A cart
        the carts book corrects (abandoned by the wall clock, then bought before its due) takes it back."""
        v = r.value
        assert isinstance(v, Cart)
        if not self.live.order:
            return []
        counted = self.abandoned.get(r.key)
        wanted = ((v.due, tuple(sorted({p for p, _, _ in v.items if p})))
                  if v.status in ABANDONED and v.due is not None else None)
        out: list[Record[Value]] = []
        if wanted == counted:
            return out
        if counted is not None:  # what it said before no longer holds: taken back
            del self.abandoned[r.key]
            due, products = counted
            for product in products:
                t = at if at is not None else due
                out += self._take(product, Input(t, self._next_seq(), cause, payload=(TAKEN_BACK, due)))
                out += self._forget_if_unknown(product)
        if wanted is not None:
            self.abandoned[r.key] = wanted
            due, products = wanted
            for product in products:
                out += self._take(product, Input(due, self._next_seq(), TIME, payload=(ABANDON, due)))
        return out

    def _forget_if_unknown(self, product: str) -> list[Record[Value]]:
        """A product left with no sale and no abandon (its only abandon was taken back) is one the
        segments never knew: it leaves every segment's member list (no exit is recorded)."""
        c = self.customers.get(product)
        f = c.now.facts if c is not None else None
        if c is None or not isinstance(f, ProductFacts) or f.sales or f.abandons or f.history:
            return []
        del self.customers[product]
        self._changed.add(product)  # its snapshot entry becomes None: dropped
        out: list[Record[Value]] = []
        v = self.version.next()
        for g, bit in self.bits.items():
            if c.now.mask >> bit & 1:
                self.counts[g] -= 1
                self._dirty.add(g)
                out.append(Record(self.org, v, RecordKind.SEGMENT_MEMBER, f"{g}|{product}", g,
                                  SegmentMember(g, product, False, None)))
        return out

    def _fresh(self, t: int) -> ProductFacts:
        return ProductFacts()

    def _facts(self, s: State, x: Input) -> ProductFacts:
        f = s.facts
        assert isinstance(f, ProductFacts)
        if x.payload[0] == SALE:
            _, entry, category, brand = x.payload
            assert isinstance(entry, Entry) and isinstance(category, str) and isinstance(brand, str)
            return ProductFacts(category or f.category, brand or f.brand, f.attributes, insert(f.sales, entry),
                                f.abandons, f.history)
        due = x.payload[1]
        assert isinstance(due, int)
        abandons = list(f.abandons)
        if x.payload[0] == ABANDON:
            abandons.append(due)
        elif due in abandons:  # taken back (once folded into history, it stays counted)
            abandons.remove(due)
        return ProductFacts(f.category, f.brand, f.attributes, f.sales, tuple(sorted(abandons)), f.history)
