"""What the facts must keep for a set of rules, and folding the rest into history.

A rule reads dated entries one by one only through a `within` window, which sees the entries with
time > now - within. Once an entry is older than the longest window over its stream (the stream's
horizon), no rule will ever see it one by one again: `fold` moves it into `history`, where it only
adds to a few totals (count, units, amount, first and last time, largest and smallest amount, and
how many name each product, category or brand some rule asks about). Totals are kept per period
between the `since`/`until` dates the rules name, so a since/until range is a union of periods.

So the state of a customer is bounded by the segments defined, not by how long the shop has run:
its entries of the last horizon, plus one Totals per stream and period.

Every rule of the set evaluates on folded facts exactly as on the full ones (tests/test_rules.py
checks it), at any `now` at or after the fold. A rule outside the set may need more than was kept:
`covers(keep, rule)` says whether it can be evaluated exactly.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import TypeVar

from core.rules.context import Context
from core.rules.facts import NO_TOTALS, CustomerFacts, Entry, Period, ProductFacts, Totals
from core.rules.graph import conditions
from core.rules.tree import AnyEntry, ItemFilter, Rule, Tally

F = TypeVar("F", CustomerFacts, ProductFacts)


@dataclass(frozen=True, slots=True)
class Keep:
    """What facts must keep for a set of rules to evaluate exactly."""

    horizons: tuple[tuple[str, int], ...] = ()  # (stream, longest `within` over it, ms); other streams: 0
    cuts: tuple[int, ...] = ()  # every since/until instant, sorted: history is totalled between them
    items: frozenset[ItemFilter] = frozenset()  # every product, category and brand a rule names

    def horizon(self, stream: str) -> int:
        for name, ms in self.horizons:
            if name == stream:
                return ms
        return 0


def keep_for(rules: Iterable[Rule]) -> Keep:
    """What facts must keep for every one of `rules` (give them all: in_segment is not followed)."""
    horizons: dict[str, int] = {}
    cuts: set[int] = set()
    items: set[ItemFilter] = set()
    for rule in rules:
        for c in conditions(rule):
            if isinstance(c, Tally):
                streams, window = [t.stream for t in c.sum.terms], c.sum.window
                if c.sum.item is not None:
                    items.add(c.sum.item)
            elif isinstance(c, AnyEntry):
                streams, window = [c.stream], c.window
            else:
                continue
            cuts.update(t for t in (window.since, window.until) if t is not None)
            if window.within is not None:
                for s in streams:
                    horizons[s] = max(horizons.get(s, 0), window.within)
    return Keep(tuple(sorted(horizons.items())), tuple(sorted(cuts)), frozenset(items))


def covers(keep: Keep, rule: Rule) -> bool:
    """Whether facts folded under `keep` evaluate `rule` exactly (its windows, dates and items are kept)."""
    need = keep_for([rule])
    return (all(keep.horizon(s) >= ms for s, ms in need.horizons) and set(need.cuts) <= set(keep.cuts)
            and need.items <= keep.items)


def fold(facts: F, keep: Keep, now: int, ctx: Context) -> F:
    """The same facts with every entry that `keep` no longer needs one by one (time <= now - horizon
    of its stream) folded into history, amounts converted to `ctx.currency` at each entry's day, and
    the product, category and brand names no rule asks about dropped. The same object when nothing moves.

    History folded under other cuts is regrouped by the start of each period: exact when the cuts only
    lost instants, not when a new since/until falls inside a folded period (see `covers`).
    """
    streams = type(facts).STREAMS
    if _unmoved(facts, streams, keep, now):  # the common case, told apart without building anything
        return facts
    periods = _regroup(facts.history, keep.cuts, len(streams))
    kept: dict[str, tuple[Entry, ...] | tuple[int, ...]] = {}
    for index, name in enumerate(streams):
        entries: tuple[Entry, ...] | tuple[int, ...] = getattr(facts, name)
        cut = now - keep.horizon(name)
        stay: list[Entry | int] = []
        for e in entries:
            t = e if isinstance(e, int) else e.time
            if t > cut:
                stay.append(e if isinstance(e, int) else _trim(e, keep.items))
                continue
            at = bisect_right(keep.cuts, t)
            totals = periods.setdefault(at, [NO_TOTALS] * len(streams))
            totals[index] = _add(totals[index], e, keep.items, ctx)
        if len(stay) != len(entries) or any(a is not b for a, b in zip(stay, entries, strict=True)):
            kept[name] = tuple(stay)  # type: ignore[assignment]
    history = tuple(Period(keep.cuts[at - 1] if at else None, keep.cuts[at] if at < len(keep.cuts) else None,
                           tuple(totals)) for at, totals in sorted(periods.items()))
    if not kept and history == facts.history:
        return facts
    return replace(facts, history=history, **kept)  # type: ignore[arg-type]


def _unmoved(facts: CustomerFacts | ProductFacts, streams: tuple[str, ...], keep: Keep, now: int) -> bool:
    """Whether `fold` would return the facts as they are: no entry to fold, none to trim, and the history
    already grouped by `keep.cuts` (each period between two consecutive cuts, in order, none twice)."""
    items = keep.items
    for name in streams:
        cut = now - keep.horizon(name)
        for e in getattr(facts, name):
            if isinstance(e, int):
                if e <= cut:
                    return False
            elif e.time <= cut or _trim(e, items) is not e:
                return False
    cuts, n, last = keep.cuts, len(keep.cuts), -1
    for p in facts.history:
        at = 0 if p.start is None else bisect_right(cuts, p.start)
        if at <= last or p.start != (cuts[at - 1] if at else None) or p.end != (cuts[at] if at < n else None):
            return False
        last = at
    return True


def _regroup(history: tuple[Period, ...], cuts: tuple[int, ...], streams: int) -> dict[int, list[Totals]]:
    """Folded periods, by the index of the period of `cuts` holding each one's start."""
    periods: dict[int, list[Totals]] = {}
    for p in history:
        at = 0 if p.start is None else bisect_right(cuts, p.start)
        totals = periods.get(at)
        if totals is None:
            periods[at] = list(p.totals)
        else:
            periods[at] = [_merge(a, b) for a, b in zip(totals, p.totals, strict=True)]
    return periods


