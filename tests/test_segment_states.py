"""A customer's segment state packed for the snapshot files (flows/segment_states.py): every field
comes back equal, a restored organisation decides exactly as the one that kept running, snapshot
files written by an older storepulse (pickled customers) still restore, and the packed form is the
small one."""

from __future__ import annotations

import pickle
import random
import tempfile
from array import array
from dataclasses import fields, replace
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from core.definitions import delete_event, put_event
from core.events import Event, Kind
from core.rules import CustomerFacts, Entry, fold
from core.rules.facts import Period, ProductFacts, Totals
from core.rules.tree import ItemFilter
from core.segment_records import SegmentChange
from flows import membership, snapshots
from flows.bit_times import BitTimes
from flows.membership import Change, Input, Membership, State, _Customer
from flows.organisation import Organisation
from flows.segment_facts import CartState
from flows.segment_states import NEVER, PACKED_FIELDS, idle, pack, unpack
from flows.snapshot_files import SnapshotFiles, _dumps
from tests.test_membership import CONFIG, DAY, MIN, T0, carts_and_orders, paid, shop_events, view

pytestmark = pytest.mark.unit


def roundtrip(c: _Customer, currency: str = "EUR") -> _Customer:
    return unpack(pack(c, currency), c.key, currency, State, _Customer)


def rich_facts() -> CustomerFacts:
    order = Entry(T0 + 1, "EUR", 12_345, 3, ("p1", "p2"), ("shoes",), ("acme",))
    foreign = Entry(T0 - 7 * DAY + 999, "JPY", 5_000, 1)  # another currency, an instant before first_seen, ms
    totals = Totals(4, 9, 40_000, T0 - 90 * DAY, T0 - 40 * DAY, 20_000, 1_000,
                    ((ItemFilter("products", "p1"), 2), (ItemFilter("brands", "acme"), 1)))
    return CustomerFacts(
        first_seen=T0 - 100 * DAY, registered=T0 - 100 * DAY - 123, last_active=T0 + DAY,
        stores=("s", "t"), attributes=(("big", 2**70), ("flag", False), ("n", 7), ("plan", "gold"),
                                       ("score", Decimal("0.1"))),
        orders=(foreign, order), refunds=(Entry(T0 + 2, "EUR", 500),), emails=(T0 - DAY, T0 - 1),
        open_carts=(Entry(T0 + 3, "EUR", 999),), last_cart_created=T0 + 3, last_cart_abandoned=T0 - 3 * DAY,
        history=(Period(None, T0 - 30 * DAY, (totals, Totals(), Totals(1))),
                 Period(T0 - 30 * DAY, None, (Totals(), Totals(), Totals())),))


def rich_state() -> State:
    return State(rich_facts(), T0 + DAY, (1 << 99) | 0b101, BitTimes.of([(0, T0 + 30 * DAY), (2, T0 + 31 * DAY)]),
                 BitTimes.of([(0, T0), (2, T0), (99, T0 + DAY)]),
                 {"s:k1": CartState("open", T0, T0 + 3, None, 999, "EUR"),
                  "s:k2": CartState("abandoned", T0 - 4 * DAY, T0 - 4 * DAY, T0 - 3 * DAY, 10, "USD")},
                 {"s:k1": 7, "s:k2": 3, "s:gone": 5}, T0 - 50 * DAY, T0 - 60 * DAY, T0 - 100 * DAY)


def test_every_field_of_a_customer_comes_back_equal() -> None:
    c = _Customer("c1", rich_state())
    back = roundtrip(c)
    assert back == c
    assert back.now.facts.attributes[-1] == ("score", Decimal("0.1")) and back.now.facts.attributes[0][1] == 2**70
    assert all(type(x) is tuple for x in (back.now.facts.orders, back.now.facts.orders[1].products,
                                          back.now.facts.history[0].totals[0].bought))
    # a fresh customer (no evaluation yet) and one with nothing but its first instant
    fresh = _Customer("c2", State(CustomerFacts(first_seen=T0)))
    assert fresh.now.at == NEVER and roundtrip(fresh) == fresh


def without_step_states(c: _Customer) -> _Customer:
    """The customer as a snapshot keeps it: its kept steps' inputs, not the state after each."""
    return replace(c, steps=[(t, seq, x, None) for t, seq, x, _ in c.steps])


