"""The pure parts of segment= on figures and carts (ws_gateway/segment_figures.py), of the preview
(ws_gateway/segment_preview.py) and of a segment's growth (ws_gateway/segment_views.py): records in,
figures and facts out."""

from __future__ import annotations

from zoneinfo import ZoneInfo

import orjson
import pytest
from msgspec import Raw

from core.changes import DAY, Bucket, Record
from core.figures import OPEN_END, BadPeriod, compute_figures
from core.records import Cart, Customer, CustomerMoney, Order, RecordKind
from core.rules import Context, inputs, parse_rule, parse_segments
from core.segment_records import SegmentChange
from ws_gateway.segment_figures import figures_json, member_buckets, member_carts
from ws_gateway.segment_preview import PreviewError, buyers_only, customer_facts, preview, previewable, reads_lines
from ws_gateway.segment_views import change_day, growth, growth_days, not_kept

pytestmark = pytest.mark.unit

BERLIN = ZoneInfo("Europe/Berlin")
T = 1_717_200_000_000  # 2024-06-01 02:00 in Berlin
H, D = 3_600_000, 86_400_000


def order(key: str, customer: str | None, paid: int | None, amount: int, lines: list[list[object]],
          placed: int | None = None, refunded: int = 0, currency: str = "EUR", store: str = "s") -> Record[Order]:
    o = Order(store, key, customer, "web", placed if placed is not None else paid, paid, currency, amount, refunded,
              False, Raw(orjson.dumps(lines)))
    return Record("o", 1, RecordKind.ORDER, f"{store}:{key}", "", o)


def cart(key: str, person: str | None, status: str, value: int, first: int, day: str, due: int | None = None,
         products: tuple[str, ...] = ("mug",)) -> Record[Cart]:
    c = Cart("s", key, person, status, "EUR", value, [(p, 1, value) for p in products], first, first, due, None)
    return Record("o", 1, RecordKind.CART, f"s:{key}", day, c)


def test_member_buckets_count_paid_orders_on_their_paid_day_and_placed_ones_on_their_placed_day() -> None:
    orders = [order("1", "a", T, 1000, [["mug", 2, 500, ""]]),
              order("2", "a", T + D, 700, [["pot", 1, 700, ""]], placed=T - 2 * H),  # placed on day 1, paid on day 2
              order("3", "a", None, 900, [], placed=T + 2 * D),  # placed, never paid
              order("4", "b", T, 5000, [["mug", 1, 5000, ""]]),  # not a member
              order("5", None, T, 300, [])]  # a guest
    buckets = member_buckets(orders, frozenset({"a"}), BERLIN, None)
    assert [(b.start, b.gross, b.orders, b.paid_orders, b.items) for b in buckets] == [
        ("2024-06-01", 1000, 2, 1, 2), ("2024-06-02", 700, 0, 1, 1), ("2024-06-03", 0, 1, 0, 0)]
    # one member who is everyone (no guest, no refund): the same figures as the dataflow's buckets
    alone = member_buckets(orders[:3], frozenset({"a"}), BERLIN, None)
    ledger = [Bucket("o", 1, DAY, "2024-06-01", "s", "EUR", 1000, 0, 2, 1, 2),
              Bucket("o", 1, DAY, "2024-06-02", "s", "EUR", 700, 0, 0, 1, 1),
              Bucket("o", 1, DAY, "2024-06-03", "s", "EUR", 0, 0, 1, 0, 0)]
    for first, last in (("", "\uffff"), ("2024-06-02", "2024-06-02")):
        assert compute_figures(alone, first=first, last=last, currency="EUR") == compute_figures(
            ledger, first=first, last=last, currency="EUR")


def test_segment_figures_say_refunds_cannot_be_restricted_and_give_what_the_orders_had_refunded() -> None:
    orders = [order("1", "a", T, 1000, [["mug", 1, 1000, ""]], refunded=250),
              order("2", "a", T + D, 700, [], refunded=700), order("3", "b", T, 999, [], refunded=999)]
    got = figures_json(orders, frozenset({"a"}), first="2024-06-01", last="2024-06-01", tz=BERLIN, currency="EUR",
                       rates=None, store=None)
    assert got["gross_revenue"] == {"amount": 1000, "currency": "EUR", "exponent": 2}
    assert got["refunds"] is None and got["net_revenue"] is None and set(got["not_restricted"]) == {"refunds", "net_revenue"}
    assert got["paid_orders_refunded"] == {"amount": 250, "currency": "EUR", "exponent": 2}


