"""The segment rule language: rules over a customer's (or a product's) facts. Pure: no I/O, no clock.

Where things are (docs/segments.md defines every criterion):

    tree.py      the typed rule (immutable dataclasses)
    criteria.py  every criterion: its comparisons, its value, the facts it reads
    parse.py     JSON -> rule, or RuleError naming the JSON path
    facts.py     CustomerFacts / ProductFacts: what the rules read
    context.py   the organisation: time zone, currency and rates, segments for in_segment
    evaluate.py  holds, next_change, evaluate
    graph.py     conditions, references, inputs, cycles, dependency order
    keep.py      what the facts must keep for a set of rules, and fold (the state bound)
    segments.py  parse_segments and SegmentSet: a whole organisation's segments for the dataflow
    library.py   the predefined segments
"""

from core.rules.context import Context
from core.rules.criteria import Subject
from core.rules.evaluate import evaluate, holds, next_change
from core.rules.facts import (
                              CustomerFacts,
                              Entry,
                              Period,
                              ProductFacts,
                              Totals,
                              attribute_value,
                              attributes_of,
                              changed_inputs,
)
from core.rules.graph import dependency_order, find_cycle, inputs, references
from core.rules.keep import Keep, covers, fold, keep_for
from core.rules.parse import RuleError, parse_rule
from core.rules.segments import SegmentSet, parse_segments
from core.rules.tree import Rule

__all__ = ["Context", "CustomerFacts", "Entry", "Keep", "Period", "ProductFacts", "Rule", "RuleError", "SegmentSet",
           "Subject", "Totals", "attribute_value", "attributes_of", "changed_inputs", "covers", "dependency_order", "evaluate",
           "find_cycle", "fold", "holds", "inputs", "keep_for", "next_change", "parse_rule", "parse_segments",
           "references"]