def test_what_only_a_customer_inside_the_lateness_holds_comes_back_too() -> None:
    """The state before its kept steps (whole), the steps' inputs (not the state after each), the changes a
    rewind may withdraw: an event's input, a cart's, one of another customer's change."""
    now, before = rich_state(), State(CustomerFacts(first_seen=T0 - 100 * DAY), T0 - DAY)
    x = Input(T0 + DAY, 12, "e1", paid("e1", T0 + DAY, "c1", 100), new_order=True)
    refund = Input(T0 + DAY + 5, 13, "r1", paid("r1", T0 + DAY + 5, "c1", 100), new_refund=True)
    cart = Input(T0 + DAY + 7, 14, "e2", cart_key="s:k1", cart=CartState("open", T0, T0 + 3, None, 999, "EUR"))
    ch = Change("big30", "c1", "entered", T0 + DAY, "e1")
    theirs = Change("big30", "c9", "exited", T0 + DAY + 1, "time")
    c = _Customer("c1", now, before, T0 - DAY, [(s.time, s.seq, s, now.copy()) for s in (x, refund, cart)],
                  {ch.key: ch, theirs.key: theirs})
    back = roundtrip(c)
    assert back == without_step_states(c) and all(st is None for *_, st in back.steps)
    assert back.steps[0][2].event == x.event and type(back.steps[0][2].event.items) is tuple


def test_hundreds_of_distinct_instants_and_every_spacing_of_them() -> None:
    """More than 255 instants (indexes no longer fit a byte), ms and whole seconds, back and forth."""
    rnd = random.Random(7)
    times = [T0 + rnd.choice([-1, 1]) * rnd.randrange(0, 400 * DAY) for _ in range(300)] + [1, 2**62, T0]
    nexts = BitTimes(0, array("q"))
    for bit, t in enumerate(times[:100]):
        nexts[bit] = t
    facts = CustomerFacts(first_seen=T0, emails=tuple(sorted(times)))
    c = _Customer("c", State(facts, T0, (1 << 100) - 1, nexts, nexts.copy()))
    assert roundtrip(c) == c


def test_a_products_facts_come_back_equal() -> None:
    facts = ProductFacts("shoes", "acme", (("colour", "red"),), (Entry(T0, "EUR", 100, 2),), (T0 + 5,))
    c = _Customer("p1", State(facts, T0, 1, BitTimes.of([(0, T0 + DAY)]), BitTimes.of([(0, T0)])))
    assert roundtrip(c) == c


def test_a_customer_packs_to_a_fraction_of_its_pickle() -> None:
    c = _Customer("c1", rich_state())
    assert len(pack(c, "EUR")) * 2 < len(_dumps({"t": c}))


@settings(max_examples=60, deadline=None)
@given(carts_and_orders, st.integers(0, 29), st.randoms(use_true_random=False))
def test_a_restored_organisation_decides_as_the_one_that_kept_running(
        spec: list[tuple[int, int, int, str]], cut: int, rnd: random.Random) -> None:
    """Snapshot files written mid-stream (some customers inside the lateness with kept steps), read back
    into a new organisation: the same customers, and the same records for the rest of the stream."""
    events = shop_events(spec)
    rnd.shuffle(events)  # out of order within the stream: inputs rewind kept steps
    cut = min(cut, len(events))
    org = Organisation.new(CONFIG.orgs["o"])
    org.apply_all(events[:cut])
    with tempfile.TemporaryDirectory() as tmp:  # not tmp_path: one directory per drawn example
        data = snapshots.save(org, SnapshotFiles(Path(tmp), "o"))
        back = snapshots.load(data, lambda org_id: SnapshotFiles(Path(tmp), org_id))
    for book, again in ((org.segments, back.segments), (org.products, back.products)):
        assert again.customers == {k: without_step_states(c) for k, c in book.customers.items()}
        assert sorted(again.timers) == sorted((d, k) for k, c in book.customers.items() if (d := c.now.due()) is not None)
    later = events[cut:] + [Event(id="late", kind=Kind.PAGE_VIEWED, org="o", store="s", time=T0 + 40 * DAY, customer="c1")]
    assert back.apply_all(later) == org.apply_all(later)
    # the states a rewind or a settle made again from the inputs decide as the kept ones did (the records
    # above), and are the same but for facts folded further (the watermark moved since they were first made)
    assert folded(back.segments) == folded(org.segments)


def folded(book: Membership) -> dict[str, _Customer]:
    """The customers as a snapshot keeps them, every state's facts folded at the watermark now."""
    assert book.watermark is not None
    w = book.watermark

    def fold_state(st: State | None) -> State | None:
        return st if st is None else replace(st, facts=fold(st.facts, book.live.keep, min(w, st.at), book.live.ctx))
    return {k: replace(without_step_states(c), now=fold_state(c.now), base=fold_state(c.base))
            for k, c in book.customers.items()}


