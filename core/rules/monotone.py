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

from collections.abc import Iterable, Mapping
from enum import Enum

from core.rules.criteria import CRITERIA
from core.rules.facts import Facts
from core.rules.tree import (
    After,
    AllOf,
    AnyEntry,
    AnyOf,
    Attribute,
    Before,
    Current,
    Exists,
    InSegment,
    Label,
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


def growth_of(old: Facts, new: Facts, changed: Iterable[str]) -> frozenset[tuple[str, Change]]:
    """How each of the `changed` facts moved from `old` to `new` (as pairs: a key to cache by)."""
    streams = type(new).STREAMS
    out: list[tuple[str, Change]] = []
    for name in changed:
        a, b = getattr(old, name), getattr(new, name)
        if name in streams:  # entries are only ever inserted one at a time (flows/membership.py)
            if len(b) != len(a) + 1:
                change = Change.OTHER
            elif a:
                change = Change.GREW
            else:
                i = streams.index(name)
                change = Change.GREW if any(p.totals[i].count for p in old.history) else Change.FROM_NOTHING
        elif name == "last_active":
            change = Change.FROM_NOTHING if a is None else Change.LATER if b is not None and b > a else Change.OTHER
        elif name == "stores":
            change = Change.GREW if len(b) > len(a) and set(a) <= set(b) else Change.OTHER
        else:
            change = Change.OTHER
        out.append((name, change))
    return frozenset(out)


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
        moved = [t.sign if growth[t.stream] in (Change.GREW, Change.FROM_NOTHING) else ANY
                 for t in rule.sum.terms if t.stream in growth]
        return _ordered(rule.compare.op, _combine(moved))
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


def _combine(directions: Iterable[Direction]) -> Direction:
    found = {d for d in directions if d is not None}
    if not found:
        return None
    return found.pop() if len(found) == 1 else ANY
