"""What the rules read about one customer or one product: compact, typed, immutable facts.

The dataflow keeps one CustomerFacts per customer (and one ProductFacts per product), replaces it
when an event changes it, and hands it to the evaluator with "now". Dated entries (paid orders,
refunds, e-mail engagement, sales, abandoned carts) are kept one by one only while some segment's
`within` window can still see them; older ones are folded into `history`, a few totals per period
(core/rules/keep.py). That is what bounds the state: see docs/segments.md, "What is kept".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import ClassVar

from core.rules.tree import ItemFilter

AttributeValue = str | int | Decimal | bool
Attributes = tuple[tuple[str, AttributeValue], ...]  # (name, value), sorted by name


@dataclass(frozen=True, slots=True)
class Entry:
    """One dated entry: a paid order, a refund, an open cart, a product's sale.

    `amount` is in minor units of `currency`: an order's amount as paid, a refund's total, an open
    cart's value, a sale's sum of quantity x unit price. `units` is the sum of item quantities.
    `products`, `categories` and `brands` name what an order contained; only the names some segment
    asks about are kept (see keep.py).
    """

    time: int
    currency: str = ""
    amount: int = 0
    units: int = 0
    products: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    brands: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Totals:
    """What is kept of the entries of one stream folded into one period."""

    count: int = 0
    units: int = 0
    amount: int = 0  # minor units of the organisation's currency, each entry converted at its own day
    first: int | None = None  # earliest entry time
    last: int | None = None  # latest entry time
    largest: int | None = None  # the largest entry's amount (organisation's currency)
    smallest: int | None = None
    bought: tuple[tuple[ItemFilter, int], ...] = ()  # entries naming each kept product, category or brand


NO_TOTALS = Totals()


@dataclass(frozen=True, slots=True)
class Period:
    """The entries folded out of the recent lists whose time is in [start, end) (None: unbounded),
    one Totals per stream in the order of the facts' STREAMS."""

    start: int | None
    end: int | None
    totals: tuple[Totals, ...]


@dataclass(frozen=True, slots=True)
class CustomerFacts:
    """One customer, as the customer rules read it. Times are ms since the epoch (UTC)."""

    STREAMS: ClassVar[tuple[str, ...]] = ("orders", "refunds", "emails")

    first_seen: int  # the earliest event naming the customer
    registered: int | None = None  # account creation; registered_at is this, else first_seen
    last_active: int | None = None  # latest event the customer did (not the shop's updates)
    stores: tuple[str, ...] = ()  # every store an event named the customer at, sorted
    attributes: Attributes = ()  # custom fields (vendor or events API): attributes_of(...)
    orders: tuple[Entry, ...] = ()  # paid orders not yet folded into history
    refunds: tuple[Entry, ...] = ()  # refunds (by refund time) not yet folded
    emails: tuple[int, ...] = ()  # times of e-mail opens and clicks (campaign or automation) not yet folded
    open_carts: tuple[Entry, ...] = ()  # open carts now: time of last activity, value
    last_cart_created: int | None = None
    last_cart_abandoned: int | None = None  # when the latest abandoned cart was counted abandoned
    history: tuple[Period, ...] = ()  # folded entries, oldest period first


@dataclass(frozen=True, slots=True)
class ProductFacts:
    """One product, as the product rules read it: one sale per paid order containing it."""

    STREAMS: ClassVar[tuple[str, ...]] = ("sales", "abandons")

    category: str = ""
    brand: str = ""
    attributes: Attributes = ()
    sales: tuple[Entry, ...] = ()  # per paid order: time, currency, amount (qty x unit price), units
    abandons: tuple[int, ...] = ()  # times at which carts containing it were counted abandoned
    history: tuple[Period, ...] = ()


Facts = CustomerFacts | ProductFacts

_INPUTS = {cls: tuple(f.name for f in fields(cls) if f.name != "history") for cls in (CustomerFacts, ProductFacts)}


def changed_inputs(old: Facts | None, new: Facts) -> frozenset[str]:
    """The facts (field names, as criteria's `reads` and `inputs` name them) that differ: the segments
    reading none of them keep their value. Folding history changes no input."""
    names = _INPUTS[type(new)]
    if old is None:
        return frozenset(names)
    return frozenset([n for n in names if (a := getattr(old, n)) is not (b := getattr(new, n)) and a != b])


def attributes_of(fields: Mapping[str, object]) -> Attributes:
    """Custom fields as the facts keep them: sorted (name, value) pairs of the values rules can
    compare (attribute_value); the others are left out."""
    kept = ((name, attribute_value(raw)) for name, raw in fields.items())
    return tuple(sorted((name, value) for name, value in kept if value is not None))


def attribute(facts: Facts, name: str) -> AttributeValue | None:
    """The value of a custom field; None when the facts have none."""
    for key, value in facts.attributes:
        if key == name:
            return value
    return None


def attribute_value(raw: object) -> AttributeValue | None:
    """A custom field as the rules compare it: text, whole number, decimal (a JSON number with a
    fraction, exactly as written) or true/false. Lists, objects, null, NaN: not kept (None)."""
    if isinstance(raw, bool | int | str):
        return raw
    if isinstance(raw, float) and math.isfinite(raw):
        return Decimal(repr(raw))
    if isinstance(raw, Decimal) and raw.is_finite():
        return raw
    return None
