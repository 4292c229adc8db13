"""What a rule reads and which segments it names: the conditions in it, its inputs, its references;
and over a set of segments, the cycle that in_segment may close and an order to evaluate them in."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from core.rules.criteria import CRITERIA
from core.rules.parse import RuleError
from core.rules.tree import AllOf, AnyEntry, AnyOf, Attribute, Condition, InSegment, Not, Rule, Tally

_READS = {name: c.reads for table in CRITERIA.values() for name, c in table.items()}


def conditions(rule: Rule) -> Iterator[Condition]:
    """The conditions of a rule, left to right (an in_segment is one condition: not followed)."""
    if isinstance(rule, AllOf | AnyOf):
        for r in rule.rules:
            yield from conditions(r)
    elif isinstance(rule, Not):
        yield from conditions(rule.rule)
    else:
        yield rule


def references(rule: Rule) -> frozenset[str]:
    """The segment ids that the rule's in_segment conditions name."""
    found: set[str] = set()
    for c in conditions(rule):
        if isinstance(c, InSegment):
            value = c.compare.value
            found.update(str(v) for v in (value if isinstance(value, tuple) else (value,)))
    return frozenset(found)


def inputs(rule: Rule, segments: Mapping[str, Rule] | None = None) -> frozenset[str]:
    """The facts a rule reads (field names of CustomerFacts / ProductFacts): an event that changes none
    of them cannot change the rule's value. With `segments`, in_segment reads what the named segments read."""
    found: set[str] = set()
    seen: set[str] = set()
    pending = [rule]
    while pending:
        for c in conditions(pending.pop()):
            if isinstance(c, Tally):
                found.update(t.stream for t in c.sum.terms)
            elif isinstance(c, AnyEntry):
                found.add(c.stream)
            elif isinstance(c, InSegment):
                for ref in references(c) - seen:
                    seen.add(ref)
                    if segments is not None and ref in segments:
                        pending.append(segments[ref])
            elif isinstance(c, Attribute):
                found.add("attributes")
            else:
                found.update(_READS[c.criterion])
    return frozenset(found)


def find_cycle(rules: Mapping[str, Rule]) -> list[str] | None:
    """A cycle of in_segment references among `rules` ({segment id: rule}), as ["a", "b", "a"]; None
    when there is none. References to ids outside `rules` are not followed."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for ref in sorted(references(rules[node])):
            if ref not in rules:
                continue
            if state.get(ref) == 1:
                return path[path.index(ref):] + [ref]
            if ref not in state and (cycle := visit(ref)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for segment in sorted(rules):
        if segment not in state and (cycle := visit(segment)) is not None:
            return cycle
    return None


def dependency_order(rules: Mapping[str, Rule]) -> list[str]:
    """The segment ids, each after every segment it names (ties by id). Raises RuleError when a rule
    names a segment that is not in `rules`, or when in_segment references make a cycle."""
    for segment in sorted(rules):
        missing = sorted(references(rules[segment]) - rules.keys())
        if missing:
            raise RuleError(f'segment "{segment}"', f'in_segment names "{missing[0]}", which is not a segment')
    cycle = find_cycle(rules)
    if cycle is not None:
        chain = " -> ".join(f'"{s}"' for s in cycle)
        raise RuleError(f'segment "{cycle[0]}"', f"in_segment makes a cycle: {chain}; a segment cannot contain itself")
    order: list[str] = []
    placed: set[str] = set()

    def place(segment: str) -> None:
        if segment in placed:
            return
        for ref in sorted(references(rules[segment])):
            place(ref)
        placed.add(segment)
        order.append(segment)

    for segment in sorted(rules):
        place(segment)
    return order
