"""The segment rule language (core/rules): parsing and its errors, evaluation against a brute-force
reading of docs/segments.md, next_change never missing a change, folding keeping every answer."""

from __future__ import annotations

import functools
import json
import pickle
import re
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.clock import local_midnight
from core.money import EXPONENTS
from core.rates import MissingRate, parse_ecb_csv
from core.rules import (
    Context,
    CustomerFacts,
    Entry,
    ProductFacts,
    RuleError,
    SegmentSet,
    Subject,
    attribute_value,
    attributes_of,
    changed_inputs,
    covers,
    dependency_order,
    evaluate,
    find_cycle,
    fold,
    holds,
    inputs,
    keep_for,
    library,
    next_change,
    parse_rule,
    parse_segments,
    references,
)
from core.rules.tree import (
    After,
    AllOf,
    Before,
    Compare,
    ItemFilter,
    Measure,
    Moment,
    Not,
    On,
    Op,
    Sum,
    Tally,
    Term,
    Window,
)
from tests import rules_reference as ref

MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000
pytestmark = pytest.mark.unit  # pure domain tests, in-process: `pytest -m unit` runs them alone

BERLIN = "Europe/Berlin"
T0 = local_midnight(date(2024, 3, 20), ZoneInfo(BERLIN))  # ten days before the spring DST change


def _rates_csv() -> str:
    lines = ["Date,USD,JPY,KWD,"]
    for i in range(400):
        day = date(2023, 11, 1) + timedelta(days=i)
        if day.weekday() < 5:  # no fixing at weekends: the last one before counts
            lines.append(f"{day.isoformat()},{1 + (i * 37 % 41) / 100:.4f},{150 + i % 17}.{i % 10}0,0.33{i % 9}")
    return "\n".join(lines)


RATES = parse_ecb_csv(_rates_csv())


def parse(data: object, **kw: Any) -> Any:
    return parse_rule(data, currency=kw.pop("currency", "EUR"), timezone=kw.pop("timezone", BERLIN), **kw)


def ctx(tz: str = BERLIN, segments: dict[str, Any] | None = None) -> Context:
    return Context(tz, "EUR", RATES, segments or {})


# --- parsing -----------------------------------------------------------------------------------


def test_parses_the_issue_example() -> None:
    rule = parse({"all": [{"orders": {"gte": 3}}, {"spent": {"gte": "5000.00", "within": "90d"}}]})
    assert rule == AllOf((Tally("orders", Sum((Term("orders", Measure.COUNT),)), Compare(Op.GTE, 3)),
                          Tally("spent", Sum((Term("orders", Measure.AMOUNT),), Window(within=90 * DAY)), Compare(Op.GTE, 500000))))


def test_parses_times_dates_and_days() -> None:
    berlin = ZoneInfo(BERLIN)
    assert parse({"last_order_at": {"before": "90d"}}) == Moment("last_order_at", Before(ago=90 * DAY))
    assert parse({"last_active_at": {"after": "30m"}}) == Moment("last_active_at", After(ago=30 * MIN))
    assert parse({"last_order_at": {"on": "2d"}}) == Moment("last_order_at", On(days_ago=2))
    assert parse({"registered_at": {"before": "2024-03-31"}}) == Moment(
        "registered_at", Before(at=local_midnight(date(2024, 3, 31), berlin)))
    assert parse({"registered_at": {"after": "2024-03-31"}}) == Moment(
        "registered_at", After(at=local_midnight(date(2024, 4, 1), berlin)))
    assert parse({"not": {"orders": {"between": [1, 2], "since": "2024-01-01", "until": "2024-01-31"}}}) == Not(
        Tally("orders", Sum((Term("orders", Measure.COUNT),), Window(since=local_midnight(date(2024, 1, 1), berlin),
                                                                     until=local_midnight(date(2024, 2, 1), berlin))),
              Compare(Op.BETWEEN, (1, 2))))


def test_money_is_exact_minor_units_of_the_organisations_currency() -> None:
    assert parse({"spent": {"gte": "19.99"}}).compare.value == 1999
    assert parse({"spent": {"gte": "5000"}}, currency="JPY").compare.value == 5000
    assert parse({"net_spent": {"lt": "-1.250"}}, currency="KWD").compare.value == -1250
    assert parse({"open_cart_value": {"between": ["10", "20.5"]}}).compare.value == (1000, 2050)


def test_attribute_values_keep_their_kind() -> None:
    assert parse({"attribute": {"name": "age", "between": [20, 45]}}).compare == Compare(Op.BETWEEN, (20, 45))
    assert parse({"attribute": {"name": "score", "gt": 0.1}}).compare == Compare(Op.GT, Decimal("0.1"))
    assert parse({"attribute": {"name": "vip", "eq": True}}).compare == Compare(Op.EQ, True)