def _trim(e: Entry, items: frozenset[ItemFilter]) -> Entry:
    """The entry naming only the products, categories and brands some rule asks about."""
    if not (e.products or e.categories or e.brands):
        return e
    names = _item_names(items)
    if (names["products"].issuperset(e.products) and names["categories"].issuperset(e.categories)
            and names["brands"].issuperset(e.brands)):
        return e  # trimmed by an earlier fold (every fold asks this of every entry the customer keeps)
    products = tuple(n for n in e.products if n in names["products"])
    categories = tuple(n for n in e.categories if n in names["categories"])
    brands = tuple(n for n in e.brands if n in names["brands"])
    if (products, categories, brands) == (e.products, e.categories, e.brands):
        return e
    return replace(e, products=products, categories=categories, brands=brands)


@lru_cache(maxsize=64)
def _item_names(items: frozenset[ItemFilter]) -> dict[str, frozenset[str]]:
    """The names kept per field (`_trim` reads it for every entry of every fold: worked out once)."""
    return {f: frozenset(i.name for i in items if i.field == f) for f in ("products", "categories", "brands")}


def _add(t: Totals, e: Entry | int, items: frozenset[ItemFilter], ctx: Context) -> Totals:
    """Totals with one more entry."""
    if isinstance(e, int):
        return _merge(t, Totals(count=1, first=e, last=e))
    value = ctx.value(e.amount, e.currency, e.time)
    named = {i: 1 for i in items if i.name in (e.products if i.field == "products" else
                                                e.categories if i.field == "categories" else e.brands)}
    return _merge(t, Totals(1, e.units, value, e.time, e.time, value, value, tuple(named.items())))


def _merge(a: Totals, b: Totals) -> Totals:
    if a is NO_TOTALS:
        return b
    if b is NO_TOTALS:
        return a
    bought = dict(a.bought)
    for item, n in b.bought:
        bought[item] = bought.get(item, 0) + n
    return Totals(a.count + b.count, a.units + b.units, a.amount + b.amount, _pick(min, a.first, b.first),
                  _pick(max, a.last, b.last), _pick(max, a.largest, b.largest), _pick(min, a.smallest, b.smallest),
                  tuple(sorted(bought.items(), key=lambda kv: (kv[0].field, kv[0].name))))


def _pick(choose: Callable[[int, int], int], a: int | None, b: int | None) -> int | None:
    if a is None:
        return b
    return a if b is None else choose(a, b)

