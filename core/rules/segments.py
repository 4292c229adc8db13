"""The segments of one organisation, ready for the dataflow: parsed, checked for cycles, indexed by
the facts they read, and evaluated together.

    segments = parse_segments({"vip": {...}, "lapsed": {...}}, currency="EUR", timezone="Europe/Berlin")
    live = SegmentSet(segments, Context("Europe/Berlin", "EUR", rates))
    for segment, (member, next_change) in live.evaluate(live.touched(changed_inputs(old, new)), new, now).items():
        ...  # emit entries and exits; keep a timer at next_change
    new = fold(new, live.keep, now, live.ctx)  # keep the facts small
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from core.rules.context import Context
from core.rules.criteria import Subject
from core.rules.evaluate import Evaluator, Run, compiled
from core.rules.facts import Facts
from core.rules.graph import dependency_order, inputs
from core.rules.keep import keep_for
from core.rules.monotone import DOWN, UP, Change, direction
from core.rules.parse import RuleError, child_path, parse_rule
from core.rules.tree import AllOf, AnyOf, Not, Rule, Sum, Tally


def parse_segments(definitions: Mapping[str, object], *, currency: str, timezone: str,
                   subject: Subject = Subject.CUSTOMER) -> dict[str, Rule]:
    """Every rule of {segment id: rule as JSON}. A RuleError's path starts with the segment
    (`$.vip.all[0]...`, `$["big spenders"]...`); a missing segment or a cycle is one too."""
    rules: dict[str, Rule] = {}
    for segment, data in definitions.items():
        try:
            rules[segment] = parse_rule(data, currency=currency, timezone=timezone, subject=subject)
        except RuleError as e:
            raise RuleError(child_path("$", segment) + e.path[1:], e.problem) from None
    dependency_order(rules)
    return rules


STEADY_KEPT = 4096  # growths whose steady segments are kept (each is a few sets of segment ids)


class SegmentSet:
    """Parsed segments with what the dataflow needs to evaluate only those an event touches."""

    def __init__(self, rules: Mapping[str, Rule], ctx: Context) -> None:
        self.order = dependency_order(rules)  # raises RuleError on a missing segment or a cycle
        shared: dict[Sum, Sum] = {}
        conditions: dict[Rule, Rule] = {}  # equal conditions too: a Run evaluates each once (evaluate._once)
        same: dict[Rule, Rule] = {}  # equal rules become one object: a Run evaluates it once for all of them
        self.rules = {s: same.setdefault(r, r) for s in self.order
                      if (r := share_sums(rules[s], shared, conditions))}
        self.ctx = ctx.with_segments(self.rules)
        self.inputs = {s: inputs(rules[s], self.rules) for s in self.order}
        self.keep = keep_for(self.rules.values())
        by_input: dict[str, list[str]] = {}
        for s in self.order:
            for name in sorted(self.inputs[s]):
                by_input.setdefault(name, []).append(s)
        self._by_input = by_input
        self._rank = {s: i for i, s in enumerate(self.order)}
        self._plan = {s: (id(r), compiled(r)) for s, r in self.rules.items()}  # Run.segment's lookups, done once
        self._touched: dict[frozenset[str], tuple[str, ...]] = {}
        self._steady: dict[frozenset[tuple[str, Change]], tuple[frozenset[str], frozenset[str]]] = {}

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        del state["_plan"]  # closures: made again on loading
        return state

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__dict__.update(state)
        self.__dict__.setdefault("_steady", {})
        self._plan = {s: (id(r), compiled(r)) for s, r in self.rules.items()}

    def touched(self, changed: frozenset[str]) -> tuple[str, ...]:
        """The segments that read any of the `changed` facts, in dependency order."""
        found = self._touched.get(changed)
        if found is None:  # few combinations of facts change together: each is worked out once
            segments = {s for name in changed for s in self._by_input.get(name, ())}
            found = self._touched[changed] = tuple(sorted(segments, key=self._rank.__getitem__))
        return found

    def steady(self, growth: frozenset[tuple[str, Change]]) -> tuple[frozenset[str], frozenset[str]]:
        """(segments whose value can only turn true, those that can only turn false) when the facts
        changed as `growth` says (core/rules/monotone.py): a member of the first or a non-member of the
        second keeps its membership. A segment reading none of the changed facts is in both."""
        found = self._steady.get(growth)
        if found is None:
            if len(self._steady) >= STEADY_KEPT:  # growths name the items an entry holds: many combinations
                self._steady.clear()
            moves = dict(growth)
            d = {s: direction(r, moves) for s, r in self.rules.items()}
            found = self._steady[growth] = (frozenset(s for s, x in d.items() if x in (UP, None)),
                                            frozenset(s for s, x in d.items() if x in (DOWN, None)))
        return found

    def plan(self, segment: str) -> tuple[int, Evaluator]:
        """(the key of its result in Run.results, its evaluator): what `evaluate` does per segment, for a
        caller that loops over segments itself (flows/membership.py)."""
        return self._plan[segment]

    def evaluate(self, segments: Iterable[str], facts: Facts, now: int) -> dict[str, tuple[bool, int | None]]:
        """{segment: (member, next change)} for the given segments at `now`: one Run, so a sum that
        several of them read, or a rule several of them hold, is computed once (Run.segment, inlined:
        this loop runs for every event of every customer)."""
        run = Run(facts, now, self.ctx)
        done, plan = run.results, self._plan
        out = {}
        for s in segments:
            key, evaluator = plan[s]
            result = done.get(key)
            if result is None:
                result = done[key] = evaluator(run)
            out[s] = result
        return out


def share_sums(rule: Rule, shared: dict[Sum, Sum], conditions: dict[Rule, Rule] | None = None) -> Rule:
    """The rule with each Sum replaced by the first equal one in `shared` (added when new), so that a Run
    computes it once for all the rules that read it; and, given `conditions`, each condition (any node
    but all/any/not) by the first equal one there, so that a Run evaluates it once."""
    if isinstance(rule, AllOf | AnyOf):
        return type(rule)(tuple(share_sums(r, shared, conditions) for r in rule.rules))
    if isinstance(rule, Not):
        return Not(share_sums(rule.rule, shared, conditions))
    if isinstance(rule, Tally):
        rule = replace(rule, sum=shared.setdefault(rule.sum, rule.sum))
    return rule if conditions is None else conditions.setdefault(rule, rule)