@pytest.mark.parametrize(("rule", "message"), [
    ({"all": [{"orders": {"gte": 3}}, {"spent": {"gte": "5000.00", "within": "90x"}}]},
     '$.all[1].spent.within: "90x" is not a duration (use 30m, 24h or 90d)'),
    ({"order": {"gte": 1}}, '$: unknown criterion "order" (did you mean "orders"?)'),
    ({"orders": {"gte": 1}, "spent": {"gte": "1.00"}}, '$: one criterion per object, got "orders" and "spent"'),
    ({"orders": {"gte": 1, "lte": 3}}, '$.orders: one comparison per condition, got "gte" and "lte": use between'),
    ({"orders": {"before": "90d"}}, '$.orders.before: "before" does not apply to orders: use "eq", "ne"'),
    ({"store": {"gte": "shop"}}, '$.store.gte: "gte" does not apply to store: use "eq", "ne" or "in"'),
    ({"last_order_at": {"gte": 1}}, '$.last_order_at.gte: "gte" does not apply to last_order_at: use "before", "after"'),
    ({"spent": {"gte": "10.001"}}, '$.spent.gte: "10.001" has more decimals than EUR allows (2 decimals)'),
    ({"spent": {"gte": "10.5"}}, "$.spent.gte: \"10.5\" has more decimals than JPY allows (no decimals)"),
    ({"spent": {"gte": 100}}, '$.spent.gte: write an amount as a text in EUR, such as "100.00", got 100'),
    ({"spent": {"gte": "1,000.00"}}, '$.spent.gte: "1,000.00" is not an amount'),
    ({"orders": {"between": [5, 2]}}, "$.orders.between: the low end 5 is above the high end 2"),
    ({"orders": {"between": [1]}}, "$.orders.between: between takes [low, high], got [1]"),
    ({"orders": {"in": []}}, "$.orders.in: in takes a non-empty list of values, got []"),
    ({"orders": {"gte": -1}}, "$.orders.gte: expected a whole number of 0 or more, got -1"),
    ({"orders": {"gte": True}}, "$.orders.gte: expected a whole number of 0 or more, got true"),
    ({"all": []}, '$.all: "all" takes a non-empty list of rules, got []'),
    ({"any": {"orders": {"gte": 1}}}, '$.any: "any" takes a non-empty list of rules'),
    ({"all": [{"orders": {"gte": 1}}, {"not": []}]}, "$.all[1].not: a rule is an object"),
    ({}, "$: the rule is empty"),
    ({"orders": {}}, '$.orders: needs one comparison ("eq", "ne", "gt", "gte", "lt", "lte", "between" or "in"), such as {"gte": 1}'),
    ({"orders": 3}, '$.orders: expected an object with one comparison, such as {"gte": 1}, got 3'),
    ({"orders": {"gte": 1, "witin": "3d"}}, '$.orders.witin: unknown key "witin" (did you mean "within"?)'),
    ({"last_order_at": {"before": "90d", "within": "3d"}}, '$.last_order_at.within: "within" does not apply to last_order_at (it is a time'),
    ({"last_order_at": {"before": "soon"}}, '$.last_order_at.before: "soon" is not a duration (use 30m, 24h or 90d, or a date'),
    ({"last_order_at": {"on": "24h"}}, '$.last_order_at.on: on takes whole days ago, such as "0d" (today) or "2d"'),
    ({"last_order_at": {"exists": "yes"}}, '$.last_order_at.exists: exists takes true or false, got "yes"'),
    ({"orders": {"gte": 1, "within": "0d"}}, '$.orders.within: "0d" is no time at all: use at least 1d'),
    ({"orders": {"gte": 1, "within": "4000d"}}, '$.orders.within: "4000d" is longer than 3660 days'),
    ({"orders": {"gte": 1, "since": "2024-02-30"}}, '$.orders.since: "2024-02-30" is not a date (use YYYY-MM-DD'),
    ({"orders": {"gte": 1, "since": "2024-02-01", "until": "2024-01-31"}}, '$.orders.until: "2024-01-31" is before since "2024-02-01"'),
    ({"orders": {"gte": 1, "product": "sku"}}, '$.orders.product: "product" applies to bought_product only'),
    ({"bought_product": {"gte": 1}}, '$.bought_product: needs the product (its id as the shop sends it), such as {"product": "sku-123", "gte": 1}'),
    ({"bought_product": {"product": "", "gte": 1}}, "$.bought_product.product: needs the product"),
    ({"bought_product": {"product": "a", "brand": "b", "gte": 1}},
     "$.bought_product.brand: bought_product counts orders with a product: to count a brand use bought_brand"),
    ({"order_value": {"eq": "10.00"}}, '$.order_value.eq: "eq" does not apply to order_value: use "gt", "gte", "lt" or "lte"'),
    ({"attribute": {"gte": 18}}, '$.attribute.name: needs the field\'s "name"'),
    ({"attribute": {"name": "vip", "gt": False}}, "$.attribute.gt: gt compares numbers or texts, not true/false"),
    ({"attribute": {"name": "x", "eq": [1]}}, "$.attribute.eq: expected a text, a number or true/false, got [1]"),
    ({"attribute": {"name": "x", "between": [1, "b"]}}, '$.attribute.between: between takes two numbers or two texts, got [1, "b"]'),
    ({"in_segment": {"eq": ""}}, "$.in_segment.eq: expected a name (a non-empty text)"),
    ({"any": [{"orders": {"gte": 1}}, {"weird key": {}}]}, '$.any[1]: unknown criterion "weird key"'),
    ({"stores": {"gte": 2, "within": "30d"}}, '$.stores.within: "within" does not apply to stores'),
    ([{"orders": {"gte": 1}}], '$: a rule is an object such as {"orders": {"gte": 1}}, got [{"orders": {"gte": 1}}]'),
])
def test_errors_name_the_path_and_what_is_wrong(rule: object, message: str) -> None:
    currency = "JPY" if "JPY" in message else "EUR"
    with pytest.raises(RuleError) as info:
        parse(rule, currency=currency)
    assert str(info.value).startswith(message), str(info.value)


def test_rules_are_bounded() -> None:
    deep: dict[str, Any] = {"orders": {"gte": 1}}
    for _ in range(13):
        deep = {"not": deep}
    with pytest.raises(RuleError, match=r"^\$(\.not){13}: rules nest at most 12 levels deep"):
        parse(deep)
    with pytest.raises(RuleError, match=r"^\$\.any\[64\]: a rule has at most 64 conditions"):
        parse({"any": [{"orders": {"eq": n}} for n in range(65)]})
    with pytest.raises(RuleError, match=r"^\$\.orders\.in: in takes at most 1000 values, got 1001"):
        parse({"orders": {"in": list(range(1001))}})


def test_segment_sets_pickle_with_their_shared_sums() -> None:
    live = SegmentSet(parse_segments({"a": {"orders": {"gte": 1}}, "b": {"not": {"orders": {"gte": 1}}}},
                                     currency="EUR", timezone=BERLIN), ctx())
    copy = pickle.loads(pickle.dumps(live))
    assert copy.rules["a"].sum is copy.rules["b"].rule.sum  # type: ignore[attr-defined]
    facts = CustomerFacts(first_seen=T0, orders=(order(T0),))
    assert copy.evaluate(copy.order, facts, T0) == live.evaluate(live.order, facts, T0) == {"a": (True, None), "b": (False, None)}


def test_product_rules_have_their_own_criteria() -> None:
    rule = parse({"units": {"gte": 50, "within": "30d"}}, subject=Subject.PRODUCT)
    assert rule == Tally("units", Sum((Term("sales", Measure.UNITS),), Window(within=30 * DAY)), Compare(Op.GTE, 50))
    with pytest.raises(RuleError, match=r'^\$: unknown criterion "spent"; a product rule uses "units"'):
        parse({"spent": {"gte": "1.00"}}, subject=Subject.PRODUCT)


# --- references, cycles, inputs ----------------------------------------------------------------


