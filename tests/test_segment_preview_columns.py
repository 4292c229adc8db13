"""The preview's columns (ws_gateway/preview_columns.py, preview_eval.py) answer exactly as the records'
path (ws_gateway/segment_preview.py preview_records, the dataflow's own evaluator over rebuilt facts):
random records and random rules of every criterion the preview answers, records taken in any order
and version, customers appended after the ranked ones."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import pytest

from core.changes import Record
from core.records import Cart, Customer, Order, RecordKind, Value
from core.rules import Context, inputs, parse_rule, parse_segments
from tests import preview_random as data
from ws_gateway.preview_columns import PreviewColumns
from ws_gateway.preview_eval import Unsupported, preview_columns
from ws_gateway.segment_preview import buyers_only, preview_records

pytestmark = pytest.mark.unit

KINDS: dict[type[Any], RecordKind] = {Customer: RecordKind.CUSTOMER, Order: RecordKind.ORDER, Cart: RecordKind.CART}


def slow(rule: Any, records: Sequence[Record[Value]], ctx: Context) -> tuple[int, list[str]]:
    return preview_records(rule, lambda kind: [r for r in records if r.kind == KINDS[kind]], data.NOW, ctx)


def fast(rule: Any, cols: PreviewColumns, ctx: Context, cache: dict[Any, Any]) -> tuple[int, list[str]]:
    return preview_columns(rule, cols, data.NOW, ctx, buyers_only(rule, inputs(rule, ctx.segments), data.NOW, ctx), cache)


def segments(rnd: random.Random) -> dict[str, Any]:
    """Three segments, the later ones free to name the earlier through in_segment."""
    defined: dict[str, Any] = {}
    for name in ("seg_a", "seg_b", "seg_c"):
        defined[name] = data.rule(rnd, list(defined))
    return defined


@pytest.mark.parametrize("seed", range(6))
def test_random_rules_over_random_records_answer_as_the_records_path(seed: int) -> None:
    rnd = random.Random(seed)
    records = data.records(rnd, 300)
    defined = segments(rnd)
    ctx = Context(data.TZ, data.CURRENCY, data.RATES,
                  parse_segments(defined, currency=data.CURRENCY, timezone=data.TZ))
    cols = PreviewColumns(Context(data.TZ, data.CURRENCY, data.RATES))
    shuffled = records[:]
    rnd.shuffle(shuffled)
    half = len(shuffled) // 2
    cols.apply(shuffled[:half])
    cols.rerank()
    cols.apply(shuffled[half:])  # customers first met here are appended after the ranked ones
    assert cols.ranked < cols.customers.n
    cache: dict[Any, Any] = {}
    members = 0
    for _ in range(150):
        raw = data.rule(rnd, list(defined))
        rule = parse_rule(raw, currency=data.CURRENCY, timezone=data.TZ)
        expected = slow(rule, records, ctx)
        assert fast(rule, cols, ctx, cache) == expected, raw
        members += expected[0]
    assert members > 0  # the rules are not all empty


def test_newer_versions_win_whatever_order_they_arrive_in() -> None:
    rnd = random.Random(11)
    first = data.records(rnd, 200)
    second = data.records(random.Random(12), 200)  # the same keys mostly, other values
    newer = [Record(r.org, r.version + 10_000, r.kind, r.key, r.day, r.value) for r in second]
    latest = {(r.kind, r.key): r for r in first} | {(r.kind, r.key): r for r in newer}
    cols = PreviewColumns(Context(data.TZ, data.CURRENCY, data.RATES))
    mixed = first + newer
    rnd.shuffle(mixed)
    cols.apply(mixed)
    cols.rerank()
    ctx = Context(data.TZ, data.CURRENCY, data.RATES)
    for raw in ({"orders": {"gte": 2}}, {"spent": {"gte": "50.00", "within": "90d"}},
                {"bought_product": {"product": "p3", "gte": 1}}, {"open_cart_value": {"gt": "0"}},
                {"stores": {"gte": 2}}, {"last_abandoned_cart_at": {"after": "7d"}}, {"items": {"gte": 3, "within": "30d"}}):
        rule = parse_rule(raw, currency=data.CURRENCY, timezone=data.TZ)
        assert fast(rule, cols, ctx, {}) == slow(rule, list(latest.values()), ctx), raw


def test_a_rewritten_order_counts_its_new_products_only() -> None:
    rnd = random.Random(3)
    records = [r for r in data.records(rnd, 50) if r.kind == RecordKind.ORDER and isinstance(r.value, Order)
               and r.value.paid is not None and r.value.customer is not None]
    cols = PreviewColumns(Context(data.TZ, data.CURRENCY, data.RATES))
    cols.apply(records)
    import msgspec
    rewritten = [Record(r.org, r.version + 1000, r.kind, r.key, r.day,
                        msgspec.structs.replace(r.value, items=msgspec.Raw(b'[["moved", 1, 100, ""]]')))
                 for r in records]
    for _ in range(3):  # each rewrite retires the pairs before it
        rewritten = [Record(r.org, r.version + 1, r.kind, r.key, r.day, r.value) for r in rewritten]
        cols.apply(rewritten)
    ctx = Context(data.TZ, data.CURRENCY, data.RATES)
    had = parse_rule({"bought_product": {"product": "p1", "gte": 1}}, currency=data.CURRENCY, timezone=data.TZ)
    moved = parse_rule({"bought_product": {"product": "moved", "gte": 1}}, currency=data.CURRENCY, timezone=data.TZ)
    assert preview_columns(had, cols, data.NOW, ctx, True)[0] == 0
    assert preview_columns(moved, cols, data.NOW, ctx, True) == slow(moved, rewritten, ctx)
    assert cols.live_pairs == len(rewritten)


def test_what_the_columns_do_not_hold_is_unsupported_not_guessed() -> None:
    cols = PreviewColumns(Context(data.TZ, data.CURRENCY, data.RATES))
    cols.apply(data.records(random.Random(5), 50))
    ctx = Context(data.TZ, data.CURRENCY, data.RATES)
    for raw in ({"email_engaged": {"gte": 1, "within": "30d"}}, {"attribute": {"name": "age", "gte": 20}},
                {"bought_category": {"category": "mugs", "gte": 1}}, {"refunds": {"gte": 1}}):
        rule = parse_rule(raw, currency=data.CURRENCY, timezone=data.TZ)
        with pytest.raises(Unsupported):
            preview_columns(rule, cols, data.NOW, ctx, False)


def test_an_open_cart_without_a_rate_sends_the_preview_to_the_records_path() -> None:
    rnd = random.Random(9)
    records = data.records(rnd, 30)
    person = next(r.value.customer for r in records if isinstance(r.value, Customer))
    gbp = Cart("s1", "gbp-cart", person, "open", "GBP", 1000, [], data.NOW - data.HOUR, data.NOW - data.HOUR, None, None)
    cols = PreviewColumns(Context(data.TZ, data.CURRENCY, data.RATES))
    cols.apply([*records, Record(data.ORG, 10**6, RecordKind.CART, "s1:gbp-cart", "", gbp)])
    rule = parse_rule({"open_cart_value": {"gt": "0"}}, currency=data.CURRENCY, timezone=data.TZ)
    with pytest.raises(Unsupported):
        preview_columns(rule, cols, data.NOW, Context(data.TZ, data.CURRENCY, data.RATES), False)


def test_time_criteria_at_local_midnights_and_window_edges() -> None:
    """Instants on each side of the local midnights around the DST change, and of now - d."""
    from datetime import timedelta
    from zoneinfo import ZoneInfo

    from core.clock import local_day, local_midnight
    zone, today = ZoneInfo(data.TZ), local_day(data.NOW, ZoneInfo(data.TZ))
    edges = [local_midnight(today - timedelta(days=k), zone) + d for k in range(-1, 5) for d in (-1, 0, 1)]
    edges += [data.NOW - ms + d for ms in data.DURATION_MS.values() for d in (-1, 0, 1)]
    records: list[Record[Value]] = [
        Record(data.ORG, i + 1, RecordKind.CUSTOMER, f"c{i:03d}", "",
               Customer(f"c{i:03d}", "s1", t, t - data.DAY, t, t, None, None, 0, 0, None, None, []))
        for i, t in enumerate(edges)]
    cols = PreviewColumns(Context(data.TZ, data.CURRENCY, data.RATES))
    cols.apply(records)
    cols.rerank()
    ctx = Context(data.TZ, data.CURRENCY, data.RATES)
    tests: list[dict[str, Any]] = [{"on": f"{k}d"} for k in range(4)] + [
        {"on": (today - timedelta(days=k)).isoformat()} for k in range(4)] + [
        {w: d} for w in ("before", "after") for d in (*data.DURATIONS, today.isoformat(), (today - timedelta(days=1)).isoformat())]
    for test in tests:
        for criterion in ("last_active_at", "registered_at"):
            rule = parse_rule({criterion: test}, currency=data.CURRENCY, timezone=data.TZ)
            expected = slow(rule, records, ctx)
            assert fast(rule, cols, ctx, {}) == expected, (criterion, test)
            assert 0 < expected[0] < len(records) or test.get("on") == "-1d", (criterion, test, expected)


def test_a_record_the_columns_cannot_take_sends_every_later_preview_to_the_records_path() -> None:
    from msgspec import Raw

    from ws_gateway.preview_index import HeldColumns
    held = HeldColumns(Context(data.TZ, data.CURRENCY, data.RATES))
    held.take(data.records(random.Random(2), 20))
    rule = parse_rule({"orders": {"gte": 1}}, currency=data.CURRENCY, timezone=data.TZ)
    ctx = Context(data.TZ, data.CURRENCY, data.RATES)
    assert held.preview(rule, data.NOW, ctx, True)[0] > 0
    bad = Order("s1", "bad", "c0001", "web", data.NOW, data.NOW, "EUR", 100, 0, False, Raw(b'"not lines"'))
    held.take([Record(data.ORG, 10**6, RecordKind.ORDER, "s1:bad", "", bad)])
    with pytest.raises(Unsupported):
        held.preview(rule, data.NOW, ctx, True)
    assert held.broken
    with pytest.raises(Unsupported):  # and stays so: the records it dropped are not in the columns
        held.preview(rule, data.NOW, ctx, True)
