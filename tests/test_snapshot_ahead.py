"""A snapshot costs what changed (flows/segment_states.py format 3, Membership.pack_ahead): a kept
step, a base state or a recent change is packed once and its bytes reused; the segment states a batch
changed are packed after it instead of at the epoch's end. The snapshot holds exactly the bytes a
fresh packing at the epoch's end gives, and a restore from snapshots taken after partial changes
equals the organisation that kept running and decides as it does."""

from __future__ import annotations

import pickle
import random
import tempfile
from dataclasses import replace
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flows import snapshots
from flows.membership import Membership, State, _Customer
from flows.organisation import Organisation
from flows.segment_states import Parts, _Packer, has_extra, pack, unpack
from flows.snapshot_files import SnapshotFiles
from tests.test_customer_store import settled
from tests.test_membership import CONFIG, DAY, T0, carts_and_orders, paid, shop_events, view
from tests.test_segment_states import folded

pytestmark = pytest.mark.unit


def fresh(book: Membership, key: str) -> bytes:
    """The customer packed from scratch (no parts kept), from wherever the book holds it."""
    c = book.customers.live.get(key)
    if c is None:
        c = unpack(book.customers.packed[key], key, book.currency, State, _Customer)
    return pack(c, book.currency)


def without_step_states(c: _Customer) -> _Customer:
    return replace(c, steps=[(t, seq, x, None) for t, seq, x, _ in c.steps])


@settings(max_examples=60, deadline=None)
@given(carts_and_orders, st.lists(st.integers(1, 6), min_size=1, max_size=12), st.integers(1, 4),
       st.randoms(use_true_random=False))
def test_packing_ahead_snapshots_the_bytes_of_a_fresh_packing_and_restores_to_the_live_state(
        spec: list[tuple[int, int, int, str]], sizes: list[int], epoch: int, rnd: random.Random) -> None:
    """The same batches (out of order within the lateness: rewinds, settles) to two organisations; one
    packs ahead after every batch, the other never does; both snapshot every `epoch` batches. Their
    snapshots hold the same segment states, each the bytes a packing from scratch gives; the files of
    the one packing ahead restore to its live customers, and the restored organisation decides as it."""
    events = shop_events(spec) + [view("late", T0 + 40 * DAY, "c1")]
    rnd.shuffle(events)
    ahead, plain = Organisation.new(CONFIG.orgs["o"]), Organisation.new(CONFIG.orgs["o"])
    with tempfile.TemporaryDirectory() as tmp:  # not tmp_path: one directory per drawn example
        files = SnapshotFiles(Path(tmp), "o")
        data = snapshots.save(ahead, files)
        plain.take_changes()
        i = 0
        for n, size in enumerate(sizes * 10):
            if i >= len(events):
                break
            batch, i = events[i:i + size], i + size
            assert ahead.apply_all(batch) == plain.apply_all(batch)
            ahead.pack_ahead()
            if n % epoch == epoch - 1:
                changes, theirs = ahead.take_changes(), plain.take_changes()
                for book in ("segments", "products"):
                    table = getattr(ahead, book).table
                    assert changes[table] == theirs[table]
                    for key, packed in changes[table].items():
                        assert packed is None or packed == fresh(getattr(plain, book), key), key
                    mine = getattr(ahead, book)  # parts kept only for live customers inside the lateness
                    assert mine._parts.keys() <= {k for k, c in mine.customers.live.items() if has_extra(c)}
                listed = files.save(changes, ahead.keeps, ahead.tables, ahead.held_entries)
                data = pickle.dumps((snapshots.FORMAT, ahead.without_tables(), listed))
        rest = events[i:]
        for book in (ahead.segments, ahead.products):  # the tables a compaction writes whole: packed alike
            assert book.tables()[book.table] == {k: fresh(book, k) for k in book.customers}
        back = snapshots.load(snapshots.save(ahead, files), lambda org_id: SnapshotFiles(Path(tmp), org_id))
    assert back.apply_all(rest) == ahead.apply_all(rest) == plain.apply_all(rest)
    # the same customers, compared settled at the watermark (a customer idle for an epoch is settled without
    # being written again: its files' steps decide the same) and with facts folded alike
    for book, again in ((ahead.segments, back.segments), (ahead.products, back.products)):
        settled(book)
        settled(again)
        assert folded(again) == folded(book)
    assert data  # the snapshot before the last, kept to show the loop wrote some