def test_references_cycles_and_dependency_order() -> None:
    rules = {s: parse(r) for s, r in {
        "a": {"all": [{"in_segment": {"eq": "b"}}, {"in_segment": {"ne": "c"}}]},
        "b": {"in_segment": {"in": ["c", "d"]}}, "c": {"orders": {"gte": 1}}, "d": {"orders": {"eq": 0}}}.items()}
    assert references(rules["a"]) == {"b", "c"}
    assert find_cycle(rules) is None
    order = dependency_order(rules)
    assert sorted(order) == ["a", "b", "c", "d"]
    assert all(order.index(r) < order.index(s) for s in rules for r in references(rules[s]))
    rules["c"] = parse({"any": [{"orders": {"gte": 1}}, {"in_segment": {"eq": "a"}}]})
    assert find_cycle(rules) == ["a", "b", "c", "a"]
    with pytest.raises(RuleError, match=r'in_segment makes a cycle: "a" -> "b" -> "c" -> "a"'):
        dependency_order(rules)
    rules["c"] = parse({"in_segment": {"eq": "zz"}})
    with pytest.raises(RuleError, match=r'segment "c": in_segment names "zz", which is not a segment'):
        dependency_order(rules)
    assert find_cycle({"self": parse({"in_segment": {"eq": "self"}})}) == ["self", "self"]


def test_parse_segments_names_the_segment_in_the_path() -> None:
    with pytest.raises(RuleError, match=r'^\$\["big spenders"\]\.all\[0\]\.spent\.gte: "1.001"'):
        parse_segments({"ok": {"orders": {"gte": 1}}, "big spenders": {"all": [{"spent": {"gte": "1.001"}}]}},
                       currency="EUR", timezone=BERLIN)


def test_inputs_name_the_facts_a_rule_reads() -> None:
    segments = {"buyer": parse({"orders": {"gte": 1}})}
    rule = parse({"all": [{"net_spent": {"gte": "1.00"}}, {"last_active_at": {"after": "3d"}},
                          {"any": [{"registered_at": {"on": "0d"}}, {"in_segment": {"eq": "buyer"}}]},
                          {"attribute": {"name": "x", "exists": True}}, {"store": {"eq": "s"}}]})
    assert inputs(rule, segments) == {"orders", "refunds", "last_active", "registered", "first_seen", "attributes", "stores"}
    assert inputs(parse({"open_cart_value": {"gte": "1.00"}})) == {"open_carts"}
    assert inputs(parse({"email_engaged": {"gte": 1}})) == {"emails"}
    product = parse({"any": [{"abandoned_carts": {"gte": 1}}, {"brand": {"eq": "b"}}]}, subject=Subject.PRODUCT)
    assert inputs(product) == {"abandons", "brand"}


def test_changed_inputs_and_touched_segments() -> None:
    old = CustomerFacts(first_seen=T0, last_active=T0)
    new = CustomerFacts(first_seen=T0, last_active=T0 + HOUR, orders=(Entry(T0 + HOUR, "EUR", 100),))
    assert changed_inputs(old, new) == {"last_active", "orders"}
    assert changed_inputs(new, new) == frozenset()
    assert "attributes" in changed_inputs(None, new)
    live = SegmentSet(parse_segments({
        "buyer": {"orders": {"gte": 1}}, "active": {"last_active_at": {"after": "1d"}},
        "active_buyer": {"all": [{"in_segment": {"eq": "buyer"}}, {"in_segment": {"eq": "active"}}]},
        "tagged": {"attribute": {"name": "tag", "exists": True}}}, currency="EUR", timezone=BERLIN), ctx())
    assert live.touched(frozenset({"orders"})) == ("buyer", "active_buyer")
    assert live.touched(changed_inputs(old, new)) == ("active", "buyer", "active_buyer")
    assert live.touched(frozenset({"emails"})) == ()
    assert live.evaluate(live.touched(frozenset({"orders"})), new, T0 + 2 * HOUR) == {
        "buyer": (True, None), "active_buyer": (True, T0 + HOUR + DAY)}


# --- evaluation: fixed cases ------------------------------------------------------------------


def order(t: int, amount: int = 10_000, currency: str = "EUR", units: int = 1, **items: tuple[str, ...]) -> Entry:
    return Entry(t, currency, amount, units, **items)


def test_window_holds_events_after_now_minus_d() -> None:
    rule = parse({"orders": {"gte": 2, "within": "24h"}})
    facts = CustomerFacts(first_seen=T0, orders=(order(T0), order(T0 + HOUR)))
    assert evaluate(rule, facts, T0 + HOUR, ctx()) == (True, T0 + DAY)  # T0 leaves at exactly T0 + 24h
    assert holds(rule, facts, T0 + DAY - 1, ctx()) and not holds(rule, facts, T0 + DAY, ctx())
    assert next_change(rule, facts, T0 + DAY, ctx()) is None  # it only gets emptier


def test_before_and_after_a_duration_turn_at_time_plus_duration() -> None:
    facts = CustomerFacts(first_seen=T0, orders=(order(T0),))
    lapsed, recent = parse({"last_order_at": {"before": "90d"}}), parse({"last_order_at": {"after": "90d"}})
    assert evaluate(lapsed, facts, T0 + 90 * DAY - 1, ctx()) == (False, T0 + 90 * DAY)
    assert evaluate(lapsed, facts, T0 + 90 * DAY, ctx()) == (True, None)
    assert evaluate(recent, facts, T0, ctx()) == (True, T0 + 90 * DAY)
    assert not holds(lapsed, CustomerFacts(first_seen=T0), T0 + 999 * DAY, ctx())  # never ordered: no last order


def test_on_counts_local_days_across_a_dst_change() -> None:
    berlin = ZoneInfo(BERLIN)
    sat = local_midnight(date(2024, 3, 30), berlin) + 23 * HOUR + 30 * MIN  # 23:30 on the Saturday before the change
    facts = CustomerFacts(first_seen=sat, orders=(order(sat),))
    rule = parse({"last_order_at": {"on": "2d"}})
    monday, tuesday = local_midnight(date(2024, 4, 1), berlin), local_midnight(date(2024, 4, 2), berlin)
    assert tuesday - monday == DAY and monday - sat == 23 * HOUR + 30 * MIN  # Sunday had 23 hours
    assert evaluate(rule, facts, sat, ctx()) == (False, monday)
    assert evaluate(rule, facts, monday, ctx()) == (True, tuesday)
    assert evaluate(rule, facts, tuesday, ctx()) == (False, None)


