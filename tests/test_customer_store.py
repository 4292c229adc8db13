"""Idle customers held packed (flows/customer_store.py): a book that packs the customers nothing touched
for an epoch decides exactly as one that holds every customer live, unpacks a customer when something
touches it (an event, a timer), never packs one inside the lateness, and a restore unpacks nobody."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.events import Event, Kind
from flows import snapshots
from flows.membership import Membership, State, _Customer
from flows.organisation import Organisation
from flows.segment_states import has_extra, unpack
from flows.snapshot_files import SnapshotFiles
from tests.test_membership import CONFIG, DAY, T0, carts_and_orders, paid, shop_events, view

pytestmark = pytest.mark.unit


def packed_ones(book: Membership) -> dict[str, bytes]:
    return dict(book.customers.packed)


@settings(max_examples=60, deadline=None)
@given(carts_and_orders, st.lists(st.integers(1, 6), min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_a_book_that_packs_idle_customers_decides_as_one_that_never_does(
        spec: list[tuple[int, int, int, str]], sizes: list[int], rnd: random.Random) -> None:
    """The same events in the same batches, out of order within the lateness, to two organisations: one
    takes its changes (a snapshot) after every batch, so idle customers get packed, the other never does.
    The same records batch by batch, and the same customers at the end."""
    events = shop_events(spec) + [view("late", T0 + 40 * DAY, "c1")]
    rnd.shuffle(events)
    packing, plain = Organisation.new(CONFIG.orgs["o"]), Organisation.new(CONFIG.orgs["o"])
    i, packed = 0, 0
    for n in sizes * 10:
        if i >= len(events):
            break
        batch, i = events[i:i + n], i + n
        assert packing.apply_all(batch) == plain.apply_all(batch)
        for book in (packing.segments, packing.products):
            book.take_changes()
            packed += len(book.customers.packed)
            for key, data in book.customers.packed.items():  # none inside the lateness
                assert not has_extra(unpack(data, key, book.currency, State, _Customer)), key
    rest = events[i:]
    assert packing.apply_all(rest) == plain.apply_all(rest)
    # compared settled at the watermark, as their next input settles them (a packed customer was settled
    # before it was packed)
    assert settled(packing.segments) == settled(plain.segments)
    assert settled(packing.products) == settled(plain.products)


def settled(book: Membership) -> dict[str, _Customer]:
    for c in book.customers.values():
        book._settle(c, book.watermark)
    return dict(book.customers.items())


def test_an_idle_customer_is_packed_after_an_epoch_untouched_and_unpacked_when_touched() -> None:
    org, plain = Organisation.new(CONFIG.orgs["o"]), Organisation.new(CONFIG.orgs["o"])
    m = org.segments
    for o in (org, plain):
        o.apply_all([paid("a", T0, "c1", 15_000), paid("b", T0, "c2", 1_000)])
        o.apply_all([view("v", T0 + 10_000, "c2")])  # the watermark (5 s behind) passes both orders
    m.take_changes()  # both packed for the snapshot, still live; c1 still holds its order as a kept step
    assert packed_ones(m) == {} and m._cooling.keys() == {"c1", "c2"} and m.customers.live["c1"].steps
    for o in (org, plain):
        o.apply_all([view("w", T0 + 20_000, "c2")])  # c2 touched in this epoch, c1 not
    m.take_changes()  # c1 settled (its order is behind the watermark now), then held packed
    assert set(packed_ones(m)) == {"c1"} and "c1" not in m.customers.live
    assert m.members("big30") == plain.segments.members("big30") == ["c1"]  # read from the bytes
    assert m.held()["customers"] == 2 and m.held()["packed"] == 1
    later = [paid("c", T0 + 30_000, "c1", 500)]
    assert org.apply_all(later) == plain.apply_all(later)  # touched: unpacked, decided as the other
    assert "c1" in m.customers.live and packed_ones(m) == {}
    assert m.customers["c1"].now.facts.orders[-1].amount == 500


def test_a_timer_of_a_packed_customer_fires_at_its_instant() -> None:
    """big30 (spent within 30 days) lets c1 go the instant its order is 30 days old: the customer is packed by then, the timer
    unpacks it and records the exit at that instant."""
    org = Organisation.new(CONFIG.orgs["o"])
    m = org.segments
    org.apply_all([paid("a", T0, "c1", 15_000), view("v", T0 + 10_000, "c9")])
    m.take_changes()
    org.apply_all([view("w", T0 + 20_000, "c9")])
    m.take_changes()
    assert "c1" in packed_ones(m)
    records = org.apply_all([view("x", T0 + 31 * DAY, "c9")])
    exits = [r.value for r in records if getattr(r, "kind", "") == "segment_change"
             and r.value.segment == "big30"]  # type: ignore[union-attr]
    assert [(v.customer, v.change, v.at, v.cause) for v in exits] == [("c1", "exited", T0 + 30 * DAY, "time")]  # type: ignore[union-attr]


def test_a_restore_holds_every_customer_packed_and_decides_as_the_book_that_kept_running() -> None:
    org = Organisation.new(CONFIG.orgs["o"])
    org.apply_all([paid(f"o{i}", T0 + i, f"c{i % 7}", 4_000 * (i % 5)) for i in range(40)]
                  + [Event(id="v", kind=Kind.PAGE_VIEWED, org="o", store="s", time=T0 + 60_000, customer="c1")])
    with tempfile.TemporaryDirectory() as tmp:
        back = snapshots.load(snapshots.save(org, SnapshotFiles(Path(tmp), "o")),
                              lambda org_id: SnapshotFiles(Path(tmp), org_id))
    assert back.segments.customers.live == {} and len(back.segments.customers.packed) == 7
    assert sorted(back.segments.timers) == sorted(org.segments.timers)
    later = [paid("late", T0 + 61_000, "c3", 9_000), view("far", T0 + 45 * DAY, "c2")]
    assert back.apply_all(later) == org.apply_all(later)
    assert back.segments.customers == org.segments.customers


def test_a_definition_reads_the_packed_customers_and_holds_them_packed_again() -> None:
    """Putting and deleting a segment evaluates every customer: those held packed are unpacked for it and
    packed again at once (not all live until they cool), decide as in a book that never packs, and the
    next snapshot writes their new bytes: a restore from it decides as the book that kept running."""
    from core.definitions import delete_event, put_event
    org, plain = Organisation.new(CONFIG.orgs["o"]), Organisation.new(CONFIG.orgs["o"])
    m = org.segments
    first = [paid(f"o{i}", T0 + i, f"c{i % 5}", 3_000 * (1 + i % 4)) for i in range(20)] + [view("v", T0 + 10_000, "c9")]
    for o in (org, plain):
        o.apply_all(first)
    m.take_changes()
    org.apply_all([view("w", T0 + 20_000, "c9")])
    plain.apply_all([view("w", T0 + 20_000, "c9")])
    m.take_changes()
    assert set(packed_ones(m)) == {f"c{i}" for i in range(5)}
    big = put_event("o", "segment", "big", {"name": "big", "rule": {"spent": {"gte": "200.00", "within": "30d"}}},
                    T0 + 21_000, "d1")
    records = org.apply_all([big])
    assert records == plain.apply_all([big])
    assert any(getattr(r, "kind", "") == "segment_member" and r.value.segment == "big" for r in records)  # type: ignore[union-attr]
    assert set(packed_ones(m)) == {f"c{i}" for i in range(5)}  # packed again, not left live
    assert m.members("big") == plain.segments.members("big") != []
    with tempfile.TemporaryDirectory() as tmp:
        files = SnapshotFiles(Path(tmp), "o")
        snapshots.save(org, files)
        back = snapshots.load(snapshots.save(org, files), lambda org_id: SnapshotFiles(Path(tmp), org_id))
    assert back.segments.members("big") == m.members("big")
    gone = delete_event("o", "segment", "big", T0 + 22_000, "d2")
    assert back.apply_all([gone]) == org.apply_all([gone]) == plain.apply_all([gone])
    assert set(packed_ones(m)) >= {f"c{i}" for i in range(5)}  # the deletion packed them again too
    assert set(packed_ones(back.segments)) >= set(packed_ones(m))  # (a restore holds everyone packed)
    later = [paid("late", T0 + 23_000, "c3", 25_000), view("far", T0 + 40 * DAY, "c2")]
    assert back.apply_all(later) == org.apply_all(later) == plain.apply_all(later)
    assert settled(back.segments) == settled(plain.segments)