def test_a_customer_changed_again_after_packing_ahead_is_snapshotted_as_it_is_at_the_end() -> None:
    org = Organisation.new(CONFIG.orgs["o"])
    m = org.segments
    org.apply_all([paid("a", T0, "c1", 4_000), paid("b", T0, "c2", 4_000)])
    assert m.pack_ahead() == 2 and m.pack_ahead() == 0  # packed once: nothing changed since
    early = m._ahead["c2"]
    org.apply_all([paid("c", T0 + 1000, "c1", 9_000)])  # c1 again (now in big30), c2 not
    assert m.pack_ahead() == 0  # c1 was packed ahead this epoch: the snapshot packs it
    written = m.take_changes()[m.table]
    assert written["c2"] is early  # taken as packed ahead, not packed again
    assert written["c1"] == pack(m.customers["c1"], "EUR") != m._ahead.get("c1")
    assert unpack(written["c1"], "c1", "EUR", State, _Customer).now.facts.orders[-1].amount == 9_000
    assert m._ahead == {} and m.take_changes()[m.table] == {}


def test_a_kept_step_is_packed_once_and_its_bytes_reused_until_the_customer_drops_it() -> None:
    org = Organisation.new(CONFIG.orgs["o"])
    m = org.segments
    org.apply_all([paid("a", T0, "c1", 4_000), paid("b", T0 + 1000, "c1", 3_000)])
    parts = Parts("EUR")
    c = m.customers["c1"]
    first = pack(c, "EUR", parts)
    raws = list(parts.input_raws)
    assert len(raws) == 2 and first == pack(c, "EUR")
    org.apply_all([paid("c", T0 + 3000, "c1", 500)])  # in order: one more kept step
    again = pack(c, "EUR", parts)
    assert parts.input_raws[:2] == raws and all(a is b for a, b in zip(parts.input_raws, raws, strict=False))
    assert again == pack(c, "EUR") and len(parts.input_raws) == 3
    org.apply_all([paid("d", T0 + 2000, "c1", 4_000)])  # late, between b and c: a rewind
    assert pack(c, "EUR", parts) == pack(c, "EUR") and len(parts.input_raws) == 4
    assert parts.input_raws[0] is raws[0]  # the steps before the rewind's instant are the same objects
    org.apply_all([view("v", T0 + 10 * 60_000, "c1")])
    org.apply_all([view("w", T0 + 11 * 60_000, "c1")])  # the watermark passed the orders: settled into the base
    assert pack(c, "EUR", parts) == pack(c, "EUR")
    assert {x.cause for _, _, x, _ in c.steps} <= {"v", "w"} and c.base is not None
    assert parts.base is not None and parts.base[0] is c.base and not any(r is raws[0] for r in parts.input_raws)
    base = parts.base[1]
    assert pack(c, "EUR", parts) == pack(c, "EUR") and parts.base[1] is base  # the base packed once


def test_a_customer_packed_by_the_storepulse_before_still_restores() -> None:
    """Format 2 packed the kept steps' parts with instants indexing the customer's table."""
    org = Organisation.new(CONFIG.orgs["o"])
    org.apply_all([paid("a", T0, "c1", 4_000), paid("b", T0 + 1000, "c1", 3_000), view("v", T0 + 7 * 60_000, "c1"),
                   paid("c", T0 + 7 * 60_000 + 1, "c1", 4_000)])  # crosses big30: a recent change
    c = org.segments.customers["c1"]
    assert c.base is not None and c.steps and c.recent
    p = _Packer("EUR")
    now, base_at = p.state(c.now), p.ref(c.base_at)
    extra = [p.state(c.base), [p.input(x) for _, _, x, _ in c.steps], [p.change(ch, c.key) for ch in c.recent.values()]]
    old = msgspec.msgpack.encode([2, p.table(), now, base_at, extra])
    assert unpack(old, "c1", "EUR", State, _Customer) == without_step_states(c)
    assert unpack(pack(c, "EUR"), "c1", "EUR", State, _Customer) == without_step_states(c)