def test_money_converts_at_the_days_rate_and_compares_exactly() -> None:
    usd = order(T0, 1000, "USD")  # 10.00 USD on 2024-03-20
    usd_per_eur = RATES.per_euro("USD", "2024-03-20")
    euros = int((Decimal(10) / usd_per_eur * 100).quantize(Decimal(1), rounding="ROUND_HALF_UP"))
    facts = CustomerFacts(first_seen=T0, orders=(usd,))
    assert holds(parse({"spent": {"eq": f"{Decimal(euros) / 100:.2f}"}}), facts, T0, ctx())
    assert not holds(parse({"spent": {"gt": f"{Decimal(euros) / 100:.2f}"}}), facts, T0, ctx())
    with pytest.raises(MissingRate):
        holds(parse({"spent": {"gte": "1.00"}}), facts, T0, Context(BERLIN, "EUR"))


def test_net_spent_subtracts_refunds_by_refund_time() -> None:
    facts = CustomerFacts(first_seen=T0, orders=(order(T0 - 40 * DAY, 10_000), order(T0, 5_000)),
                          refunds=(Entry(T0 - DAY, "EUR", 2_000),))
    assert holds(parse({"net_spent": {"eq": "130.00"}}), facts, T0, ctx())
    assert holds(parse({"net_spent": {"eq": "30.00", "within": "30d"}}), facts, T0, ctx())
    assert holds(parse({"refunds": {"eq": 1, "within": "2d"}}), facts, T0, ctx())


def test_order_value_is_some_single_order() -> None:
    facts = CustomerFacts(first_seen=T0, orders=(order(T0, 9_000), order(T0 + 1, 12_000)))
    assert holds(parse({"order_value": {"gte": "100.00"}}), facts, T0 + 2, ctx())
    assert not holds(parse({"order_value": {"gt": "120.00"}}), facts, T0 + 2, ctx())
    assert holds(parse({"order_value": {"lt": "100.00"}}), facts, T0 + 2, ctx())


def test_items_and_bought_criteria() -> None:
    facts = CustomerFacts(first_seen=T0, orders=(
        order(T0, units=3, products=("p1", "p2"), categories=("shoes",), brands=("acme",)),
        order(T0 + DAY, units=1, products=("p2",), categories=("hats",))))
    now = T0 + 2 * DAY
    assert holds(parse({"items": {"eq": 4}}), facts, now, ctx())
    assert holds(parse({"bought_product": {"product": "p2", "eq": 2}}), facts, now, ctx())
    assert holds(parse({"bought_category": {"category": "shoes", "eq": 1, "within": "49h"}}), facts, now, ctx())
    assert holds(parse({"bought_category": {"category": "shoes", "eq": 0, "within": "2d"}}), facts, now, ctx())  # T0 = now - 2d: out
    assert holds(parse({"bought_brand": {"brand": "acme", "gte": 1}}), facts, now, ctx())


@pytest.mark.parametrize(("value", "rule", "expected"), [
    (32, {"gte": 18}, True), ("32", {"between": [20, 45]}, True), (Decimal("19.5"), {"lt": 20}, True),
    ("gold", {"in": ["gold", "platinum"]}, True), ("gold", {"gt": 18}, False), ("gold", {"ne": 18}, True),
    (True, {"eq": True}, True), (True, {"eq": 1}, False), (1, {"eq": True}, False), ("2024-05-01", {"gte": "2024-01-01"}, True),
    ("abc", {"exists": True}, True), (None, {"exists": False}, True), (None, {"ne": "gold"}, False),
])
def test_attributes_compare_like_with_like(value: Any, rule: dict[str, Any], expected: bool) -> None:
    attrs = {} if value is None else {"x": value}
    facts = CustomerFacts(first_seen=T0, attributes=attributes_of(attrs))
    assert holds(parse({"attribute": {"name": "x", **rule}}), facts, T0, ctx()) is expected
    assert ref.attribute(attrs, "x", *next(iter(rule.items()))) is expected


def test_attribute_value_keeps_json_scalars_exactly() -> None:
    assert attribute_value(0.1) == Decimal("0.1") and attribute_value("a") == "a" and attribute_value(True) is True
    assert attribute_value([1]) is None and attribute_value(None) is None and attribute_value(float("nan")) is None
    assert attributes_of({"tier": "gold", "age": 31.5, "tags": ["a"]}) == (("age", Decimal("31.5")), ("tier", "gold"))


def test_facts_pickle_as_the_dataflow_snapshots_them() -> None:
    facts = CustomerFacts(first_seen=T0, attributes=attributes_of({"age": 3}), orders=(order(T0),))
    folded = fold(facts, keep_for([parse({"orders": {"gte": 1}})]), T0 + DAY, ctx())
    for f in (CustomerFacts(first_seen=T0), facts, folded, ProductFacts()):
        assert pickle.loads(pickle.dumps(f)) == f


def test_store_and_in_segment() -> None:
    segments = {"two_stores": parse({"stores": {"gte": 2}})}
    facts = CustomerFacts(first_seen=T0, stores=("de", "fr"))
    assert holds(parse({"store": {"eq": "de"}}), facts, T0, ctx()) and holds(parse({"store": {"ne": "it"}}), facts, T0, ctx())
    assert holds(parse({"in_segment": {"eq": "two_stores"}}), facts, T0, ctx(segments=segments))
    assert not holds(parse({"in_segment": {"ne": "two_stores"}}), facts, T0, ctx(segments=segments))


def test_all_waits_for_its_latest_false_part() -> None:
    # not a member until both have turned: no timer at the first one
    rule = parse({"all": [{"last_order_at": {"before": "30d"}}, {"last_active_at": {"before": "60d"}}]})
    facts = CustomerFacts(first_seen=T0, last_active=T0, orders=(order(T0),))
    assert evaluate(rule, facts, T0, ctx()) == (False, T0 + 60 * DAY)
    assert evaluate(parse({"all": [{"orders": {"gte": 2}}, {"last_active_at": {"after": "1d"}}]}), facts, T0, ctx()) == (False, None)


def test_product_facts() -> None:
    facts = ProductFacts(category="shoes", brand="acme", sales=(Entry(T0, "EUR", 5_000, 2), Entry(T0 + DAY, "EUR", 2_500, 1)),
                         abandons=(T0, T0 + HOUR))
    p = {"subject": Subject.PRODUCT}
    assert evaluate(parse({"units": {"gte": 3, "within": "30d"}}, **p), facts, T0 + DAY, ctx()) == (True, T0 + 30 * DAY)
    assert holds(parse({"revenue": {"eq": "75.00"}}, **p), facts, T0 + DAY, ctx())
    assert holds(parse({"abandoned_carts": {"eq": 2}}, **p), facts, T0 + DAY, ctx())
    assert holds(parse({"category": {"in": ["shoes", "hats"]}}, **p), facts, T0, ctx())
    assert evaluate(parse({"last_sold_at": {"before": "30d"}}, **p), facts, T0 + DAY, ctx()) == (False, T0 + 31 * DAY)