def test_member_carts_are_counted_as_the_carts_book_counts_them() -> None:
    carts = [cart("1", "a", "open", 500, T, "2024-06-01"), cart("2", "a", "abandoned", 800, T, "2024-06-01", T + H),
             cart("3", "a", "recovered", 300, T, "2024-06-01", T + H, ("mug", "pot")),
             cart("4", "a", "empty", 0, T, "2024-06-01"), cart("5", "a", "open", 200, T - 5 * D, "2024-05-27"),
             cart("6", "b", "open", 9999, T, "2024-06-01"), cart("7", None, "open", 9999, T, "2024-06-01")]
    got = member_carts(carts, frozenset({"a"}), "2024-06-01", "2024-06-01", None)
    [d] = [r.value for r in got.days]
    assert (d.carts, d.value, d.open, d.open_value, d.abandoned, d.abandoned_value, d.recovered, d.recovered_value,
            d.purchased) == (3, 1600, 1, 500, 2, 1100, 1, 300, 0)
    assert [(r.value.carts, r.value.value) for r in got.open_now] == [(2, 700)]  # open now, any day
    assert sorted((r.value.product, r.value.carts) for r in got.products) == [("mug", 2), ("pot", 1)]
    assert sorted(r.value.cart for r in got.listed) == ["1", "2", "3", "4"]


def profile(key: str, first: int, refunds: int = 0, currency: str = "EUR") -> Record[Customer]:
    money = [CustomerMoney("s", currency, 1, 1, 1000, refunds, first, first)]
    return Record("o", 1, RecordKind.CUSTOMER, key, "", Customer(key, "s", None, first, first, first, None, None, 1, 1,
                                                                 first, first, money))


def test_preview_facts_hold_the_orders_one_by_one_so_windows_are_exact() -> None:
    profiles = [profile("a", T - 40 * D), profile("b", T - 40 * D, refunds=600), profile("c", T - 40 * D)]
    orders = [order("1", "a", T - 10 * D, 6000, [["mug", 1, 6000, ""]]), order("2", "a", T - 35 * D, 5000, []),
              order("3", "b", T - 2 * D, 10_000, [["pot", 3, 1, ""]]),
              order("4", "c", T - 1 * D, 20_000, [["mug", 1, 1, ""]], currency="USD")]  # no rates: 0, as the dataflow
    carts = [cart("k", "c", "open", 2500, T - H, "2024-06-01")]
    facts = customer_facts(profiles, orders, carts, "EUR")
    ctx = Context("Europe/Berlin", "EUR")

    def members(data: object) -> tuple[int, list[str]]:
        return preview(parse_rule(data, currency="EUR", timezone="Europe/Berlin"), facts, T, ctx)

    assert members({"spent": {"gte": "100.00", "within": "30d"}}) == (1, ["b"])
    assert members({"spent": {"gte": "100.00"}}) == (2, ["a", "b"])
    assert members({"bought_product": {"product": "mug", "gte": 1, "within": "14d"}}) == (2, ["a", "c"])
    assert members({"items": {"gte": 3, "within": "7d"}}) == (1, ["b"])
    assert members({"net_spent": {"lte": "94.00"}}) == (2, ["b", "c"])  # 100.00 - 6.00 refunded
    assert members({"open_cart_value": {"gte": "25.00"}}) == (1, ["c"])


def test_what_the_records_do_not_keep_is_refused_naming_it() -> None:
    segments = parse_segments({"engaged": {"email_engaged": {"gte": 1}}}, currency="EUR", timezone="Europe/Berlin")
    for data, says in (({"refunds": {"gte": 1}}, "refund"), ({"net_spent": {"gte": "1", "within": "30d"}}, "in a window"),
                       ({"bought_brand": {"brand": "x", "gte": 1}}, "brands"), ({"attribute": {"name": "age", "gt": 3}}, "attribute"),
                       ({"in_segment": {"eq": "engaged"}}, "e-mail")):
        with pytest.raises(PreviewError, match=says):
            previewable(parse_rule(data, currency="EUR", timezone="Europe/Berlin"), segments)
    previewable(parse_rule({"all": [{"net_spent": {"gte": "1"}}, {"spent": {"gte": "1", "within": "9d"}}]},
                           currency="EUR", timezone="Europe/Berlin"), segments)


def test_facts_without_the_lines_or_stores_a_rule_does_not_read_answer_as_the_whole_facts() -> None:
    profiles = [profile(k, T - 40 * D) for k in "abc"]
    two = profile("d", T - 40 * D).value
    profiles.append(Record("o", 1, RecordKind.CUSTOMER, "d", "", Customer(
        "d", "t", None, two.first_seen, two.first_seen, None, None, None, 0, 0, None, None,
        [*two.money, CustomerMoney("u", "EUR", 1, 1, 1, 0, T, T)])))  # first seen at t, bought at s and u
    orders = [order(str(i), "abcd"[i % 4], T - i * D, 1000 * i, [["mug", i % 3 + 1, 1, ""]], store="s" if i % 2 else "t")
              for i in range(1, 30)]
    carts = [cart("k", "b", "open", 2500, T - H, "2024-06-01")]
    whole = customer_facts(profiles, orders, carts, "EUR")
    ctx = Context("Europe/Berlin", "EUR")
    for data in ({"spent": {"gte": "100.00", "within": "30d"}}, {"items": {"gte": 6, "within": "20d"}},
                 {"bought_product": {"product": "mug", "gte": 5}}, {"stores": {"gte": 2}}, {"store": {"eq": "t"}},
                 {"all": [{"order_value": {"gte": "150.00"}}, {"last_order_at": {"after": "9d"}}]}):
        rule = parse_rule(data, currency="EUR", timezone="Europe/Berlin")
        lean = customer_facts(profiles, orders, carts, "EUR", lines=reads_lines(rule, {}),
                              stores="stores" in inputs(rule))
        found = preview(rule, whole, T, ctx)
        assert found[0] > 0 and preview(rule, lean, T, ctx) == found, data  # someone, or it proves nothing


