"""Segments kept live in the organisation's state (flows/membership.py, docs/segments.md "Membership
over time"): entries at the event that crossed, exits at the exact instant a window drops enough,
definitions through control events, redeliveries and second reports never counted twice."""

from __future__ import annotations

import pickle
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.changes import Record
from core.config import parse_config
from core.definitions import delete_event, put_event
from core.events import Event, Item, Kind
from core.segment_records import Segment, SegmentChange, SegmentClock, SegmentMember
from flows.organisation import Organisation

pytestmark = pytest.mark.unit

MIN, DAY = 60_000, 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00Z: every time below is relative to it
CONFIG = parse_config(
    '[orgs.o]\ntimezone = "UTC"\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\nallowed_lateness = "5s"\nproduct_segments = true\n'
    '[orgs.o.stores.s]\nprovider = "events"\nsecret = "k"\n'
    '[orgs.o.segments.big30]\nname = "Big in 30 days"\nrule = {spent = {gte = "100.00", within = "30d"}}\n', {})
WINDOWED = {"spent": {"gte": "100.00", "within": "2m"}}


def paid(id_: str, t: int, customer: str, amount: int, order: str | None = None, **kw: object) -> Event:
    return Event(id=id_, kind=Kind.ORDER_PAID, org="o", store="s", time=t, customer=customer, amount=amount,
                 currency="EUR", order=order or id_, items=(Item("p1", 1, amount, category="c"),), **kw)  # type: ignore[arg-type]


def view(id_: str, t: int, customer: str = "x") -> Event:
    return Event(id=id_, kind=Kind.PAGE_VIEWED, org="o", store="s", time=t, customer=customer)


def changes(out: list, segment: str | None = None) -> list[tuple[str, str, str, int, str]]:
    return [(v.segment, v.customer, v.change, v.at, v.cause) for r in out if isinstance(r, Record)
            and isinstance(v := r.value, SegmentChange) and (segment is None or v.segment == segment)]


def history(out: list, segment: str | None = None) -> list[tuple[str, str, str, int, str]]:
    """The history a reader sees: each change key's latest record, withdrawn ones left out."""
    latest: dict[str, Record] = {}
    for r in out:
        if isinstance(r, Record) and isinstance(r.value, SegmentChange):
            if r.key not in latest or r.version >= latest[r.key].version:
                latest[r.key] = r
    return sorted((v.segment, v.customer, v.change, v.at, v.cause) for r in latest.values()
                  if not (v := r.value).superseded and (segment is None or v.segment == segment))


def run(events: list[Event], batch: int = 1) -> tuple[Organisation, list]:
    org = Organisation.new(CONFIG.orgs["o"])
    out: list = []
    for i in range(0, len(events), batch):
        out += org.apply_all(events[i:i + batch])
    return org, out


def test_allowed_lateness_is_an_organisation_setting() -> None:
    org, _ = run([view("v", T0)])
    assert org.lateness == 5000 and org.watermark == T0 - 5000
    default = parse_config('[orgs.o]\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\n', {}).orgs["o"]
    assert default.allowed_lateness_ms == 5 * MIN


def test_bad_config_segment_names_the_key_and_the_json_path() -> None:
    with pytest.raises(ValueError, match=r"orgs.o.segments: .*\$.bad.spent.*gte"):
        parse_config('[orgs.o]\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\n'
                     '[orgs.o.segments.bad]\nname = "x"\nrule = {spent = {gte = "lots"}}\n', {})


def test_entry_at_the_order_that_crossed_and_exit_when_the_window_drops_it() -> None:
    org, out = run([paid("a", T0, "c1", 6000), paid("b", T0 + DAY, "c1", 5000)])
    assert changes(out, "big30") == [("big30", "c1", "entered", T0 + DAY, "b")]
    # 30 days after the first order the window holds 50.00: the exit is at that exact instant,
    # once the watermark passes it (an event of someone else moves it)
    out = org.apply_all([view("later", T0 + 31 * DAY)])
    assert ("big30", "c1", "exited", T0 + 30 * DAY, "time") in changes(out)
    members = {r.key: r.value for r in out if isinstance(r.value, SegmentMember)}
    assert members["big30|c1"].member is False
    seg = {r.key: r.value for r in out if isinstance(r.value, Segment)}
    assert seg["big30"].members == 0
    assert [r.value.as_of for r in out if isinstance(r.value, SegmentClock)] == [T0 + 31 * DAY - 5000]


