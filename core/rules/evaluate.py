"""Whether a rule holds for some facts at an instant, and the next instant its value can change.

    holds(rule, facts, now, ctx)        -> bool
    next_change(rule, facts, now, ctx)  -> int | None
    evaluate(rule, facts, now, ctx)     -> (holds, next_change), in one pass
    Run(facts, now, ctx).evaluate(rule) -> the same, sharing sums between the rules of one run

`now` is the organisation's watermark (ms since the epoch, UTC). The facts are read as they are: an
entry counts wherever its time puts it, also after `now`. With the facts fixed, a rule's value moves
only when `now` crosses an instant the facts determine (an entry leaving a window at time + within,
a time turning "before 90d" at time + 90 days, a local midnight for `on`); `next_change` returns the
earliest such instant after `now` at which the value may change (never later than a change; for
`all`/`any`, possibly earlier), or None when it cannot change without a new fact.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from decimal import Decimal, InvalidOperation

from core.rules.context import Context
from core.rules.facts import CustomerFacts, Entry, Facts, Period, ProductFacts, Totals, attribute
from core.rules.tree import (
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
    On,
    Op,
    Rule,
    Scalar,
    Sum,
    Tally,
    Window,
)

Next = int | None
Result = tuple[bool, Next]
_NEVER, _FOREVER = -(2**63), 2**63  # below and above every instant


def holds(rule: Rule, facts: Facts, now: int, ctx: Context) -> bool:
    """Whether `rule` holds for `facts` at `now`."""
    return Run(facts, now, ctx).holds(rule)


def next_change(rule: Rule, facts: Facts, now: int, ctx: Context) -> int | None:
    """The earliest instant after `now` at which `rule`'s value may change with these facts; None: never."""
    return Run(facts, now, ctx).evaluate(rule)[1]


def evaluate(rule: Rule, facts: Facts, now: int, ctx: Context) -> tuple[bool, int | None]:
    """(holds, next_change) of `rule` in one pass."""
    return Run(facts, now, ctx).evaluate(rule)


class Run:
    """The evaluation of rules over one customer's (or product's) facts at one instant. A sum that
    several rules compute (lifetime orders, spend in 90 days ...) is computed once per run: rules
    parsed apart hold equal Sums, SegmentSet makes them the same object, and the run keeps each by
    identity. So is a segment that in_segment names."""

    __slots__ = ("facts", "now", "ctx", "_sums", "results", "_times")

    def __init__(self, facts: Facts, now: int, ctx: Context) -> None:
        self.facts, self.now, self.ctx = facts, now, ctx
        self._sums: dict[int, tuple[int, list[tuple[int, int]]]] = {}
        self.results: dict[int, Result] = {}  # id(rule) -> its result (SegmentSet.evaluate fills it too)
        self._times: dict[str, int | None] = {}

    def holds(self, rule: Rule) -> bool:
        if isinstance(rule, AllOf):
            return all(self.holds(r) for r in rule.rules)
        if isinstance(rule, AnyOf):
            return any(self.holds(r) for r in rule.rules)
        if isinstance(rule, Not):
            return not self.holds(rule.rule)
        return _CONDITIONS[type(rule)](rule, self)[0]

    def evaluate(self, rule: Rule) -> Result:
        return compiled(rule)(self)

    def segment(self, segment: str) -> Result:
        """The value and next change of a segment of `ctx.segments`, once per run (and once for all the
        segments holding the same rule object: SegmentSet makes equal rules one)."""
        rule = self.ctx.segments.get(segment)
        if rule is None:
            raise KeyError(f'in_segment names "{segment}", which is not a segment of this organisation')
        result = self.results.get(id(rule))
        if result is None:
            result = self.results[id(rule)] = compiled(rule)(self)
        return result

    def time(self, criterion: str) -> int | None:
        """A time criterion's instant (last_order_at ...), once per run."""
        try:
            return self._times[criterion]
        except KeyError:
            t = self._times[criterion] = _TIMES[criterion](self.facts)
            return t

    def sum(self, s: Sum) -> tuple[int, list[tuple[int, int]]]:
        """The sum now, and (instant it leaves, -what it adds) per entry that will leave the window, in
        time order."""
        found = self._sums.get(id(s))
        if found is None:
            leaving: list[tuple[int, int]]
            total, leaving = 0, []  # not list[...](): calling a generic alias costs ~0.4 us
            for term in s.terms:
                total += _term(term.stream, term.measure, term.sign, s.window, s.item, self, leaving)
            if leaving:
                leaving.sort()
            found = self._sums[id(s)] = (total, leaving)
        return found


