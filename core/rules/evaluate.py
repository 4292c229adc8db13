"""Whether a rule holds for some facts at an instant, and the next instant its value can change.

    holds(rule, facts, now, ctx)        -> bool
    next_change(rule, facts, now, ctx)  -> int | None
    evaluate(rule, facts, now, ctx)     -> (holds, next_change), in one pass

`now` is the organisation's watermark (ms since the epoch, UTC). The facts are read as they are: an
entry counts wherever its time puts it, also after `now`. With the facts fixed, a rule's value moves
only when `now` crosses an instant the facts determine (an entry leaving a window at time + within,
a time turning "before 90d" at time + 90 days, a local midnight for `on`); `next_change` returns the
earliest such instant after `now` at which the value may change (never later than a change; for
`all`/`any`, possibly earlier), or None when it cannot change without a new fact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation

from core.rules.context import Context
from core.rules.facts import CustomerFacts, Entry, Facts, Period, ProductFacts, Totals
from core.rules.tree import (After, AllOf, AnyEntry, AnyOf, Attribute, Before, Compare, Current, Exists, InSegment,
                             ItemFilter, Label, Measure, Moment, Not, On, Op, Rule, Scalar, Tally, Term, Window)

Next = int | None


def holds(rule: Rule, facts: Facts, now: int, ctx: Context) -> bool:
    """Whether `rule` holds for `facts` at `now`."""
    if isinstance(rule, AllOf):
        return all(holds(r, facts, now, ctx) for r in rule.rules)
    if isinstance(rule, AnyOf):
        return any(holds(r, facts, now, ctx) for r in rule.rules)
    if isinstance(rule, Not):
        return not holds(rule.rule, facts, now, ctx)
    return _CONDITIONS[type(rule)](rule, facts, now, ctx)[0]


def next_change(rule: Rule, facts: Facts, now: int, ctx: Context) -> int | None:
    """The earliest instant after `now` at which `rule`'s value may change with these facts; None: never."""
    return evaluate(rule, facts, now, ctx)[1]


def evaluate(rule: Rule, facts: Facts, now: int, ctx: Context) -> tuple[bool, int | None]:
    """(holds, next_change) of `rule` in one pass."""
    if isinstance(rule, AllOf | AnyOf):
        return _combine(rule, [evaluate(r, facts, now, ctx) for r in rule.rules])
    if isinstance(rule, Not):
        value, at = evaluate(rule.rule, facts, now, ctx)
        return not value, at
    return _CONDITIONS[type(rule)](rule, facts, now, ctx)


def _combine(rule: AllOf | AnyOf, parts: list[tuple[bool, Next]]) -> tuple[bool, Next]:
    """`all` is decided by its false parts while it has some: it can turn true only once every one of
    them has turned, so not before the latest of their changes; while all are true, it turns false at
    the first change of any. `any` is the mirror image."""
    decisive = isinstance(rule, AnyOf)  # the value of a part that decides alone: false for all, true for any
    value = not decisive if all(v != decisive for v, _ in parts) else decisive
    if value == decisive:
        deciders = [at for v, at in parts if v == decisive]
        return value, None if None in deciders else max(deciders)  # type: ignore[type-var]
    return value, _earliest(at for _, at in parts)


def _earliest(instants: Iterable[Next]) -> Next:
    return min((t for t in instants if t is not None), default=None)


# --- windows and sums --------------------------------------------------------------------------


def _in_window(t: int, w: Window, now: int) -> bool:
    return ((w.within is None or t > now - w.within) and (w.since is None or t >= w.since)
            and (w.until is None or t < w.until))


def _period_in_window(p: Period, w: Window) -> bool:
    """Folded periods count only for windows without `within` (they hold nothing a `within` window can
    see, see keep.py), and only when the period lies inside since/until."""
    return (w.within is None and (w.since is None or (p.start is not None and p.start >= w.since))
            and (w.until is None or (p.end is not None and p.end <= w.until)))


def _stream(facts: Facts, name: str) -> tuple[tuple[Entry, ...] | tuple[int, ...], int]:
    """A stream's recent entries, and its index in the history's totals."""
    return getattr(facts, name), type(facts).STREAMS.index(name)


def _names(e: Entry, field: str) -> tuple[str, ...]:
    return e.products if field == "products" else e.categories if field == "categories" else e.brands


def _contribution(e: Entry | int, measure: Measure, item: ItemFilter | None, ctx: Context) -> int:
    """What one entry adds to a sum (time-only entries, such as e-mail engagement, count 1)."""
    if isinstance(e, int):
        return 1
    if item is not None and item.name not in _names(e, item.field):
        return 0
    if measure is Measure.COUNT:
        return 1
    if measure is Measure.UNITS:
        return e.units
    return ctx.value(e.amount, e.currency, e.time)