def test_a_timer_due_before_the_customers_next_event_fires_first() -> None:
    _, out = run([paid("a", T0, "c1", 6000), paid("b", T0 + DAY, "c1", 5000), paid("c", T0 + 40 * DAY, "c1", 20000)])
    assert changes(out, "big30") == [("big30", "c1", "entered", T0 + DAY, "b"),
                                     ("big30", "c1", "exited", T0 + 30 * DAY, "time"),
                                     ("big30", "c1", "entered", T0 + 40 * DAY, "c")]


def test_redeliveries_and_second_reports_change_nothing() -> None:
    once = [paid("a", T0, "c1", 6000), paid("b", T0 + DAY, "c1", 5000), view("v", T0 + 2 * DAY, "c1")]
    thrice = [e for e in once for _ in range(3)]
    second_report = [*once[:2], paid("a-again", T0 + DAY + 1, "c1", 6000, order="a"), once[2]]  # another id
    assert changes(run(once)[1]) == changes(run(thrice)[1]) == changes(run(second_report)[1])


def test_a_segment_defined_after_the_data_has_its_members_at_once() -> None:
    org, _ = run([paid("a", T0, "c1", 15000), paid("b", T0, "c2", 500)])
    out = org.apply_all([put_event("o", "segment", "vip", {"name": "VIP", "rule": {"spent": {"gte": "100"}}},
                                   T0 + 400 * DAY, "1")])
    assert changes(out, "vip") == [("vip", "c1", "entered", T0 - 5000, "defined")]
    assert org.watermark == T0 - 5000  # the control event's (wall-clock) time moved nothing
    out = org.apply_all([paid("c", T0 + MIN, "c2", 9500)])
    assert changes(out, "vip") == [("vip", "c2", "entered", T0 + MIN, "c")]
    out = org.apply_all([delete_event("o", "segment", "vip", T0 + 400 * DAY, "2")])
    seg = {r.key: r.value for r in out if isinstance(r.value, Segment)}
    assert seg["vip"].deleted
    assert {r.key for r in out if isinstance(r.value, SegmentMember) and not r.value.member} == {"vip|c1", "vip|c2"}
    assert "vip" not in org.segments.live.rules


def test_a_redefinition_that_would_make_a_cycle_is_refused() -> None:
    org, _ = run([paid("a", T0, "c1", 15000)])
    org.apply_all([put_event("o", "segment", "a", {"name": "A", "rule": {"orders": {"gte": 1}}}, T0, "1")])
    org.apply_all([put_event("o", "segment", "b", {"name": "B", "rule": {"in_segment": {"eq": "a"}}}, T0, "2")])
    org.apply_all([put_event("o", "segment", "a", {"name": "A", "rule": {"in_segment": {"eq": "b"}}}, T0, "3")])
    assert org.segments.definitions["a"].rule == {"orders": {"gte": 1}}
    assert org.segments.members("b") == ["c1"]


def test_windowed_segment_lets_the_customer_go_when_the_wall_clock_moves_the_watermark() -> None:
    org, _ = run([put_event("o", "segment", "w", {"name": "W", "rule": WINDOWED}, T0, "d")])
    out = org.apply_all([paid("a", T0, "c1", 10000)], now_ms=T0)
    assert changes(out, "w") == [("w", "c1", "entered", T0, "a")]
    org.arm(T0)
    wake = org.next_wake(T0 + 1000)
    assert wake == T0 + 2 * MIN + 5000  # W reaches the window's end then
    out = org.tick(wake)
    assert changes(out, "w") == [("w", "c1", "exited", T0 + 2 * MIN, "time")]