# --- sums over windows -------------------------------------------------------------------------


def _stream(facts: Facts, name: str) -> tuple[tuple[Entry, ...] | tuple[int, ...], int]:
    """A stream's recent entries, and its index in the history's totals."""
    return getattr(facts, name), _STREAM_INDEX[name]


_STREAM_INDEX = {name: i for cls in (CustomerFacts, ProductFacts) for i, name in enumerate(cls.STREAMS)}


def _period_in_window(p: Period, w: Window) -> bool:
    """Folded periods count only for windows without `within` (they hold nothing a `within` window can
    see, see keep.py), and only when the period lies inside since/until."""
    return (w.within is None and (w.since is None or (p.start is not None and p.start >= w.since))
            and (w.until is None or (p.end is not None and p.end <= w.until)))


def _bounds(w: Window, now: int) -> tuple[int, int, int]:
    """(after, since, until): an entry at time t is in the window when after < t and since <= t < until."""
    return (_NEVER if w.within is None else now - w.within, _NEVER if w.since is None else w.since,
            _FOREVER if w.until is None else w.until)


def _term(stream: str, measure: Measure, sign: int, w: Window, item: ItemFilter | None, run: Run,
          leaving: list[tuple[int, int]]) -> int:
    """One term of a sum: its recent entries in the window, then its folded periods in it."""
    entries, index = _stream(run.facts, stream)
    total = 0
    if measure is Measure.COUNT and item is None and w.within is None and w.since is None and w.until is None:
        total = sign * len(entries)  # the common lifetime count: every entry, no need to look
        entries = ()
    after, since, until = _bounds(w, run.now)
    moving = w.within is not None
    for e in entries:
        t = e if isinstance(e, int) else e.time
        if not (after < t and since <= t < until):
            continue
        if isinstance(e, int):  # a time-only entry (e-mail engagement, abandoned cart): counts 1
            add = sign
        elif item is not None and item.name not in _names(e, item.field):
            continue
        elif measure is Measure.COUNT:
            add = sign
        elif measure is Measure.UNITS:
            add = sign * e.units
        else:
            add = sign * run.ctx.value(e.amount, e.currency, t)
        total += add
        if moving and add:
            leaving.append((t + w.within, -add))  # type: ignore[operator]
    if not moving:  # folded periods never count in a `within` window (_period_in_window)
        for p in run.facts.history:
            if _period_in_window(p, w):
                total += sign * _folded(p.totals[index], measure, item)
    return total


def _names(e: Entry, field: str) -> tuple[str, ...]:
    return e.products if field == "products" else e.categories if field == "categories" else e.brands


def _folded(t: Totals, measure: Measure, item: ItemFilter | None) -> int:
    if item is not None:
        return sum(n for kept, n in t.bought if kept == item)
    return t.count if measure is Measure.COUNT else t.units if measure is Measure.UNITS else t.amount


def _tally(node: Tally, run: Run) -> Result:
    return _tally_test(node.sum, _test(node.compare), run)


def _tally_test(s: Sum, test: Callable[[int], bool], run: Run) -> Result:
    return _tally_walk(run.sum(s), test)


def _tally_walk(summed: tuple[int, list[tuple[int, int]]], test: Callable[[int], bool]) -> Result:
    """The comparison of a sum now, and the first departure at which it turns (None: it never does)."""
    total, leaving = summed
    value = test(total)
    if not leaving:
        return value, None
    i, n = 0, len(leaving)
    while i < n:  # walk the departures in time order until the comparison turns
        at = leaving[i][0]
        while i < n and leaving[i][0] == at:
            total += leaving[i][1]
            i += 1
        if test(total) != value:
            return value, at
    return value, None


def _any_entry(node: AnyEntry, run: Run) -> Result:
    entries, index = _stream(run.facts, node.stream)
    w, c, ctx = node.window, node.compare, run.ctx
    after, since, until = _bounds(w, run.now)
    last_leaving = None
    for e in entries:
        assert isinstance(e, Entry)
        if after < e.time and since <= e.time < until and _compare(c, ctx.value(e.amount, e.currency, e.time)):
            if w.within is None:
                return True, None
            last_leaving = max(last_leaving or _NEVER, e.time + w.within)
    if last_leaving is not None:
        return True, last_leaving  # true until the last matching entry has left
    for p in run.facts.history:
        t = p.totals[index]
        if _period_in_window(p, w) and t.count:
            extreme = t.largest if c.op in (Op.GT, Op.GTE) else t.smallest
            if extreme is not None and _compare(c, extreme):
                return True, None
    return False, None