# --- evaluation: properties --------------------------------------------------------------------

SPAN = 120 * DAY
ZONES = ("Europe/Berlin", "America/Santiago", "Australia/Lord_Howe", "Asia/Kathmandu", "UTC")
DURATIONS = ("30m", "24h", "2d", "7d", "30d")
DATES = ("2024-03-10", "2024-03-31", "2024-04-15", "2024-05-20")
PRODUCTS, CATEGORIES, BRANDS, STORES = ("p1", "p2", "p3"), ("c1", "c2"), ("b1", "b2"), ("s1", "s2", "s3")

half_hours = st.integers(-40 * 48, 130 * 48).map(lambda k: T0 + k * 30 * MIN)  # ties with window ends
currency = st.sampled_from(("EUR", "EUR", "USD", "JPY"))


def instants(zone: str, rule: object = None) -> st.SearchStrategy[int]:
    """Half hours, and as often the first and last ms of the days the rule names (all DATES without a
    rule) in `zone`: where date tests and since/until turn."""
    named = re.findall(r"\d{4}-\d{2}-\d{2}", json.dumps(rule)) if rule is not None else DATES
    if not named:
        return half_hours
    edges = [local_midnight(date.fromisoformat(d) + timedelta(days=k), ZoneInfo(zone)) + ms
             for d in named for k in (0, 1) for ms in (-1, 0)]
    return st.one_of(half_hours, st.sampled_from(edges))


@st.composite
def entries(draw: st.DrawFn, instant: st.SearchStrategy[int], with_items: bool = False) -> Entry:
    cur = draw(currency)
    amount = draw(st.integers(0, 30_000 if cur == "JPY" else 20_000))
    if not with_items:
        return Entry(draw(instant), cur, amount)
    return Entry(draw(instant), cur, amount, draw(st.integers(0, 4)),
                 tuple(draw(st.sets(st.sampled_from(PRODUCTS)))), tuple(draw(st.sets(st.sampled_from(CATEGORIES)))),
                 tuple(draw(st.sets(st.sampled_from(BRANDS)))))


@st.composite
def customer_facts(draw: st.DrawFn, zone: str, rules: object = None) -> CustomerFacts:
    """A customer whose times fall on half hours and on the edges of the days `rules` name."""
    instant = instants(zone, rules)
    maybe_instant = st.none() | instant
    attributes = draw(st.dictionaries(st.sampled_from(("age", "tier")), st.one_of(
        st.integers(0, 60), st.sampled_from(("gold", "silver", "30", "x")), st.booleans(),
        st.decimals(0, 60, places=1, allow_nan=False))))
    return CustomerFacts(
        first_seen=draw(instant), registered=draw(maybe_instant), last_active=draw(maybe_instant),
        stores=tuple(sorted(draw(st.sets(st.sampled_from(STORES))))), attributes=attributes_of(attributes),
        orders=tuple(draw(st.lists(entries(instant, with_items=True), min_size=draw(st.integers(0, 1)), max_size=6))),
        refunds=tuple(draw(st.lists(entries(instant), max_size=3))), emails=tuple(draw(st.lists(instant, max_size=4))),
        open_carts=tuple(draw(st.lists(entries(instant), max_size=2))),
        last_cart_created=draw(maybe_instant), last_cart_abandoned=draw(maybe_instant))


def _count() -> st.SearchStrategy[dict[str, Any]]:
    n = st.integers(0, 4)
    return st.one_of(st.builds(lambda op, v: {op: v}, st.sampled_from(("eq", "ne", "gt", "gte", "lt", "lte")), n),
                     st.builds(lambda a, b: {"between": [min(a, b), max(a, b)]}, n, n),
                     st.builds(lambda vs: {"in": vs}, st.lists(n, min_size=1, max_size=3)))


def _money(ops: tuple[str, ...] = ("eq", "ne", "gt", "gte", "lt", "lte")) -> st.SearchStrategy[dict[str, Any]]:
    amount = st.integers(-50, 400).map(lambda n: f"{n}.00")
    return st.builds(lambda op, v: {op: v}, st.sampled_from(ops), amount)


@st.composite
def window(draw: st.DrawFn, dated: bool = False) -> dict[str, Any]:
    """Mostly `within` windows (they move with time); `dated`: mostly since/until (they cut history)."""
    w: dict[str, Any] = {}
    if draw(st.integers(0, 3)) >= (2 if dated else 1):
        w["within"] = draw(st.sampled_from(DURATIONS))
    if draw(st.integers(0, 2)) < (2 if dated else 1):
        w["since"] = draw(st.sampled_from(DATES[:2]))
    if draw(st.integers(0, 2)) < (2 if dated else 1):
        w["until"] = draw(st.sampled_from(DATES[2:]))
    return w


KINDS = ("orders", "spent", "net_spent", "order_value", "items", "bought_product", "bought_category", "bought_brand",
         "refunds", "email_engaged", "open_cart_value", *ref.TIME_VALUE, "attribute", "store", "stores", "in_segment")