def _folded(t: Totals, measure: Measure, item: ItemFilter | None) -> int:
    if item is not None:
        return sum(n for kept, n in t.bought if kept == item)
    return t.count if measure is Measure.COUNT else t.units if measure is Measure.UNITS else t.amount


def _sum(term: Term, node: Tally, facts: Facts, now: int, ctx: Context, leaving: list[tuple[int, int]]) -> int:
    """The term's sum over the window now; appends (instant it leaves, -what it adds) per entry that
    will leave the window."""
    entries, index = _stream(facts, term.stream)
    w, total = node.window, 0
    for e in entries:
        t = e if isinstance(e, int) else e.time
        if _in_window(t, w, now):
            add = term.sign * _contribution(e, term.measure, node.item, ctx)
            total += add
            if w.within is not None and add:
                leaving.append((t + w.within, -add))
    for p in facts.history:
        if _period_in_window(p, w):
            total += term.sign * _folded(p.totals[index], term.measure, node.item)
    return total


def _tally(node: Tally, facts: Facts, now: int, ctx: Context) -> tuple[bool, Next]:
    leaving: list[tuple[int, int]] = []
    total = sum(_sum(term, node, facts, now, ctx, leaving) for term in node.terms)
    value = _compare(node.compare, total)
    leaving.sort()
    i = 0
    while i < len(leaving):  # walk the departures in time order until the comparison turns
        at = leaving[i][0]
        while i < len(leaving) and leaving[i][0] == at:
            total += leaving[i][1]
            i += 1
        if _compare(node.compare, total) != value:
            return value, at
    return value, None


def _any_entry(node: AnyEntry, facts: Facts, now: int, ctx: Context) -> tuple[bool, Next]:
    entries, index = _stream(facts, node.stream)
    w, c = node.window, node.compare
    last_leaving = None
    for e in entries:
        assert isinstance(e, Entry)
        if _in_window(e.time, w, now) and _compare(c, ctx.value(e.amount, e.currency, e.time)):
            if w.within is None:
                return True, None
            last_leaving = max(last_leaving or 0, e.time + w.within)
    if last_leaving is not None:
        return True, last_leaving  # true until the last matching entry has left
    for p in facts.history:
        t = p.totals[index]
        if _period_in_window(p, w) and t.count:
            extreme = t.largest if c.op in (Op.GT, Op.GTE) else t.smallest
            if extreme is not None and _compare(c, extreme):
                return True, None
    return False, None


# --- times -------------------------------------------------------------------------------------


def _latest(facts: Facts, stream: str) -> int | None:
    entries, index = _stream(facts, stream)
    times = [e if isinstance(e, int) else e.time for e in entries]
    times += [t for p in facts.history if (t := p.totals[index].last) is not None]
    return max(times, default=None)


def _earliest_entry(facts: Facts, stream: str) -> int | None:
    entries, index = _stream(facts, stream)
    times = [e if isinstance(e, int) else e.time for e in entries]
    times += [t for p in facts.history if (t := p.totals[index].first) is not None]
    return min(times, default=None)


def _customer(facts: Facts) -> CustomerFacts:
    assert isinstance(facts, CustomerFacts)
    return facts


_TIMES: dict[str, Callable[[Facts], int | None]] = {
    "last_order_at": lambda f: _latest(f, "orders"),
    "first_order_at": lambda f: _earliest_entry(f, "orders"),
    "last_sold_at": lambda f: _latest(f, "sales"),
    "registered_at": lambda f: r if (r := _customer(f).registered) is not None else _customer(f).first_seen,
    "last_active_at": lambda f: _customer(f).last_active,
    "last_cart_created_at": lambda f: _customer(f).last_cart_created,
    "last_abandoned_cart_at": lambda f: _customer(f).last_cart_abandoned,
}


def _moment(node: Moment, facts: Facts, now: int, ctx: Context) -> tuple[bool, Next]:
    t = _TIMES[node.criterion](facts)
    test = node.test
    if isinstance(test, Exists):
        return (t is not None) == test.present, None
    if t is None:
        return False, None
    if isinstance(test, Before | After):
        if test.ago is None:
            assert test.at is not None
            return (t < test.at if isinstance(test, Before) else t >= test.at), None
        turns = t + test.ago  # "before" holds from this instant on, "after" until it
        return (now >= turns if isinstance(test, Before) else now < turns), turns if turns > now else None
    assert isinstance(test, On)
    if test.days_ago is None:
        assert test.start is not None and test.end is not None
        return test.start <= t < test.end, None
    day = ctx.day(t) + test.days_ago  # the local day on which it holds
    start, end = ctx.midnight(day), ctx.midnight(day + 1)
    return start <= now < end, start if now < start else end if now < end else None