# --- times -------------------------------------------------------------------------------------


def _latest(facts: Facts, stream: str) -> int | None:
    entries, index = _stream(facts, stream)
    latest: int | None = None
    for e in entries:  # no list of times: a customer holds a few entries, and this runs for most events
        t = e if isinstance(e, int) else e.time
        if latest is None or t > latest:
            latest = t
    for p in facts.history:
        last = p.totals[index].last
        if last is not None and (latest is None or last > latest):
            latest = last
    return latest


def _earliest(facts: Facts, stream: str) -> int | None:
    entries, index = _stream(facts, stream)
    times = [e if isinstance(e, int) else e.time for e in entries]
    times += [t for p in facts.history if (t := p.totals[index].first) is not None]
    return min(times, default=None)


def _customer(facts: Facts) -> CustomerFacts:
    assert isinstance(facts, CustomerFacts)
    return facts


_TIMES: dict[str, Callable[[Facts], int | None]] = {
    "last_order_at": lambda f: _latest(f, "orders"),
    "first_order_at": lambda f: _earliest(f, "orders"),
    "last_sold_at": lambda f: _latest(f, "sales"),
    "registered_at": lambda f: r if (r := _customer(f).registered) is not None else _customer(f).first_seen,
    "last_active_at": lambda f: _customer(f).last_active,
    "last_cart_created_at": lambda f: _customer(f).last_cart_created,
    "last_abandoned_cart_at": lambda f: _customer(f).last_cart_abandoned,
}


def _moment(node: Moment, run: Run) -> Result:
    t = run.time(node.criterion)
    test, now = node.test, run.now
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
    day = run.ctx.day(t) + test.days_ago  # the local day on which it holds
    start, end = run.ctx.midnight(day), run.ctx.midnight(day + 1)
    return start <= now < end, start if now < start else end if now < end else None


# --- values now --------------------------------------------------------------------------------


def _current(node: Current, run: Run) -> Result:
    f = _customer(run.facts)
    if node.criterion == "stores":
        return _compare(node.compare, len(f.stores)), None
    total = sum(run.ctx.value(c.amount, c.currency, c.time) for c in f.open_carts)
    return _compare(node.compare, total), None


def _label(node: Label, run: Run) -> Result:
    facts = run.facts
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


def _attribute(node: Attribute, run: Run) -> Result:
    value = attribute(run.facts, node.name)
    c = node.compare
    if c.op is Op.EXISTS:
        return (value is not None) == c.value, None
    if value is None:
        return False, None
    return compare_attribute(c, value), None


def _in_segment(node: InSegment, run: Run) -> Result:
    c = node.compare
    ids = c.value if isinstance(c.value, tuple) else (c.value,)
    parts = [run.segment(str(i)) for i in ids]
    at = min((a for _, a in parts if a is not None), default=None)
    if c.op is Op.NE:
        return not parts[0][0], at
    return any(v for v, _ in parts), at


_CONDITIONS: dict[type, Callable[..., Result]] = {
    Tally: _tally, AnyEntry: _any_entry, Moment: _moment, Current: _current, Label: _label,
    Attribute: _attribute, InSegment: _in_segment,
}


# --- compiled rules ----------------------------------------------------------------------------
# A rule evaluated for every event of every customer is worth turning into closures once: no dispatch
# on the node's type, no decoding of its comparison at each evaluation.

Evaluator = Callable[[Run], Result]
_COMPILED: dict[int, tuple[Rule, Evaluator]] = {}  # id(rule) -> (the rule, kept alive so the id stays its own)
_COMPILED_LIMIT = 10_000


def compiled(rule: Rule) -> Evaluator:
    """The evaluator of `rule`: the same (value, next change) as the node functions above."""
    found = _COMPILED.get(id(rule))
    if found is not None and found[0] is rule:
        return found[1]
    if len(_COMPILED) > _COMPILED_LIMIT:
        _COMPILED.clear()
    evaluator = _compile(rule)
    _COMPILED[id(rule)] = (rule, evaluator)
    return evaluator