def test_snapshot_files_of_pickled_customers_from_an_older_storepulse_still_restore() -> None:
    org = Organisation.new(CONFIG.orgs["o"])
    org.apply_all([paid("a", T0, "c1", 15_000), paid("b", T0 + DAY, "c2", 1_000)])
    m = org.segments
    # what an older storepulse wrote: the customers pickled whole (one of them since packed, in a later file)
    older = pickle.loads(pickle.dumps(m.customers))
    mixed = {"c1": older["c1"], "c2": pack(m.customers["c2"], m.currency)}
    restored = m.without_tables().with_tables({m.table: mixed})
    assert restored.customers == {"c1": m.customers["c1"], "c2": without_step_states(m.customers["c2"])}


def test_a_customer_packed_with_its_steps_states_by_the_storepulse_before_still_restores() -> None:
    """Format 1 pickled the state before the kept steps, the steps with their states and the recent
    changes whole."""
    org = Organisation.new(CONFIG.orgs["o"])
    org.apply_all([paid("a", T0, "c1", 15_000), paid("b", T0 + 1000, "c1", 1_000)])
    c = org.segments.customers["c1"]
    assert len(c.steps) == 2
    _, table, now, base_at, _ = msgspec.msgpack.decode(pack(c, "EUR"))
    extra = pickle.dumps((c.base, c.steps, c.recent))
    assert roundtrip_bytes(msgspec.msgpack.encode([1, table, now, base_at, extra]), c.key) == c


def roundtrip_bytes(data: bytes, key: str) -> _Customer:
    return unpack(data, key, "EUR", State, _Customer)


def test_a_rewind_after_a_restore_makes_the_steps_states_again_and_decides_as_before() -> None:
    """A customer restored inside the lateness with three kept steps (their states not in the snapshot);
    an order arrives late, between the second and the third: the restored organisation takes the first
    two inputs again to have the state before it, and records exactly what the one that kept running does."""
    org = Organisation.new(CONFIG.orgs["o"])
    org.apply_all([paid("a", T0, "c1", 4_000), paid("b", T0 + 1000, "c1", 3_000), paid("c", T0 + 3000, "c1", 500)])
    assert len(org.segments.customers["c1"].steps) == 3
    with tempfile.TemporaryDirectory() as tmp:
        back = snapshots.load(snapshots.save(org, SnapshotFiles(Path(tmp), "o")),
                              lambda org_id: SnapshotFiles(Path(tmp), org_id))
    restored = back.segments.customers["c1"]
    assert [st for *_, st in restored.steps] == [None, None, None]
    late = [paid("d", T0 + 2000, "c1", 4_000)]  # 40.00 + 30.00 + 40.00 crosses big30's 100.00 here, not at "c"
    records = org.apply_all(late)
    assert back.apply_all(late) == records
    entered = [v for r in records if isinstance(v := getattr(r, "value", None), SegmentChange)
               and v.segment == "big30" and v.change == "entered"]
    assert [(v.customer, v.at, v.cause) for v in entered] == [("c1", T0 + 2000, "d")]
    assert [st is None for *_, st in restored.steps] == [False] * 4  # made again, then the late one taken
    kept = org.segments.customers["c1"]
    assert [(t, st.mask, st.nexts, st.entered) for t, _, _, st in restored.steps] == [  # type: ignore[union-attr]
        (t, st.mask, st.nexts, st.entered) for t, _, _, st in kept.steps]  # type: ignore[union-attr]


def test_the_packing_knows_every_field_of_what_it_packs() -> None:
    """A field added to a customer's state must be packed too, or a restore would silently drop it."""
    for cls in (_Customer, State, CustomerFacts, Entry, Totals, Period, CartState):
        assert tuple(f.name for f in fields(cls)) == PACKED_FIELDS[cls.__name__], cls.__name__