# --- values now --------------------------------------------------------------------------------


def _current(node: Current, facts: Facts, now: int, ctx: Context) -> tuple[bool, Next]:
    f = _customer(facts)
    if node.criterion == "stores":
        return _compare(node.compare, len(f.stores)), None
    total = sum(ctx.value(c.amount, c.currency, c.time) for c in f.open_carts)
    return _compare(node.compare, total), None


def _label(node: Label, facts: Facts, now: int, ctx: Context) -> tuple[bool, Next]:
    if isinstance(facts, ProductFacts):
        value = facts.category if node.criterion == "category" else facts.brand
        names: tuple[str, ...] = (value,) if value else ()
    else:
        names = facts.stores
    c = node.compare
    if c.op is Op.EQ:
        return c.value in names, None
    if c.op is Op.NE:
        return c.value not in names, None
    assert isinstance(c.value, tuple)
    return any(v in names for v in c.value), None


def _attribute(node: Attribute, facts: Facts, now: int, ctx: Context) -> tuple[bool, Next]:
    present = node.name in facts.attributes
    c = node.compare
    if c.op is Op.EXISTS:
        return present == c.value, None
    if not present:
        return False, None
    return compare_attribute(c, facts.attributes[node.name]), None


def _in_segment(node: InSegment, facts: Facts, now: int, ctx: Context) -> tuple[bool, Next]:
    c = node.compare
    ids = c.value if isinstance(c.value, tuple) else (c.value,)
    parts = [evaluate(_segment(ctx, str(i)), facts, now, ctx) for i in ids]
    at = _earliest(a for _, a in parts)
    if c.op is Op.NE:
        return not parts[0][0], at
    return any(v for v, _ in parts), at


def _segment(ctx: Context, segment: str) -> Rule:
    rule = ctx.segments.get(segment)
    if rule is None:
        raise KeyError(f'in_segment names "{segment}", which is not a segment of this organisation')
    return rule


_CONDITIONS: dict[type, Callable[..., tuple[bool, Next]]] = {
    Tally: _tally, AnyEntry: _any_entry, Moment: _moment, Current: _current, Label: _label,
    Attribute: _attribute, InSegment: _in_segment,
}


# --- comparisons -------------------------------------------------------------------------------


def _compare(c: Compare, x: int) -> bool:
    """A number (count, units, minor units) against a comparison of the same kind."""
    op, v = c.op, c.value
    if op is Op.GTE:
        return x >= v  # type: ignore[operator]
    if op is Op.GT:
        return x > v  # type: ignore[operator]
    if op is Op.LTE:
        return x <= v  # type: ignore[operator]
    if op is Op.LT:
        return x < v  # type: ignore[operator]
    if op is Op.EQ:
        return x == v
    if op is Op.NE:
        return x != v
    if op is Op.BETWEEN:
        return v[0] <= x <= v[1]  # type: ignore[index,operator]
    assert op is Op.IN
    return x in v  # type: ignore[operator]


def compare_attribute(c: Compare, value: Scalar) -> bool:
    """A custom field the facts hold against a comparison: numbers with numbers, texts with texts,
    true/false with true/false; a text holding a decimal number ("32") compares as that number with a
    number. Of different kinds, `eq` and the orderings are false and `ne` is true."""
    if c.op is Op.IN:
        assert isinstance(c.value, tuple)
        return any(compare_attribute(Compare(Op.EQ, v), value) for v in c.value)
    if c.op is Op.BETWEEN:
        assert isinstance(c.value, tuple)
        low, high = c.value
        above, below = _like(value, low), _like(value, high)
        return above is not None and below is not None and above[1] <= above[0] <= below[1]  # type: ignore[operator]
    pair = _like(value, c.value)  # type: ignore[arg-type]
    if pair is None:
        return c.op is Op.NE
    x, v = pair
    if c.op is Op.EQ:
        return x == v
    if c.op is Op.NE:
        return x != v
    if c.op is Op.GT:  # parse_rule refuses orderings on true/false
        return x > v  # type: ignore[operator]
    if c.op is Op.GTE:
        return x >= v  # type: ignore[operator]
    if c.op is Op.LT:
        return x < v  # type: ignore[operator]
    return x <= v  # type: ignore[operator]


def _like(value: Scalar, wanted: Scalar) -> tuple[Scalar, Scalar] | None:
    """(value, wanted) made comparable, or None when they are of different kinds."""
    if isinstance(wanted, bool) or isinstance(value, bool):
        return (value, wanted) if isinstance(wanted, bool) and isinstance(value, bool) else None
    if isinstance(wanted, str):
        return (value, wanted) if isinstance(value, str) else None
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
        return (number, wanted) if number.is_finite() else None
    return value, wanted