def _compile(rule: Rule) -> Evaluator:
    if isinstance(rule, AllOf | AnyOf):
        parts = tuple(_compile(r) for r in rule.rules)
        decisive = isinstance(rule, AnyOf)

        def combined(run: Run) -> Result:
            return _combine_parts(parts, decisive, run)
        return combined
    if isinstance(rule, Not):
        inner = _compile(rule.rule)

        def negated(run: Run) -> Result:
            value, at = inner(run)
            return not value, at
        return negated
    if isinstance(rule, Tally):
        s, test, key, result_key = rule.sum, _test(rule.compare), id(rule.sum), id(rule)

        def tally(run: Run) -> Result:  # _once and Run.sum's cache, inlined: the commonest condition
            done = run.results
            found = done.get(result_key)
            if found is None:
                summed = run._sums.get(key)  # most sums are shared, so found
                if summed is None:
                    summed = run.sum(s)
                found = done[result_key] = (test(summed[0]), None) if not summed[1] else _tally_walk(summed, test)
            return found
        return tally
    if isinstance(rule, Moment):
        return _compile_moment(rule)  # as cheap as a lookup of its result: not kept
    condition = _CONDITIONS[type(rule)]
    return _once(rule, lambda run: condition(rule, run))


def _once(rule: Rule, evaluate: Evaluator) -> Evaluator:
    """A condition evaluated once per run: SegmentSet makes equal conditions of different rules one
    object (`all` of orders >= 2 and last order before 90d shares both with other segments), so the
    run keeps each one's result by identity, as it keeps the segments' (Run.results)."""
    key = id(rule)

    def once(run: Run) -> Result:
        done = run.results
        found = done.get(key)
        if found is None:
            found = done[key] = evaluate(run)
        return found
    return once


def _compile_moment(node: Moment) -> Evaluator:
    """_moment with its test decoded once. The common tests (a duration before/after, exists) are
    closures of their own; the others go through _moment."""
    criterion, test = node.criterion, node.test

    def instant(run: Run) -> int | None:
        times = run._times
        return times[criterion] if criterion in times else run.time(criterion)
    if isinstance(test, Exists):
        present = test.present
        return lambda run: ((instant(run) is not None) == present, None)
    if isinstance(test, Before | After) and test.ago is not None:
        ago, before = test.ago, isinstance(test, Before)

        def relative(run: Run) -> Result:
            t = instant(run)
            if t is None:
                return False, None
            now, turns = run.now, t + ago  # "before" holds from this instant on, "after" until it
            return (now >= turns) if before else (now < turns), turns if turns > now else None
        return relative
    return lambda run: _moment(node, run)


def _combine_parts(parts: tuple[Evaluator, ...], decisive: bool, run: Run) -> Result:
    """`all` is decided by its false parts while it has some: it can turn true only once every one of
    them has turned, so not before the latest of their changes (never, if one cannot change); while
    all are true, it turns false at the first change of any. `any` is the mirror image."""
    decided = False
    latest = earliest = None
    for part in parts:
        value, at = part(run)
        if value == decisive:
            if at is None:
                return decisive, None
            decided = True
            latest = at if latest is None or at > latest else latest
        elif at is not None and (earliest is None or at < earliest):
            earliest = at
    return (decisive, latest) if decided else (not decisive, earliest)


def _test(c: Compare) -> Callable[[int], bool]:
    """A number's comparison as one closure (what _compare decides)."""
    op, v = c.op, c.value
    if op is Op.BETWEEN:
        low, high = v  # type: ignore[misc,str-unpack]
        return lambda x: low <= x <= high  # type: ignore[operator]
    if op is Op.IN:
        return lambda x: x in v  # type: ignore[operator]
    if op is Op.GTE:
        return lambda x: x >= v  # type: ignore[operator]
    if op is Op.GT:
        return lambda x: x > v  # type: ignore[operator]
    if op is Op.LT:
        return lambda x: x < v  # type: ignore[operator]
    if op is Op.LTE:
        return lambda x: x <= v  # type: ignore[operator]
    if op is Op.EQ:
        return lambda x: x == v
    return lambda x: x != v


# --- comparisons -------------------------------------------------------------------------------


def _compare(c: Compare, x: int) -> bool:
    """A number (count, units, minor units) against a comparison of the same kind."""
    op, v = c.op, c.value
    if op is Op.BETWEEN:
        return v[0] <= x <= v[1]  # type: ignore[index,operator]
    if op is Op.IN:
        return x in v  # type: ignore[operator]
    return _ORDER[op](x, v)  # type: ignore[no-any-return]


_ORDER = {Op.EQ: operator.eq, Op.NE: operator.ne, Op.GT: operator.gt, Op.GTE: operator.ge, Op.LT: operator.lt,
          Op.LTE: operator.le}


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
