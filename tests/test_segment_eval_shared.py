"""The cheaper evaluation path answers as the plain one: a SegmentSet that makes equal conditions of
different segments one object (evaluated once per Run) gives every segment the (member, next change)
that evaluating its rule alone gives; fold's no-op check agrees with folding; BitTimes.bits_at finds
exactly the bits holding an instant; a Change pickles as before. Decisions of the whole dataflow path: bench/segments_live.py
--changes (docs/segments.md, "Evaluation cost")."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.rules import Context, SegmentSet, evaluate, fold, keep_for
from core.rules import keep as keep_module
from flows.bit_times import BitTimes
from flows.membership import Change
from tests.test_rules import PROPERTY, RATES, SEGMENTS, ZONES, customer_facts, instants, parse, rules

pytestmark = pytest.mark.unit

# conditions that several segments below repeat (as the predefined segments repeat orders >= 2 ...)
SHARED = [{"orders": {"gte": 2}}, {"last_order_at": {"before": "2d"}}, {"spent": {"gte": "50.00", "within": "7d"}},
          {"order_value": {"gte": "30.00"}}, {"last_active_at": {"after": "24h"}}, {"email_engaged": {"gte": 1}}]
shared = st.sampled_from(SHARED)
mixed = st.one_of(shared, rules)
segment_rules = st.recursive(mixed, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda rs: {"all": rs}),
    st.lists(inner, min_size=1, max_size=3).map(lambda rs: {"any": rs}),
    inner.map(lambda r: {"not": r})), max_leaves=4)


@PROPERTY
@given(st.data(), st.lists(segment_rules, min_size=2, max_size=6), st.sampled_from(ZONES))
def test_shared_conditions_answer_as_each_rule_alone(data: st.DataObject, rule_jsons: list[dict[str, Any]],
                                                     zone: str) -> None:
    jsons = {**SEGMENTS, **{f"s{i}": r for i, r in enumerate(rule_jsons)}}  # in_segment names SEGMENTS'
    live = SegmentSet({s: parse(r, timezone=zone) for s, r in jsons.items()}, Context(zone, "EUR", RATES))
    facts = data.draw(customer_facts(zone, rule_jsons))
    for now in data.draw(st.lists(instants(zone, rule_jsons), min_size=1, max_size=4)):
        # each rule parsed again, alone: no object shared with another rule or with the set
        segments = {s: parse(r, timezone=zone) for s, r in SEGMENTS.items()}
        alone = {s: evaluate(parse(r, timezone=zone), facts, now, Context(zone, "EUR", RATES, segments))
                 for s, r in jsons.items()}
        assert live.evaluate(live.order, facts, now) == alone
        # in the dataflow's order of a touched subset too (a Run keeps results across segments)
        subset = live.order[::2]
        assert live.evaluate(subset, facts, now) == {s: alone[s] for s in subset}


def test_equal_conditions_of_different_segments_are_one_object() -> None:
    live = SegmentSet({"a": parse({"all": [SHARED[0], SHARED[1]]}), "b": parse({"any": [SHARED[1], SHARED[2]]}),
                       "c": parse(SHARED[0])}, Context("UTC", "EUR", RATES))
    a, b, c = (live.rules[s] for s in "abc")
    assert a.rules[1] is b.rules[0]  # type: ignore[attr-defined]
    assert a.rules[0] is c  # type: ignore[attr-defined]


@PROPERTY
@given(st.data(), st.lists(rules, min_size=1, max_size=3), st.sampled_from(ZONES))
def test_folds_no_op_check_agrees_with_folding(data: st.DataObject, rule_jsons: list[dict[str, Any]],
                                                zone: str) -> None:
    keep = keep_for([parse(r, timezone=zone) for r in rule_jsons])
    context = Context(zone, "EUR", RATES)
    facts = data.draw(customer_facts(zone, rule_jsons))
    at = data.draw(instants(zone, rule_jsons))
    folded = fold(facts, keep, at, context)
    again_at = data.draw(st.sampled_from((at, at + 1, at + 86_400_000)))
    streams = type(facts).STREAMS
    for f in (facts, folded):
        unmoved = keep_module._unmoved(f, streams, keep, again_at)
        # the full path (the check bypassed) returns the same object exactly when the check says so
        original = keep_module._unmoved
        keep_module._unmoved = lambda *_: False  # type: ignore[assignment]
        try:
            full = fold(f, keep, again_at, context)
        finally:
            keep_module._unmoved = original
        assert fold(f, keep, again_at, context) == full
        assert unmoved == (full is f)


@given(st.dictionaries(st.integers(0, 127), st.integers(0, 5), max_size=40), st.integers(0, 6))
def test_bits_at_finds_exactly_the_bits_holding_an_instant(pairs: dict[int, int], at: int) -> None:
    times = BitTimes.of(pairs.items())
    assert times.bits_at(at) == [b for b, t in times.items() if t == at] == sorted(b for b, t in pairs.items() if t == at)


# a Change as main pickled it when Change was a frozen dataclass (kept steps in snapshots hold changes)
FROZEN_PICKLE = (b"\x80\x05\x95K\x00\x00\x00\x00\x00\x00\x00\x8c\x10flows.membership\x94\x8c\x06Change\x94\x93\x94)"
                 b"\x81\x94]\x94(\x8c\x05big30\x94\x8c\x02c1\x94\x8c\x07entered\x94\x8a\x06\x00h\xe5\xcf\x8b\x01\x8c"
                 b"\x02e1\x94eb.")


def test_a_change_pickles_as_the_frozen_class_did() -> None:
    ch = Change("big30", "c1", "entered", 1_700_000_000_000, "e1")
    assert pickle.loads(FROZEN_PICKLE) == ch
    assert pickle.dumps(ch, protocol=pickle.HIGHEST_PROTOCOL) == FROZEN_PICKLE
    assert hash(pickle.loads(FROZEN_PICKLE)) == hash(ch)
    assert ch.key == "big30|c1|1700000000000|entered"
