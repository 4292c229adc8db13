"""Every criterion of the rule language, in one table per subject (customers, products).

A criterion says what it is (its `kind`), which comparisons fit it, what kind of value it compares
with, and which facts it reads. The parser checks rules against this table; `inputs` reads `reads`
from it; docs/segments.md defines each one exactly.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.rules.tree import Measure, Term


class Subject(StrEnum):
    CUSTOMER = "customer"
    PRODUCT = "product"


class Kind(StrEnum):
    TALLY = "tally"  # a number summed over dated entries in a window
    ANY_ENTRY = "any_entry"  # some dated entry in a window whose amount compares true
    MOMENT = "moment"  # a time: before / after / on / exists
    CURRENT = "current"  # a number the facts hold now
    LABEL = "label"  # a name or a set of names: eq / ne / in
    ATTRIBUTE = "attribute"  # a custom field named by `name`
    SEGMENT = "segment"  # membership of another segment


class Value(StrEnum):
    COUNT = "count"  # a whole number >= 0
    MONEY = "money"  # a decimal string in the organisation's currency
    NAME = "name"  # a non-empty string
    ANY = "any"  # a string, number or true/false (attributes)


COUNTING = ("eq", "ne", "gt", "gte", "lt", "lte", "between", "in")
MONEY = ("eq", "ne", "gt", "gte", "lt", "lte", "between")
ORDERING = ("gt", "gte", "lt", "lte")
NAMING = ("eq", "ne", "in")
TIMING = ("before", "after", "on", "exists")
ANYTHING = (*COUNTING, "exists")


@dataclass(frozen=True, slots=True)
class Criterion:
    name: str
    kind: Kind
    value: Value | None  # what its comparisons compare with (None: time tests)
    comparisons: tuple[str, ...]
    reads: frozenset[str]  # the facts (fields of CustomerFacts / ProductFacts) it reads
    terms: tuple[Term, ...] = ()  # TALLY: what is summed
    stream: str = ""  # ANY_ENTRY: the entries searched
    item: str = ""  # TALLY: the qualifier it requires (product, category or brand)

    @property
    def windowed(self) -> bool:
        """Takes `within`, `since` and `until`."""
        return self.kind in (Kind.TALLY, Kind.ANY_ENTRY)


def _tally(name: str, value: Value, *terms: Term, item: str = "") -> Criterion:
    comparisons = COUNTING if value is Value.COUNT else MONEY
    return Criterion(name, Kind.TALLY, value, comparisons, frozenset(t.stream for t in terms), terms, item=item)


def _moment(name: str, *reads: str) -> Criterion:
    return Criterion(name, Kind.MOMENT, None, TIMING, frozenset(reads))


ORDERS, REFUNDS, EMAILS = "orders", "refunds", "emails"
SALES, ABANDONS = "sales", "abandons"
ITEM_FIELDS = {"product": "products", "category": "categories", "brand": "brands"}  # qualifier -> entry field

CUSTOMER_CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    _tally("orders", Value.COUNT, Term(ORDERS, Measure.COUNT)),
    _tally("spent", Value.MONEY, Term(ORDERS, Measure.AMOUNT)),
    _tally("net_spent", Value.MONEY, Term(ORDERS, Measure.AMOUNT), Term(REFUNDS, Measure.AMOUNT, -1)),
    Criterion("order_value", Kind.ANY_ENTRY, Value.MONEY, ORDERING, frozenset({ORDERS}), stream=ORDERS),
    _tally("items", Value.COUNT, Term(ORDERS, Measure.UNITS)),
    _tally("bought_product", Value.COUNT, Term(ORDERS, Measure.COUNT), item="product"),
    _tally("bought_category", Value.COUNT, Term(ORDERS, Measure.COUNT), item="category"),
    _tally("bought_brand", Value.COUNT, Term(ORDERS, Measure.COUNT), item="brand"),
    _tally("refunds", Value.COUNT, Term(REFUNDS, Measure.COUNT)),
    _tally("email_engaged", Value.COUNT, Term(EMAILS, Measure.COUNT)),
    Criterion("open_cart_value", Kind.CURRENT, Value.MONEY, MONEY, frozenset({"open_carts"})),
    _moment("last_abandoned_cart_at", "last_cart_abandoned"),
    _moment("last_cart_created_at", "last_cart_created"),
    _moment("last_order_at", ORDERS),
    _moment("first_order_at", ORDERS),
    _moment("registered_at", "registered", "first_seen"),
    _moment("last_active_at", "last_active"),
    Criterion("attribute", Kind.ATTRIBUTE, Value.ANY, ANYTHING, frozenset({"attributes"})),
    Criterion("store", Kind.LABEL, Value.NAME, NAMING, frozenset({"stores"})),
    Criterion("stores", Kind.CURRENT, Value.COUNT, COUNTING, frozenset({"stores"})),
    Criterion("in_segment", Kind.SEGMENT, Value.NAME, NAMING, frozenset()),
)}

PRODUCT_CRITERIA: dict[str, Criterion] = {c.name: c for c in (
    _tally("units", Value.COUNT, Term(SALES, Measure.UNITS)),
    _tally("revenue", Value.MONEY, Term(SALES, Measure.AMOUNT)),
    _tally("orders", Value.COUNT, Term(SALES, Measure.COUNT)),
    _tally("abandoned_carts", Value.COUNT, Term(ABANDONS, Measure.COUNT)),
    _moment("last_sold_at", SALES),
    Criterion("category", Kind.LABEL, Value.NAME, NAMING, frozenset({"category"})),
    Criterion("brand", Kind.LABEL, Value.NAME, NAMING, frozenset({"brand"})),
    Criterion("attribute", Kind.ATTRIBUTE, Value.ANY, ANYTHING, frozenset({"attributes"})),
    Criterion("in_segment", Kind.SEGMENT, Value.NAME, NAMING, frozenset()),
)}

CRITERIA: dict[Subject, dict[str, Criterion]] = {Subject.CUSTOMER: CUSTOMER_CRITERIA, Subject.PRODUCT: PRODUCT_CRITERIA}