def simulate(events: list[Event], within: int, threshold: int) -> list[tuple[str, str, str, int, str]]:
    """An independent simulation of {"spent": {"gte": threshold, "within": within}}: the rule's value
    at every instant an order enters or leaves a window, per customer; a change wherever it flips."""
    out = []
    for customer in sorted({e.customer for e in events if e.customer}):
        mine = [e for e in events if e.customer == customer and e.kind is Kind.ORDER_PAID]
        instants = sorted({(e.time, e.id) for e in mine} | {(e.time + within, "time") for e in mine})
        member = False
        for t, cause in instants:
            now = sum(e.amount for e in mine if t - within < e.time <= t) >= threshold
            if now != member:
                out.append(("big30", customer, "entered" if now else "exited", t, cause))
                member = now
    return out


orders = st.lists(st.tuples(st.integers(0, 90), st.integers(1, 3), st.integers(1, 120)), min_size=1, max_size=25)


@settings(max_examples=40, deadline=None)
@given(orders, st.integers(1, 5))
def test_history_equals_a_simulation_whatever_the_batching_and_duplicates(spec: list[tuple[int, int, int]],
                                                                          batch: int) -> None:
    events = sorted((paid(f"e{i}", T0 + d * DAY + i, f"c{c}", a * 100) for i, (d, c, a) in enumerate(spec)),
                    key=lambda e: e.time)
    events.append(view("end", T0 + 200 * DAY))
    thrice = [e for e in events for _ in range(3)]
    want = sorted(simulate(events, 30 * DAY, 10000), key=lambda c: (c[1], c[3]))
    assert sorted(changes(run(events)[1], "big30"), key=lambda c: (c[1], c[3])) == want
    assert sorted(changes(run(thrice, batch)[1], "big30"), key=lambda c: (c[1], c[3])) == want


carts_and_orders = st.lists(st.tuples(st.integers(0, 120), st.integers(1, 3), st.integers(1, 120),
                                      st.sampled_from(["order", "email", "cart", "view"])), min_size=1, max_size=30)


def shop_events(spec: list[tuple[int, int, int, str]]) -> list[Event]:
    events = []
    for i, (seconds, c, amount, what) in enumerate(spec):
        t = T0 + seconds * 1000 + i  # events seconds apart: the 5 s of lateness reorder many
        if what == "order":
            events.append(paid(f"e{i}", t, f"c{c}", amount * 100, cart=f"k{c}"))
        elif what == "email":
            events.append(Event(id=f"e{i}", kind=Kind.EMAIL_ENGAGED, org="o", store="s", time=t, customer=f"c{c}",
                                campaign="spring", name="open"))
        elif what == "cart":
            events.append(Event(id=f"e{i}", kind=Kind.CART_ITEM_ADDED, org="o", store="s", time=t, customer=f"c{c}",
                                cart=f"k{c}", currency="EUR", amount=amount * 100, items=(Item("p1", 1, amount * 100),)))
        else:
            events.append(view(f"e{i}", t, f"c{c}"))
    return sorted(events, key=lambda e: e.time)


@settings(max_examples=100, deadline=None)
@given(carts_and_orders, st.randoms(use_true_random=False))
def test_members_and_history_do_not_depend_on_duplicates_or_disorder_within_the_lateness(
        spec: list[tuple[int, int, int, str]], rnd: random.Random) -> None:
    """Each event three times, arriving up to the allowed lateness (5 s) out of order: the same members
    and the same history. Carts: the same members; the history follows the carts book's records, and
    a cart whose purchase arrives before its first activity was never open for it (docs/segments.md)."""
    events = shop_events(spec)
    end = view("end", events[-1].time + 200 * DAY)
    shuffled = sorted((e for e in events for _ in range(3)), key=lambda e: e.time + rnd.randrange(5000))
    calm, calm_out = run([*events, end])
    rough, rough_out = run([*shuffled, end], batch=4)
    for segment in calm.segments.live.order:
        assert rough.segments.members(segment) == calm.segments.members(segment), segment
    carted = {f"c{c}" for _, c, _, what in spec if what == "cart"}
    assert [h for h in history(rough_out) if h[1] not in carted] == [h for h in history(calm_out) if h[1] not in carted]