def test_a_rule_over_orders_that_no_customer_without_one_meets_needs_no_customer_record() -> None:
    profiles = [profile(k, T - 40 * D) for k in "abc"]  # c never ordered
    orders = [order("1", "a", T - 2 * D, 15_000, [["mug", 1, 1, ""]]), order("2", "b", T - 50 * D, 5000, [])]
    ctx = Context("Europe/Berlin", "EUR")
    for data, only in (({"spent": {"gte": "100.00", "within": "30d"}}, True), ({"orders": {"gte": 1}}, True),
                       ({"orders": {"eq": 0, "within": "30d"}}, False), ({"not": {"spent": {"gte": "1.00"}}}, False),
                       ({"registered_at": {"before": "1d"}}, False)):
        rule = parse_rule(data, currency="EUR", timezone="Europe/Berlin")
        assert buyers_only(rule, inputs(rule), T, ctx) is only, data
        if only:
            assert preview(rule, customer_facts(None, orders, (), "EUR"), T, ctx) == preview(
                rule, customer_facts(profiles, orders, (), "EUR"), T, ctx), data


def change(segment: str, customer: str, kind: str, at: int, superseded: bool = False) -> Record[SegmentChange]:
    return Record("o", 1, RecordKind.SEGMENT_CHANGE, f"{segment}|{customer}|{at}|{kind}", change_day(segment, at),
                  SegmentChange(segment, customer, kind, at, "time" if kind == "exited" else "e1", superseded))


def test_growth_counts_entries_and_exits_per_local_day_and_lists_the_newest_first() -> None:
    # Berlin days: 2024-06-01 starts at 2024-05-31T22:00Z (T is 02:00 on June 1st, local)
    midnight = T - 2 * H
    changes = [change("g", "a", "entered", midnight - 1),  # 23:59:59.999 on May 31st: not in the period
               change("g", "a", "exited", midnight),  # the first instant of June 1st
               change("g", "b", "entered", midnight + 5 * H),
               change("g", "c", "entered", midnight + 5 * H),
               change("g", "d", "entered", midnight + D + H, superseded=True),  # an out-of-order event undid it
               change("g", "b", "exited", midnight + 2 * D + 23 * H)]  # 23:00 on June 3rd
    got = growth(changes, "2024-06-01", "2024-06-04", BERLIN, latest=3)
    assert got["days"] == [{"day": "2024-06-01", "entered": 2, "exited": 1}, {"day": "2024-06-02", "entered": 0, "exited": 0},
                           {"day": "2024-06-03", "entered": 0, "exited": 1}, {"day": "2024-06-04", "entered": 0, "exited": 0}]
    assert (got["entered"], got["exited"], got["net"]) == (2, 2, 0)
    assert [(r["customer"], r["change"], r["at"]) for r in got["latest"]] == [
        ("b", "exited", "2024-06-03T21:00:00.000Z"), ("c", "entered", "2024-06-01T03:00:00.000Z"),
        ("b", "entered", "2024-06-01T03:00:00.000Z")]
    assert growth_days("2024-06-01", "2024-06-04", BERLIN) == (midnight, midnight + 4 * D)


def test_growth_needs_both_dates_and_at_most_ten_years() -> None:
    with pytest.raises(BadPeriod, match="needs from and to dates"):
        growth([], "2024-06-01", OPEN_END, BERLIN, 10)
    with pytest.raises(BadPeriod, match="needs from and to dates"):
        growth([], "", "2024-06-01", BERLIN, 10)
    with pytest.raises(BadPeriod, match="at most ten years"):
        growth([], "2014-01-01", "2024-06-01", BERLIN, 10)


def test_not_kept_names_what_a_new_rule_reads_of_the_past_that_no_segment_kept() -> None:
    def rule(r: dict[str, object]) -> object:
        return parse_rule(r, currency="EUR", timezone="Europe/Berlin")

    others = [rule({"spent": {"gte": "100.00", "within": "90d"}}),
              rule({"bought_product": {"gte": 1, "product": "mug", "within": "30d"}})]
    new = rule({"all": [{"bought_product": {"gte": 1, "product": "kettle"}}, {"spent": {"gte": "10.00", "within": "365d"}},
                        {"orders": {"gte": 1, "since": "2026-01-01"}}, {"bought_product": {"gte": 1, "product": "mug"}}]})
    assert not_kept(new, others) == [  # type: ignore[arg-type]
        "a window of 365 days over orders is longer than the 90 days the segments keep",
        "product 'kettle' is named by no other segment, so orders before now do not say it",
        "a since or until date is named by no other segment, so older orders are totalled across it"]
    assert not_kept(rule({"all": [{"bought_product": {"gte": 2, "product": "mug", "within": "7d"}},  # type: ignore[arg-type]
                                  {"spent": {"gte": "1.00", "within": "24h"}}]}), others) == []
