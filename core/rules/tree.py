"""The typed rule: what `parse_rule` builds and the evaluator reads.

Every node is a frozen dataclass, so a rule is immutable, hashable and equal to any other rule that
says the same thing. Instants are milliseconds since the epoch (UTC), durations milliseconds, money
integer minor units of the organisation's currency: parsing resolved every date, duration and amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum


class Op(StrEnum):
    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BETWEEN = "between"  # value: (low, high), both included
    IN = "in"  # value: the candidates
    EXISTS = "exists"  # value: True or False


Scalar = int | Decimal | str | bool


@dataclass(frozen=True, slots=True)
class Compare:
    op: Op
    value: Scalar | tuple[Scalar, ...]


@dataclass(frozen=True, slots=True)
class Window:
    """Which dated entries count: time > now - within, time >= since, time < until (each when set)."""

    within: int | None = None  # ms
    since: int | None = None  # the local midnight that starts the `since` day
    until: int | None = None  # the local midnight that ends the `until` day


EVER = Window()


class Measure(StrEnum):
    COUNT = "count"  # how many entries
    UNITS = "units"  # sum of their units
    AMOUNT = "amount"  # sum of their amounts, each converted to the organisation's currency at its day


@dataclass(frozen=True, slots=True)
class Term:
    """One sum over one stream of entries (`orders`, `refunds`, `emails`, `sales`, `abandons`)."""

    stream: str
    measure: Measure
    sign: int = 1


@dataclass(frozen=True, slots=True)
class ItemFilter:
    """Entries whose `field` (`products`, `categories` or `brands`) names `name`."""

    field: str
    name: str


@dataclass(frozen=True, slots=True)
class Sum:
    """A number summed over the entries in a window: each term's measure, added or subtracted.
    Only the entries naming `item` count, when one is given."""

    terms: tuple[Term, ...]
    window: Window = EVER
    item: ItemFilter | None = None


@dataclass(frozen=True, slots=True)
class Tally:
    """A sum compared: orders, spent, items, refunds ... Segments that sum alike share one Sum."""

    criterion: str
    sum: Sum
    compare: Compare


@dataclass(frozen=True, slots=True)
class AnyEntry:
    """At least one entry in the window whose amount compares true: order_value."""

    criterion: str
    stream: str
    compare: Compare
    window: Window = EVER


@dataclass(frozen=True, slots=True)
class Before:
    """The time is at least `ago` ms before now (time <= now - ago), or before the instant `at`."""

    ago: int | None = None
    at: int | None = None


@dataclass(frozen=True, slots=True)
class After:
    """The time is less than `ago` ms before now (time > now - ago), or at or after the instant `at`."""

    ago: int | None = None
    at: int | None = None


@dataclass(frozen=True, slots=True)
class On:
    """The time falls on the local day `days_ago` days before today, or in [start, end)."""

    days_ago: int | None = None
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True, slots=True)
class Exists:
    present: bool


TimeTest = Before | After | On | Exists


@dataclass(frozen=True, slots=True)
class Moment:
    """A time criterion: last_order_at, registered_at, last_active_at ..."""

    criterion: str
    test: TimeTest


@dataclass(frozen=True, slots=True)
class Current:
    """A number the facts hold now, compared: open_cart_value, stores."""

    criterion: str
    compare: Compare


@dataclass(frozen=True, slots=True)
class Label:
    """A name the facts hold (a set of stores, a product's category or brand), compared with eq, ne or in."""

    criterion: str
    compare: Compare


@dataclass(frozen=True, slots=True)
class Attribute:
    name: str
    compare: Compare


@dataclass(frozen=True, slots=True)
class InSegment:
    """Membership of other segments: eq (a member of it), ne (not a member), in (a member of one of them)."""

    compare: Compare


@dataclass(frozen=True, slots=True)
class AllOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class AnyOf:
    rules: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class Not:
    rule: Rule


Condition = Tally | AnyEntry | Moment | Current | Label | Attribute | InSegment
Rule = AllOf | AnyOf | Not | Condition