def test_an_event_out_of_order_rewrites_the_history_after_it() -> None:
    one = {"name": "Once", "rule": {"orders": {"eq": 1}}}
    first, second = paid("A", T0 + 1000, "c1", 100), paid("B", T0 + 2000, "c1", 100)
    _, calm = run([put_event("o", "segment", "once", one, 0, "d"), first, second])
    _, rough = run([put_event("o", "segment", "once", one, 0, "d"), second, first])
    assert history(calm, "once") == history(rough, "once") == [("once", "c1", "entered", T0 + 1000, "A"),
                                                               ("once", "c1", "exited", T0 + 2000, "B")]
    withdrawn = [v for r in rough if isinstance(r, Record) and isinstance(v := r.value, SegmentChange) and v.superseded]
    assert [(v.segment, v.change, v.at, v.cause) for v in withdrawn if v.segment == "once"] == [
        ("once", "entered", T0 + 2000, "B")]


def test_product_segments_follow_sales_and_abandoned_carts() -> None:
    def sale(id_: str, t: int, qty: int, product: str = "p1") -> Event:
        return Event(id=id_, kind=Kind.ORDER_PAID, org="o", store="s", time=t, customer="c1", amount=qty * 100,
                     currency="EUR", order=id_, items=(Item(product, qty, 100, category="mugs"),))

    add = Event(id="add", kind=Kind.CART_ITEM_ADDED, org="o", store="s", time=T0, customer="c2", cart="k",
                currency="EUR", amount=500, items=(Item("p2", 1, 500),))
    org, out = run([sale("a", T0, 30), add, sale("b", T0 + DAY, 25), sale("b", T0 + DAY, 25), view("later", T0 + 40 * DAY)])
    assert changes(out, "best_sellers") == [("best_sellers", "p1", "entered", T0 + DAY, "b"),  # 55 units in 30 days
                                            ("best_sellers", "p1", "exited", T0 + 30 * DAY, "time")]  # 25 left
    assert ("slow_movers", "p1", "entered", T0 + 31 * DAY, "time") in changes(out)  # no sale in the 30 days since
    due = T0 + 60 * MIN  # the cart of p2 is abandoned an hour after its last activity
    assert ("abandoned_not_sold", "p2", "entered", due, "time") in changes(out)
    seg = {r.key: r.value for r in out if isinstance(r, Record) and isinstance(r.value, Segment)}
    assert seg["best_sellers"].subject == "product" and seg["big30"].subject == "customer"
    assert org.products.members("slow_movers") == ["p1", "p2"]


def test_a_state_kept_small_between_inputs_and_one_from_an_older_snapshot_is_repacked() -> None:
    org, _ = run([paid("a", T0, "c1", 15_000), paid("b", T0 + DAY, "c1", 1_000), view("v", T0 + 40 * DAY, "c2")])
    m = org.segments
    c = m.customers["c1"]
    # between inputs, nothing repeats `now`: no base copy, no kept step, no change a rewind could withdraw
    assert (c.base, c.steps, c.recent) == (None, [], {})
    assert m.bits["big30"] not in c.now.entered and len(c.now.entered) > 0
    nexts, entered = dict(c.now.nexts.items()), dict(c.now.entered.items())
    # a state pickles its timers and entry instants packed, and comes back equal
    again = pickle.loads(pickle.dumps(c.now))
    assert (dict(again.nexts.items()), dict(again.entered.items()), again.facts) == (nexts, entered, c.now.facts)
    # a snapshot from before states were packed held dicts keyed by segment id: restored, they are packed
    by_bit = {b: g for g, b in m.bits.items()}
    c.now.nexts = {by_bit[b]: at for b, at in nexts.items()}  # type: ignore[assignment]
    c.now.entered = {by_bit[b]: at for b, at in entered.items()}  # type: ignore[assignment]
    restored = m.without_tables().with_tables({m.table: m.customers})
    now = restored.customers["c1"].now
    assert (dict(now.nexts.items()), dict(now.entered.items())) == (nexts, entered)
