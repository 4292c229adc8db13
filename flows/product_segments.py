"""Product segments kept live (docs/segments.md, "Product segments"): the machinery of
flows/membership.py (timers, exact instants, rewinding out-of-order inputs) over `ProductFacts`
instead of a customer's facts. Pure.

- a paid order not known before (`ProfileBook.knows_order`, so never twice) adds one sale to each
  product it contains, at its paid time: Σ qty × unit price of its lines of that product (in the
  order's currency), Σ qty; the product takes the category and brand its item names (when it names one);
- a cart the carts book counts abandoned adds, at its `due`, one abandon to each product in it (once
  per cart; a cart the carts book later corrects to purchased keeps it).

Records are those of customer segments, with the product in the `customer` field.
"""

from __future__ import annotations

from collections.abc import Mapping

from core.changes import Record
from core.definitions import SegmentDefinition
from core.events import Event, Kind
from core.rates import MissingRate
from core.records import Cart, Value
from core.rules import Entry, ProductFacts, Subject
from flows.book import Version
from flows.membership import TIME, Input, Membership, State
from flows.segment_facts import ABANDONED, insert

SALE, ABANDON = "sale", "abandon"


class ProductMembership(Membership):
    SUBJECT = Subject.PRODUCT

    def __init__(self, org: str, timezone: str, currency: str, definitions: Mapping[str, SegmentDefinition],
                 version: Version | None = None) -> None:
        super().__init__(org, timezone, currency, definitions, version)
        self.abandoned: set[str] = set()  # carts whose abandonment was counted

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
        """A cart counted abandoned: one abandon, at its due, per product in it (once per cart)."""
        v = r.value
        assert isinstance(v, Cart)
        if v.status not in ABANDONED or v.due is None or r.key in self.abandoned or not self.live.order:
            return []
        self.abandoned.add(r.key)
        out: list[Record[Value]] = []
        for product in sorted({p for p, _, _ in v.items if p}):
            out += self._take(product, Input(v.due, self._next_seq(), TIME, payload=(ABANDON, v.due)))
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
        return ProductFacts(f.category, f.brand, f.attributes, f.sales, tuple(sorted((*f.abandons, due))), f.history)