def test_an_idle_customer_read_for_a_definition_comes_back_as_unpacked_and_decided_later() -> None:
    """flows/segment_states.py `Idle`: the facts and masks of a customer without kept steps, read without
    unpacking it whole; its bytes decided up to a later instant unpack to the same customer with that
    instant as `now.at` and `base_at`, whether the instant is new to its table or already in it, after or
    before its other instants, with more instants than a byte indexes."""
    customers = [_Customer("c1", rich_state()), _Customer("c2", State(CustomerFacts(first_seen=T0))),
                 _Customer("c3", State(CustomerFacts(first_seen=T0, emails=tuple(T0 + i * 1001 for i in range(300))),
                                       T0 + DAY, 0b10, BitTimes.of([(1, T0 + 5 * DAY)])))]
    for c in customers:
        c.base_at = c.now.at
        data = pack(c, "EUR")
        held = idle(data, "EUR")
        assert held is not None
        assert (held.facts, held.at, held.mask, held.timers) == (c.now.facts, c.now.at, c.now.mask, c.now.nexts.mask)
        assert held.whole(c.key, State, _Customer) == unpack(data, c.key, "EUR", State, _Customer) == c
        for t in (T0 + 400 * DAY, T0 + DAY, T0 - 500 * DAY + 1, T0 + 7):  # new, known (c1, c3), before all, ms
            later = replace(c, now=replace(c.now, at=t), base_at=t)
            assert unpack(held.decided_at(t), c.key, "EUR", State, _Customer) == later
    # what only a customer inside the lateness holds: not read this way
    with_steps = _Customer("c4", rich_state(), recent={"k": Change("big30", "c4", "entered", T0, "e1")})
    assert idle(pack(with_steps, "EUR"), "EUR") is None


DEFINED = {"nobody": {"spent": {"gte": "100000.00", "within": "30d"}},  # no member, no timer: read, not unpacked
           "buyers": {"orders": {"gte": 1}},  # members
           "recent": {"spent": {"gte": "1.00", "within": "1m"}},  # members with timers
           "never": {"orders": {"eq": 0}},  # the customers without an order
           "big30": {"spent": {"gte": "50.00", "within": "30d"}},  # redefined: timers and members it had
           "big30 ": {"spent": {"gte": "100.00"}},  # (as big30) redefined without its window: its timers go
           "over": {"in_segment": {"eq": "big30"}},
           "-big30": None}  # big30 deleted: its members leave, the others' bytes stand


@settings(max_examples=60, deadline=None)
@given(carts_and_orders, st.sampled_from(sorted(DEFINED)), st.integers(0, 600))
@example([(10, 1, 120, "order"), (20, 2, 30, "order"), (30, 3, 5, "email")], "big30 ", 0)  # c1 keeps, timer goes
@example([(10, 1, 120, "order"), (20, 2, 30, "order"), (30, 3, 5, "email")], "nobody", 0)
@example([(10, 1, 120, "order"), (20, 2, 30, "order"), (30, 3, 5, "email")], "-big30", 0)
def test_a_definition_over_customers_held_packed_decides_as_over_them_unpacked(
        spec: list[tuple[int, int, int, str]], segment: str, later_s: int) -> None:
    """Membership.define reads a customer held packed as an Idle and, when the definition leaves its
    membership and timers as they were, writes its bytes decided up to the watermark without unpacking it
    (flows/membership.py `_defined_idle`); a deleted segment leaves the bytes of those it never held as
    they are (`_forget`). Against the whole way for every customer: the same records, customers and
    timers, and the same records for what comes after."""
    events = shop_events(spec) + [view("past-everyone", T0 + 10 * MIN, "x")]  # every kept step behind W
    after = [paid("p1", T0 + 10 * MIN + later_s * 1000, "c1", 2000), view("v1", T0 + 20 * MIN + later_s * 1000, "c2")]
    seen = []
    for whole_way in (False, True):
        org = Organisation.new(CONFIG.orgs["o"])
        org.apply_all(events)
        org.segments.take_changes()
        org.segments.take_changes()  # untouched for an epoch: held packed
        packed = len(org.segments.customers.packed)
        if whole_way:  # no customer read as an Idle: each unpacked, as before
            membership.idle = lambda data, currency: None  # type: ignore[assignment]
        try:
            rule = DEFINED[segment]
            out = org.apply_all([delete_event("o", "segment", segment[1:], T0 + 400 * DAY, "d1") if rule is None else
                                 put_event("o", "segment", segment.strip(), {"name": segment, "rule": rule},
                                           T0 + 400 * DAY, "d1")])
        finally:
            membership.idle = idle
        seen.append((packed, out, sorted(org.segments.timers), org.apply_all(after), org.segments))
    (packed, out, timers, later, book), (packed_w, out_w, timers_w, later_w, book_w) = seen
    assert packed == packed_w and packed > 0
    assert out == out_w and timers == timers_w and later == later_w
    assert book.customers == book_w.customers and book.counts == book_w.counts
