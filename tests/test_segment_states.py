"""A customer's segment state packed for the snapshot files (flows/segment_states.py): every field
comes back equal, a restored organisation decides exactly as the one that kept running, snapshot
files written by an older storepulse (pickled customers) still restore, and the packed form is the
small one."""

from __future__ import annotations

import pickle
import random
import tempfile
from array import array
from dataclasses import fields
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import Event, Kind
from core.rules import CustomerFacts, Entry
from core.rules.facts import Period, ProductFacts, Totals
from core.rules.tree import ItemFilter
from flows import snapshots
from flows.bit_times import BitTimes
from flows.membership import Change, Input, State, _Customer
from flows.organisation import Organisation
from flows.segment_facts import CartState
from flows.segment_states import NEVER, PACKED_FIELDS, pack, unpack
from flows.snapshot_files import SnapshotFiles, _dumps
from tests.test_membership import CONFIG, DAY, T0, carts_and_orders, paid, shop_events

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


def test_what_only_a_customer_inside_the_lateness_holds_comes_back_too() -> None:
    """The state before its kept steps, the steps with their inputs, the changes a rewind may withdraw."""
    now, before = rich_state(), State(CustomerFacts(first_seen=T0 - 100 * DAY), T0 - DAY)
    x = Input(T0 + DAY, 12, "e1", paid("e1", T0 + DAY, "c1", 100), new_order=True)
    ch = Change("big30", "c1", "entered", T0 + DAY, "e1")
    c = _Customer("c1", now, before, T0 - DAY, [(x.time, x.seq, x, now.copy())], {ch.key: ch})
    assert roundtrip(c) == c


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
        assert again.customers == book.customers
        assert sorted(again.timers) == sorted((d, k) for k, c in book.customers.items() if (d := c.now.due()) is not None)
    later = events[cut:] + [Event(id="late", kind=Kind.PAGE_VIEWED, org="o", store="s", time=T0 + 40 * DAY, customer="c1")]
    assert back.apply_all(later) == org.apply_all(later)
    assert back.segments.customers == org.segments.customers


def test_snapshot_files_of_pickled_customers_from_an_older_storepulse_still_restore() -> None:
    org = Organisation.new(CONFIG.orgs["o"])
    org.apply_all([paid("a", T0, "c1", 15_000), paid("b", T0 + DAY, "c2", 1_000)])
    m = org.segments
    # what an older storepulse wrote: the customers pickled whole (one of them since packed, in a later file)
    older = pickle.loads(pickle.dumps(m.customers))
    mixed = {"c1": older["c1"], "c2": pack(m.customers["c2"], m.currency)}
    restored = m.without_tables().with_tables({m.table: mixed})
    assert restored.customers == m.customers


def test_the_packing_knows_every_field_of_what_it_packs() -> None:
    """A field added to a customer's state must be packed too, or a restore would silently drop it."""
    for cls in (_Customer, State, CustomerFacts, Entry, Totals, Period, CartState):
        assert tuple(f.name for f in fields(cls)) == PACKED_FIELDS[cls.__name__], cls.__name__
