"""Which way a rule can move when its facts grow: what lets the dataflow skip the rules an event cannot flip.

Most inputs only add to a customer's facts: a paid order is one more entry in `orders` (amounts and
units are never negative: core/limits.py), an e-mail open one more in `emails`, any event moves
`last_active` later, a new store joins `stores`. Under such a growth a condition moves one way only,
at every instant at once: `orders >= 3` can turn true but never false, `last_order_at before 90d` can
turn false but never true. Such directions compose: `all` and `any` of conditions that can only turn
true can only turn true, `not` flips the direction.

So when the facts of a customer grew in a known way (`Growth`), a segment whose rule can only turn
true and that the customer is already a member of stays a member, now and at every later instant
(its value with the new facts is at least its value with the old ones, instant by instant); so its
pending timer, taken from the old facts, is still no later than its next change. The mirror holds for
a rule that can only turn false and a non-member. The dataflow skips those (flows/membership.py);
the rules whose direction is unknown (`ANY`) are evaluated as before.

    growth = {"orders": GREW, "last_active": LATER}
    direction(rule, growth)  # UP, DOWN, ANY, or None: the rule reads none of these facts
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from enum import Enum

from core.rules.criteria import CRITERIA
from core.rules.facts import Entry, Facts
from core.rules.tree import (
    EVER,
    After,
    AllOf,
    AnyEntry,
    AnyOf,
    Attribute,
    Before,
    Compare,
    Current,
    Exists,
    InSegment,
    ItemFilter,
    Label,
    Measure,
    Moment,
    Not,
    Op,
    Rule,
    Tally,
)


class Change(Enum):
    """How one fact changed."""

    GREW = "grew"  # a stream gained one entry, or `stores` gained a store; it had some before
    FROM_NOTHING = "from_nothing"  # a stream's first entry ever, or `last_active` set for the first time
    LATER = "later"  # `last_active` moved later
    OTHER = "other"  # anything else (carts, attributes, registration, an entry taken back ...)


Growth = Mapping[str, Change]  # fact (field of CustomerFacts / ProductFacts) -> how it changed

UP, DOWN, ANY = 1, -1, 0  # can only turn true / can only turn false / either
Direction = int | None  # None: reads none of the changed facts

_READS = {name: c.reads for table in CRITERIA.values() for name, c in table.items()}
_LATEST = frozenset({"last_order_at", "last_sold_at", "last_active_at"})  # the latest time of what they read
_EARLIEST = frozenset({"first_order_at"})  # the earliest


def growth_of(old: Facts, new: Facts, changed: Iterable[str],
              items: Collection[ItemFilter] = ()) -> frozenset[tuple[str, Change]]:
    """How each of the `changed` facts moved from `old` to `new` (as pairs: a key to cache by), and
    which of `items` (those the rules filter sums by: Keep.items) an entry gained names."""
    streams = type(new).STREAMS
    out: list[tuple[str, Change]] = []
    for name in changed:
        a, b = getattr(old, name), getattr(new, name)
        if name in streams:  # entries are only ever inserted one at a time (flows/membership.py)
            if len(b) != len(a) + 1:
                change = Change.OTHER
            else:
                if a:
                    change = Change.GREW
                else:
                    i = streams.index(name)
                    change = Change.GREW if any(p.totals[i].count for p in old.history) else Change.FROM_NOTHING
                if items:  # only the names a rule filters by: a key per order's products would defeat the caches
                    entry = _inserted(a, b)
                    named = _named(entry) if isinstance(entry, Entry) else [(i.field, i.name) for i in items]
                    out += ((item_key(name, field, n), change) for field, n in named if ItemFilter(field, n) in items)
        elif name == "last_active":
            change = Change.FROM_NOTHING if a is None else Change.LATER if b is not None and b > a else Change.OTHER
        elif name == "stores":
            change = Change.GREW if len(b) > len(a) and set(a) <= set(b) else Change.OTHER
        else:
            change = Change.OTHER
        out.append((name, change))
    return frozenset(out)


def item_key(stream: str, field: str, name: str) -> str:
    """The growth's key saying that the entry a stream gained names `name` in `field` (products,
    categories, brands): an item-filtered sum over that stream moved only when it is there."""
    return f"{stream}:{field}:{name}"


def _inserted(old: tuple[object, ...], new: tuple[object, ...]) -> object:
    """The one entry `new` holds beyond `old` (inserted in time order: most often the last)."""
    if not old or new[-1] is not old[-1]:
        return new[-1]
    return next(e for e, o in zip(new, old) if e is not o)


def _named(entry: Entry) -> list[tuple[str, str]]:
    """(field, name) for every product, category and brand an entry names. (A time-only entry counts
    in every filtered sum over its stream, as evaluate.py's _term counts it: growth_of names them all.)"""
    return [(field, n) for field in ("products", "categories", "brands") for n in getattr(entry, field)]


def direction(rule: Rule, growth: Growth) -> Direction:
    """Which way `rule`'s value can move, at every instant, when the facts changed as `growth` says."""
    if isinstance(rule, AllOf | AnyOf):
        return _combine(direction(r, growth) for r in rule.rules)
    if isinstance(rule, Not):
        d = direction(rule.rule, growth)
        return None if d is None else -d
    if isinstance(rule, InSegment):
        return ANY  # what the named segments read is not followed here: evaluated whenever touched
    if isinstance(rule, Tally):
        if _had_some(rule, growth):
            return None
        item = rule.sum.item
        moved = [t.sign if growth[t.stream] in (Change.GREW, Change.FROM_NOTHING) else ANY
                 for t in rule.sum.terms if t.stream in growth
                 # an entry not naming the item leaves an item-filtered sum as it was
                 and (item is None or growth[t.stream] is Change.OTHER or item_key(t.stream, item.field, item.name) in growth)]
        d = _combine(moved)
        if d == UP and all(t.sign > 0 for t in rule.sum.terms):
            return _ordered_from_zero(rule.compare, d)
        return _ordered(rule.compare.op, d)
    if isinstance(rule, AnyEntry):
        change = growth.get(rule.stream)
        return None if change is None else UP if change in (Change.GREW, Change.FROM_NOTHING) else ANY
    if isinstance(rule, Attribute):
        return ANY if "attributes" in growth else None
    reads = [growth[name] for name in _READS[rule.criterion] if name in growth]
    if not reads:
        return None
    if len(reads) > 1 or reads[0] is Change.OTHER:
        return ANY
    change = reads[0]
    if isinstance(rule, Moment):
        return _moment(rule, change)
    if isinstance(rule, Current):  # `stores` counted (open_cart_value reads carts: OTHER, above)
        return _ordered(rule.compare.op, UP) if change is Change.GREW else ANY
    if isinstance(rule, Label):  # `store`: the set of stores only grows
        if change is not Change.GREW:
            return ANY
        return DOWN if rule.compare.op is Op.NE else UP
    return ANY


def _moment(rule: Moment, change: Change) -> Direction:
    test = rule.test
    if isinstance(test, Exists):
        return UP if test.present else DOWN
    if change is Change.FROM_NOTHING:
        return UP  # no time: every other test was false, at every instant
    if rule.criterion in _LATEST and change in (Change.GREW, Change.LATER):
        later = True  # the latest time can only move later (an older entry leaves it as it was)
    elif rule.criterion in _EARLIEST and change is Change.GREW:
        later = False  # the earliest can only move earlier
    else:
        return ANY
    if isinstance(test, Before):  # time <= now - ago (or < at): an earlier time makes it truer
        return DOWN if later else UP
    if isinstance(test, After):
        return UP if later else DOWN
    return ANY  # `on` a day: a time moving either way can enter or leave it


def _ordered(op: Op, moved: Direction) -> Direction:
    """A comparison of a number that moved one way."""
    if moved is None or moved == ANY:
        return moved
    if op in (Op.GT, Op.GTE):
        return moved
    if op in (Op.LT, Op.LTE):
        return -moved
    return ANY  # eq, ne, between, in: a number can pass through them


def _had_some(rule: Tally, growth: Growth) -> bool:
    """"Has ever done it" (a lifetime count >= 1) of a stream that grew: it held before (a stream
    grows only from some entries, else it is FROM_NOTHING) and holds after, at every instant."""
    s, c = rule.sum, rule.compare
    if len(s.terms) != 1 or s.item is not None or s.window != EVER:
        return False
    t = s.terms[0]
    return (t.measure is Measure.COUNT and t.sign > 0 and growth.get(t.stream) is Change.GREW
            and (c.op is Op.GTE and c.value == 1 or c.op is Op.GT and c.value == 0))


def _ordered_from_zero(c: Compare, moved: Direction) -> Direction:
    """A comparison of a sum of counts, units or amounts (never below 0: core/limits.py) that grew:
    a comparison true only at or below 0 can only turn false, one false only there only true."""
    if c.op is Op.EQ and isinstance(c.value, int) and c.value <= 0:
        return DOWN
    if c.op is Op.NE and isinstance(c.value, int) and c.value <= 0:
        return UP
    if c.op is Op.BETWEEN and isinstance(c.value, tuple) and isinstance(c.value[0], int) and c.value[0] <= 0:
        return DOWN
    return _ordered(c.op, moved)


def _combine(directions: Iterable[Direction]) -> Direction:
    found = {d for d in directions if d is not None}
    if not found:
        return None
    return found.pop() if len(found) == 1 else ANY