@st.composite
def condition(draw: st.DrawFn, kind: str, dated: bool = False) -> dict[str, Any]:  # noqa: C901 - one branch per criterion
    if kind in ("orders", "items", "refunds", "email_engaged"):
        return {kind: {**draw(_count()), **draw(window(dated))}}
    if kind in ("spent", "net_spent"):
        return {kind: {**draw(_money()), **draw(window(dated))}}
    if kind == "order_value":
        return {kind: {**draw(_money(("gt", "gte", "lt", "lte"))), **draw(window(dated))}}
    if kind.startswith("bought_"):
        field, names = {"bought_product": ("product", PRODUCTS), "bought_category": ("category", CATEGORIES),
                        "bought_brand": ("brand", BRANDS)}[kind]
        return {kind: {field: draw(st.sampled_from(names)), **draw(_count()), **draw(window(dated))}}
    if kind == "open_cart_value":
        return {kind: draw(_money())}
    if kind in ref.TIME_VALUE:
        criterion = kind
        op = draw(st.sampled_from(("before", "after", "on", "on", "exists")))
        if op == "exists":
            return {criterion: {"exists": draw(st.booleans())}}
        relative = draw(st.integers(0, 3)) > 0
        if op == "on":
            value = draw(st.sampled_from(("0d", "1d", "2d", "7d") if relative else DATES))
        else:
            value = draw(st.sampled_from((*DURATIONS, "90d") if relative else DATES))
        return {criterion: {op: value}}
    if kind == "attribute":
        value = st.one_of(st.integers(0, 60), st.sampled_from(("gold", "30")), st.booleans(), st.floats(0, 60).map(lambda f: round(f, 1)))
        op = draw(st.sampled_from(("eq", "ne", "gt", "gte", "lt", "lte", "in", "between", "exists")))
        name = draw(st.sampled_from(("age", "tier")))
        if op == "exists":
            return {kind: {"name": name, "exists": draw(st.booleans())}}
        if op == "in":
            return {kind: {"name": name, "in": draw(st.lists(value, min_size=1, max_size=3))}}
        if op == "between":
            a, b = sorted(draw(st.lists(st.integers(0, 60), min_size=2, max_size=2)))
            return {kind: {"name": name, "between": [a, b]}}
        v = draw(value)
        if op not in ("eq", "ne") and isinstance(v, bool):
            v = 30
        return {kind: {"name": name, op: v}}
    if kind == "store":
        op = draw(st.sampled_from(("eq", "ne", "in")))
        return {kind: {op: list(draw(st.sets(st.sampled_from(STORES), min_size=1))) if op == "in" else draw(st.sampled_from(STORES))}}
    if kind == "stores":
        return {kind: draw(_count())}
    op = draw(st.sampled_from(("eq", "ne", "in")))
    return {kind: {op: ["recent", "big"] if op == "in" else draw(st.sampled_from(("recent", "big")))}}


any_condition = st.sampled_from((*KINDS, *ref.TIME_VALUE)).flatmap(condition)  # times twice: they are what moves
rules = st.recursive(any_condition, lambda inner: st.one_of(
    st.lists(inner, min_size=1, max_size=3).map(lambda rs: {"all": rs}),
    st.lists(inner, min_size=1, max_size=3).map(lambda rs: {"any": rs}),
    inner.map(lambda r: {"not": r})), max_leaves=5)

SEGMENTS = {"recent": {"orders": {"gte": 1, "within": "7d"}},
            "big": {"any": [{"spent": {"gte": "150.00", "within": "30d"}}, {"last_order_at": {"on": "1d"}}]}}


def _sample(start: int, end: int, draw: st.DrawFn) -> list[int]:
    """Instants in [start, end): both ends, around the middle, and a few drawn."""
    points = {start, end - 1, (start + end) // 2, start + 1}
    points.update(draw(st.lists(st.integers(start, end - 1), max_size=3)))
    return sorted(p for p in points if start <= p < end)


def _sweep(rule: Any, facts: CustomerFacts, reference: CustomerFacts, org: ref.Org, context: Context,
           rule_json: dict[str, Any], draw: st.DrawFn, start: int) -> None:
    """From `start` to the end of the span, step from change to change: between two, the value stays
    what it was at the first, and every sampled instant agrees with the reference on `reference`."""
    now, end, steps = start, T0 + SPAN, 0
    while now < end:
        value, at = evaluate(rule, facts, now, context)
        assert value == holds(rule, facts, now, context)
        assert at is None or at > now
        upto = end if at is None or at > end else at
        for t in _sample(now, upto, draw):
            assert holds(rule, facts, t, context) == value, (t - T0, now - T0, at)
            assert ref.holds(rule_json, reference, t, org) == value, (t - T0, now - T0, at)
        if at is None:
            return
        now, steps = at, steps + 1
        assert steps < 2000


def _check_sweep(data: st.DataObject, rule_json: dict[str, Any], facts: CustomerFacts, zone: str) -> None:
    segments = {s: parse(r, timezone=zone) for s, r in SEGMENTS.items()}
    rule = parse(rule_json, timezone=zone)
    org = ref.Org(zone, "EUR", RATES, SEGMENTS)
    _sweep(rule, facts, facts, org, Context(zone, "EUR", RATES, segments), rule_json, data.draw, T0 - 45 * DAY)


def _check_fold(data: st.DataObject, rule_jsons: list[dict[str, Any]], facts: CustomerFacts, zone: str, folded_at: int) -> None:
    """Facts folded under keep_for(the rules) at `folded_at` answer every rule as the full facts do, at
    every instant from then on; folding again changes nothing."""
    segments = {s: parse(r, timezone=zone) for s, r in SEGMENTS.items()}
    parsed = [parse(r, timezone=zone) for r in rule_jsons]
    keep = keep_for([*parsed, *segments.values()])
    context = Context(zone, "EUR", RATES, segments)
    folded = fold(facts, keep, folded_at, context)
    assert fold(folded, keep, folded_at, context) is folded
    assert all(covers(keep, r) for r in parsed)
    org = ref.Org(zone, "EUR", RATES, SEGMENTS)
    for rule, rule_json in zip(parsed, rule_jsons, strict=True):
        _sweep(rule, folded, facts, org, context, rule_json, data.draw, folded_at)


PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.parametrize("kind", KINDS)
@settings(PROPERTY, max_examples=40)
@given(data=st.data(), zone=st.sampled_from(ZONES))
def test_each_criterion_changes_only_at_next_change_and_as_defined(kind: str, data: st.DataObject, zone: str) -> None:
    rule = data.draw(condition(kind))
    _check_sweep(data, rule, data.draw(customer_facts(zone, rule)), zone)


@pytest.mark.slow  # property tests over many folds: seconds each, kept out of `make test-unit`
@settings(PROPERTY, max_examples=300)
@given(st.data(), rules, st.sampled_from(ZONES))
def test_rules_change_only_at_next_change_and_as_defined(data: st.DataObject, rule_json: dict[str, Any], zone: str) -> None:
    _check_sweep(data, rule_json, data.draw(customer_facts(zone, rule_json)), zone)


@pytest.mark.slow  # property tests over many folds: seconds each, kept out of `make test-unit`
@pytest.mark.parametrize("kind", KINDS)
@settings(PROPERTY, max_examples=30)
@given(data=st.data(), zone=st.sampled_from(ZONES))
def test_each_criterion_answers_alike_on_folded_facts(kind: str, data: st.DataObject, zone: str) -> None:
    rule_jsons = [data.draw(condition(kind, dated=True)), *data.draw(st.lists(rules, max_size=2))]
    _check_fold(data, rule_jsons, data.draw(customer_facts(zone, rule_jsons[0])), zone, data.draw(instants(zone)))


@pytest.mark.slow  # property tests over many folds: seconds each, kept out of `make test-unit`
@settings(PROPERTY, max_examples=150)
@given(st.data(), st.lists(rules, min_size=1, max_size=3), st.sampled_from(ZONES))
def test_rules_answer_alike_on_folded_facts(data: st.DataObject, rule_jsons: list[dict[str, Any]], zone: str) -> None:
    _check_fold(data, rule_jsons, data.draw(customer_facts(zone, rule_jsons)), zone, data.draw(instants(zone)))


@st.composite
def on_the_edges(draw: st.DrawFn, zone: str, rule: object) -> tuple[int, int]:
    """(time, now) on the rule's edges: the time on the first or last ms of a day the rule names, now
    a duration the rule names after it (+-1 ms), or the time and now on half hours."""
    days = re.findall(r"\d{4}-\d{2}-\d{2}", json.dumps(rule))
    edges = [local_midnight(date.fromisoformat(d) + timedelta(days=k), ZoneInfo(zone)) + ms
             for d in days for k in (0, 1) for ms in (-1, 0)]
    t = draw(st.sampled_from(edges) if edges and draw(st.integers(0, 3)) else half_hours)
    durations = [ref.duration(d) for d in re.findall(r'"(\d+[mhd])"', json.dumps(rule))]
    if durations and draw(st.booleans()):
        return t, t + draw(st.sampled_from(durations)) + draw(st.sampled_from((-1, 0, 1)))
    return t, t + draw(st.sampled_from((0, 1, HOUR, DAY, 40 * DAY, -DAY)))


@settings(PROPERTY, max_examples=600)
@given(st.data(), st.sampled_from(ZONES), st.sampled_from(tuple(ref.TIME_VALUE)))
def test_time_tests_at_their_edges(data: st.DataObject, zone: str, kind: str) -> None:
    rule = data.draw(condition(kind))
    t, now = data.draw(on_the_edges(zone, rule))
    facts = CustomerFacts(first_seen=t, registered=t, last_active=t, orders=(order(t),), last_cart_created=t,
                          last_cart_abandoned=t)
    assert holds(parse(rule, timezone=zone), facts, now, ctx(zone)) == ref.holds(rule, facts, now, ref.Org(zone, "EUR", RATES, {}))


@settings(PROPERTY, max_examples=600)
@given(st.data(), st.sampled_from(ZONES), st.sampled_from(("orders", "spent", "order_value", "bought_brand", "email_engaged")),
       st.booleans())
def test_windows_at_their_edges(data: st.DataObject, zone: str, kind: str, dated: bool) -> None:
    """An entry on an edge of the window (and one elsewhere), read directly and once folded into history."""
    rule = data.draw(condition(kind, dated))
    t, now = data.draw(on_the_edges(zone, rule))
    other = order(data.draw(half_hours), data.draw(st.integers(0, 40_000)), brands=("b1",))
    facts = CustomerFacts(first_seen=t, orders=(order(t, data.draw(st.integers(0, 40_000)), brands=("b1",)), other), emails=(t,))
    org = ref.Org(zone, "EUR", RATES, {})
    expected = ref.holds(rule, facts, now, org)
    assert holds(parse(rule, timezone=zone), facts, now, ctx(zone)) == expected
    rules = [parse(rule, timezone=zone)]
    folded = fold(facts, keep_for(rules), now, ctx(zone))
    assert holds(rules[0], folded, now, ctx(zone)) == expected


def test_fold_keeps_totals_per_period_between_the_cuts() -> None:
    rules = [parse({"orders": {"gte": 1, "since": "2024-03-31"}}), parse({"bought_brand": {"brand": "b1", "gte": 2}}),
             parse({"spent": {"gte": "1.00", "within": "30d"}})]
    keep = keep_for(rules)
    cut = local_midnight(date(2024, 3, 31), ZoneInfo(BERLIN))
    assert keep.cuts == (cut,) and keep.horizon("orders") == 30 * DAY and keep.items == {ItemFilter("brands", "b1")}
    facts = CustomerFacts(first_seen=T0, orders=(order(T0, brands=("b1", "b2"), products=("p",)), order(T0 + 20 * DAY, brands=("b1",)),
                                                  order(T0 + 60 * DAY, brands=("b2",))))
    folded = fold(facts, keep, T0 + 60 * DAY, ctx())
    assert folded.orders == (order(T0 + 60 * DAY),)  # names no rule asks about are dropped
    before, after = folded.history
    assert (before.start, before.end, before.totals[0].count, before.totals[0].bought) == (None, cut, 1, ((ItemFilter("brands", "b1"), 1),))
    assert (after.start, after.end, after.totals[0].count, after.totals[0].first) == (cut, None, 1, T0 + 20 * DAY)
    assert [holds(r, folded, T0 + 60 * DAY, ctx()) for r in rules] == [holds(r, facts, T0 + 60 * DAY, ctx()) for r in rules]
    assert not covers(keep, parse({"orders": {"gte": 1, "within": "60d"}}))
    assert not covers(keep, parse({"bought_brand": {"brand": "b2", "gte": 1}}))


def test_folded_history_keeps_extremes_and_the_periods_on_each_side_of_a_cut() -> None:
    until, small, big = (parse({"orders": {"eq": 1, "until": "2024-03-31"}}), parse({"order_value": {"lt": "50.00"}}),
                         parse({"order_value": {"gt": "150.00"}}))
    keep = keep_for([until, small, big])
    cut = local_midnight(date(2024, 4, 1), ZoneInfo(BERLIN))
    facts = CustomerFacts(first_seen=T0, orders=(order(T0, 4_000), order(cut, 20_000)))  # one before the cut, one on it
    folded = fold(facts, keep, cut + DAY, ctx())
    assert folded.orders == () and [(p.start, p.end) for p in folded.history] == [(None, cut), (cut, None)]
    assert [holds(r, folded, cut + DAY, ctx()) for r in (until, small, big)] == [True, True, True]
    assert [holds(r, facts, cut + DAY, ctx()) for r in (until, small, big)] == [True, True, True]


# --- the predefined library --------------------------------------------------------------------


@pytest.mark.parametrize("currency", ["EUR", "JPY", "KWD"])
def test_every_predefined_segment_parses(currency: str) -> None:
    assert len(library.CUSTOMER_SEGMENTS) >= 30
    for subject, segments in library.LIBRARY.items():
        ids = [p.id for p in segments]
        assert len(ids) == len(set(ids))
        assert all(p.subject is subject and p.name and p.description for p in segments)
        thresholds = library.Thresholds(featured_category="shoes", featured_brand="acme")
        parsed = parse_segments(library.rules(subject, thresholds), currency=currency, timezone=BERLIN, subject=subject)
        assert sorted(parsed) == sorted(ids)
    assert "featured_category_best_sellers" not in library.rules(Subject.PRODUCT)  # no featured category set


def test_the_library_covers_the_issue() -> None:
    ids = {p.id for p in library.CUSTOMER_SEGMENTS} | {p.id for p in library.PRODUCT_SEGMENTS}
    assert ids >= {"one_time_buyers", "repeat_buyers", "registered_never_bought", "registered_never_bought_inactive",
                   "ordered_two_days_ago", "abandoned_cart_24h", "open_cart_over_threshold", "new_customers", "at_risk",
                   "lapsed", "big_spenders", "big_single_order", "email_engaged_never_bought", "refunders", "multi_store",
                   "rfm_champions", "best_sellers", "slow_movers", "most_abandoned"}


def test_thresholds_fill_the_rules() -> None:
    rules = library.rules(Subject.CUSTOMER, library.Thresholds(big_spender="2500.50", rfm_frequent=4))
    assert rules["big_spenders"] == {"spent": {"gte": "2500.50"}}
    assert {"orders": {"gte": 4}} in rules["rfm_champions"]["all"]
    with pytest.raises(RuleError, match=r"^\$\.big_spenders\.spent\.gte: \"2500.50\" has more decimals than JPY"):
        parse_segments(rules, currency="JPY", timezone=BERLIN)


def test_documentation_lists_every_predefined_segment() -> None:
    text = (Path(__file__).parent.parent / "docs" / "segments.md").read_text()
    for p in (*library.CUSTOMER_SEGMENTS, *library.PRODUCT_SEGMENTS):
        assert f"`{p.id}`" in text, p.id


RFM = [p.id for p in library.CUSTOMER_SEGMENTS if p.id.startswith("rfm_")]


@settings(PROPERTY, max_examples=200)
@given(st.data(), st.sampled_from(ZONES))
def test_every_buyer_is_in_exactly_one_rfm_group(data: st.DataObject, zone: str) -> None:
    live = SegmentSet(parse_segments(library.rules(Subject.CUSTOMER), currency="EUR", timezone=zone), ctx(zone))
    facts = data.draw(customer_facts(zone))
    now = data.draw(half_hours)
    members = [s for s, (member, _) in live.evaluate(RFM, facts, now).items() if member]
    assert len(members) == (1 if facts.orders else 0), members


# --- the SQL in docs/segments.md ---------------------------------------------------------------


def _doc_sql() -> list[str]:
    text = (Path(__file__).parent.parent / "docs" / "segments.md").read_text()
    return re.findall(r"```sql\n(.*?)```", text, re.S)


@functools.cache
def _rates_db() -> Any:
    """A DuckDB with the rates and currencies tables of docs/segments.md (the test's RATES)."""
    import duckdb  # a pinned test dependency: missing, the test fails loudly rather than skips

    db = duckdb.connect()
    db.execute("CREATE TABLE rates(currency VARCHAR, day DATE, per_euro DECIMAL(18,6))")
    db.executemany("INSERT INTO rates VALUES (?, ?, ?)", [(cur, day, RATES.per_euro(cur, day)) for cur in ("USD", "JPY")
                                                          for day in RATES._days[cur]])
    db.execute("CREATE TABLE currencies(currency VARCHAR, digits INTEGER)")
    db.executemany("INSERT INTO currencies VALUES (?, ?)", list(EXPONENTS.items()))
    return db


SQL_NOW = int(re.search(r"SET VARIABLE now = (\d+);", _doc_sql()[0]).group(1))  # type: ignore[union-attr]
SQL_EDGES = [t + ms for t in (SQL_NOW - 30 * DAY, SQL_NOW - 90 * DAY, local_midnight(date(2024, 4, 1), ZoneInfo(BERLIN)),
                              local_midnight(date(2024, 5, 1), ZoneInfo(BERLIN)),
                              local_midnight(date(2024, 5, 30), ZoneInfo(BERLIN))) for ms in (-1, 0, 1)]


@settings(PROPERTY, max_examples=60)
@given(st.lists(st.tuples(st.sampled_from(("ann", "bob", "cem")),
                          st.one_of(st.integers(-120 * 48, 2 * 48).map(lambda k: SQL_NOW + k * 30 * MIN), st.sampled_from(SQL_EDGES)),
                          st.sampled_from(("EUR", "USD", "JPY")), st.integers(0, 50_000)), min_size=1, max_size=12))
def test_the_documented_sql_agrees_with_the_rules(orders: list[tuple[str, int, str, int]]) -> None:
    """The blocks of docs/segments.md, verbatim, on orders around their edges."""
    setup, query = _doc_sql()
    now = SQL_NOW
    db = _rates_db()
    db.execute("CREATE OR REPLACE TABLE orders(customer VARCHAR, time BIGINT, amount BIGINT, currency VARCHAR, store VARCHAR)")
    db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?, 'shop')", [(c, t, a, cur) for c, t, cur, a in orders])
    for statement in setup.split(";\n"):
        if statement.strip():
            db.execute(statement)
    for customer, n30, spent90, april, lapsed, two_days, largest in db.execute(query).fetchall():
        facts = CustomerFacts(first_seen=T0, orders=tuple(order(t, a, cur) for c, t, cur, a in orders if c == customer))
        amount = f"{Decimal(spent90) / 100:.2f}"
        assert holds(parse({"orders": {"eq": n30, "within": "30d"}}), facts, now, ctx())
        assert holds(parse({"spent": {"eq": amount, "within": "90d"}}), facts, now, ctx())
        assert holds(parse({"orders": {"eq": april, "since": "2024-04-01", "until": "2024-04-30"}}), facts, now, ctx())
        assert holds(parse({"last_order_at": {"before": "90d"}}), facts, now, ctx()) is lapsed
        assert holds(parse({"last_order_at": {"on": "2d"}}), facts, now, ctx()) is two_days
        biggest = f"{Decimal(largest) / 100:.2f}"
        assert holds(parse({"order_value": {"gte": biggest}}), facts, now, ctx())
        assert not holds(parse({"order_value": {"gt": biggest}}), facts, now, ctx())
