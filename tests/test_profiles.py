"""Customer profiles (flows/profiles.py) and the customers list served from them (ws_gateway).

Every rule has a unit test; property tests prove that redeliveries, disorder within the window and
a snapshot taken anywhere leave the same final records, and that the documented SQL
(docs/metrics.md, run verbatim in DuckDB) equals the book on generated shops. One test goes through
`storepulse up`: signed Stripe webhooks and the events API in, `GET /customers` out, exact numbers.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import json
import pickle
import random
import re
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.changes import Record
from core.events import Event, Item, Kind
from core.records import Customer, CustomerMoney
from flows.book import Version
from flows.profiles import EMAIL_CHARS, NAME_CHARS, FingerprintMap, ProfileBook, fingerprint
from flows.shoppers import Shoppers
from tests.helpers import (
    ORGS_TOML,
    REPO,
    RedisServer,
    Storepulse,
    charge_refunded,
    latest_values,
    post_list_orders,
    wait_json,
)
from tests.helpers import event as ev

TZ = "Europe/Berlin"
MIN = 60_000
H = 60 * MIN
DAY = 24 * H
KEEP = 7 * DAY
T0 = int(dt.datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo(TZ)).timestamp() * 1000)


def paid(t: int, order: str, amount: int = 1000, customer: str | None = "c1", qty: int = 1, **kw: Any) -> Event:
    return ev(Kind.ORDER_PAID, t, order=order, amount=amount, customer=customer,
              items=(Item("p", qty, amount // qty),), **kw)


def refund(t: int, order: str | None, total: int, name: str = "r1", **kw: Any) -> Event:
    return ev(Kind.ORDER_REFUNDED, t, order=order, refund=name, amount=total, **kw)


def final(records: list[Record]) -> dict[str, Customer]:
    """The value each customer ends with: the record of the highest version."""
    assert all(r.kind == "customer" for r in records)
    return {key: value for (_, key), value in latest_values(records).items()}


def feed(events: list[Event], lateness: int = 5 * MIN, book: ProfileBook | None = None) -> tuple[dict[str, Customer], ProfileBook]:
    """Feeds events in the given order, the watermark following max time seen - lateness; then all final."""
    b = book or ProfileBook("o", TZ)
    out: list[Record] = []
    seen = None
    for e in events:
        out += b.apply(e)
        seen = e.time if seen is None else max(seen, e.time)
        assert b.advance(seen - lateness) == []
    assert b.advance(max(e.time for e in events) + KEEP + DAY) == []
    return final(out), b


def money(v: Customer | None) -> list[tuple[Any, ...]]:
    assert v is not None
    return [(m.store, m.currency, m.orders, m.items, m.gross, m.refunds) for m in v.money]


# --- who the customer is ------------------------------------------------------------------------

def test_registration_is_the_earliest_created_vendor_created_or_identified_time_else_first_seen() -> None:
    b = ProfileBook("o", TZ)
    b.apply(ev(Kind.PAGE_VIEWED, T0, customer="c1"))
    assert b.profile("c1").registered is None and b.profile("c1").registered_at == T0  # first seen
    b.apply(ev(Kind.CUSTOMER_UPDATED, T0 + 5 * H, customer="c1"))  # an update's own time registers nothing
    assert b.profile("c1").registered is None
    b.apply(ev(Kind.IDENTIFIED, T0 + 2 * H, customer="c1", visitor="v"))
    assert b.profile("c1").registered_at == T0 + 2 * H
    b.apply(ev(Kind.CUSTOMER_CREATED, T0 + H, customer="c1"))
    assert b.profile("c1").registered_at == T0 + H
    # the vendor's creation time (Shopify/Woo `created_at` in ms, Stripe `created` in s), on an update too
    b.apply(ev(Kind.CUSTOMER_UPDATED, T0 + 9 * H, customer="c1", attrs={"created": (T0 - DAY) // 1000}))
    assert b.profile("c1").registered_at == T0 - DAY
    b.apply(ev(Kind.CUSTOMER_UPDATED, T0 + 9 * H, customer="c1", attrs={"created_at": T0 - 2 * DAY, "created": True}))
    v = b.profile("c1")
    assert (v.registered, v.first_seen, v.last_active) == (T0 - 2 * DAY, T0, T0 + 2 * H)


def test_email_and_name_come_from_the_latest_event_carrying_each_and_are_bounded() -> None:
    b = ProfileBook("o", TZ)
    b.apply(ev(Kind.CUSTOMER_CREATED, T0, customer="c1", attrs={"email": "a@x.io", "first_name": "Ann", "last_name": "Lee"}))
    b.apply(ev(Kind.CUSTOMER_UPDATED, T0 + 2 * H, customer="c1", attrs={"name": "Ann Lee-Smith"}))
    b.apply(ev(Kind.CUSTOMER_UPDATED, T0 + H, customer="c1", attrs={"email": "ann@x.io", "name": "older"}))
    assert (b.profile("c1").email, b.profile("c1").name) == ("ann@x.io", "Ann Lee-Smith")
    b.apply(ev(Kind.IDENTIFIED, T0 + H, customer="c1", visitor="v", attrs={"email": "zz@x.io"}))  # a tie: the greater
    assert b.profile("c1").email == "zz@x.io"
    b.apply(ev(Kind.PAGE_VIEWED, T0 + 9 * H, customer="c1", attrs={"email": "not@contact.io", "name": "x"}))
    assert b.profile("c1").email == "zz@x.io"  # only customer and identify events carry contact data
    b.apply(paid(T0 + 9 * H, "o1", attrs={"email": "billing@x.io", "customer_name": "Billing Name"}))
    assert (b.profile("c1").email, b.profile("c1").name) == ("zz@x.io", "Ann Lee-Smith")  # the account's win
    long = ev(Kind.CUSTOMER_UPDATED, T0 + 3 * H, customer="c1", attrs={"email": " " + "é" * 400, "name": "ñ" * 500})
    b.apply(long)
    v = b.profile("c1")
    assert (v.email, v.name) == ("é" * EMAIL_CHARS, "ñ" * NAME_CHARS)


def test_a_guest_has_the_details_typed_at_the_checkout_until_an_account_gives_its_own() -> None:
    b = ProfileBook("o", TZ)
    b.apply(ev(Kind.CHECKOUT_STARTED, T0, customer="g@x.io", cart="k1", attrs={"email": "g@x.io"}))
    b.apply(ev(Kind.PAGE_VIEWED, T0 + H, customer="g@x.io", attrs={"email": "page@x.io", "customer_name": "Page"}))
    assert (b.profile("g@x.io").email, b.profile("g@x.io").name) == ("g@x.io", None)
    b.apply(paid(T0 + 3 * H, "o1", customer="g@x.io", attrs={"email": "G@x.io", "customer_name": " Gil Guest ",
                                                             "name": "#1001"}))
    b.apply(paid(T0 + 2 * H, "o2", customer="g@x.io", attrs={"email": "older@x.io", "customer_name": "Older"}))
    assert (b.profile("g@x.io").email, b.profile("g@x.io").name) == ("G@x.io", "Gil Guest")  # the latest order's
    b.apply(ev(Kind.CUSTOMER_CREATED, T0 - DAY, customer="g@x.io", attrs={"first_name": "Gilda"}))
    assert (b.profile("g@x.io").email, b.profile("g@x.io").name) == ("G@x.io", "Gilda")  # an account's, even older
    b.apply(ev(Kind.CHECKOUT_EXPIRED, T0 + DAY, customer="g@x.io", cart="k2", attrs={"customer_name": "Later"}))
    assert b.profile("g@x.io").name == "Gilda"


def test_last_activity_is_the_customers_doing_not_the_shops() -> None:
    b = ProfileBook("o", TZ)
    b.apply(ev(Kind.EMAIL_ENGAGED, T0, customer="c1", campaign="x", name="open"))
    for kind in (Kind.CUSTOMER_UPDATED, Kind.ORDER_REFUNDED, Kind.ORDER_CANCELLED):
        b.apply(ev(kind, T0 + DAY, customer="c1", order="o9"))
    assert b.profile("c1").last_active == T0
    b.apply(ev(Kind.PAGE_VIEWED, T0 - H, customer="c1", store="s0"))
    v = b.profile("c1")
    assert (v.last_active, v.first_seen, v.store) == (T0, T0 - H, "s0")
    assert b.apply(ev(Kind.PAGE_VIEWED, T0 - H, customer="c1", store="s0")) == []  # nothing changed: no record
    [r] = b.apply(ev(Kind.PAGE_VIEWED, T0 - H, customer="c1", store="s"))  # a tie: the smaller store id
    assert r.value.store == "s"


def test_visitors_and_events_without_a_customer_make_no_profile() -> None:
    b = ProfileBook("o", TZ)
    assert b.apply(ev(Kind.PAGE_VIEWED, T0, visitor="v1")) == []
    assert b.apply(paid(T0, "o1", customer=None)) == []  # a guest order is on no profile
    assert b.held()["customers"] == 0


# --- orders and refunds -------------------------------------------------------------------------

def test_an_order_counts_once_as_its_earliest_report_says_whatever_the_order_of_arrival() -> None:
    reports = [paid(T0 + 10 * MIN, "o1", 1200, qty=3, id="late"), paid(T0, "o1", 1000, qty=2, id="early"),
               paid(T0, "o1", 999, qty=1, id="early-b")]  # same time: the smaller id is earlier
    for perm in itertools.permutations(reports):
        got, _ = feed(list(perm) * 2)
        v = got["c1"]
        assert (v.orders, v.items, v.first_paid, v.last_paid, money(v)) == (
            1, 2, T0, T0, [("s", "EUR", 1, 2, 1000, 0)])


def test_an_order_belongs_to_the_customer_of_its_earliest_report_naming_one() -> None:
    events = [paid(T0, "o1", customer=None, id="a"), paid(T0 + MIN, "o1", customer="c2", id="b"),
              paid(T0 + 2 * MIN, "o1", customer="c1", id="c")]
    for perm in itertools.permutations(events):
        got, _ = feed(list(perm))
        assert (got["c2"].orders, got["c1"].orders) == (1, 0)


def test_refunds_count_their_largest_total_on_the_customer_of_their_order() -> None:
    events = [paid(T0, "o1", 5000), refund(T0 + H, "o1", 500, "ch1"), refund(T0 + 2 * H, "o1", 1500, "ch1"),
              refund(T0 + 3 * H, "o1", 200, "ch2"),
              refund(T0 + H, None, 300, "credit-note", customer="c1"),  # no order: on the customer it names
              refund(T0 + H, None, 700, "anon")]  # no order, no customer: on nobody
    for perm in itertools.permutations(events):
        got, b = feed(list(perm) * 2)
        assert money(got["c1"]) == [("s", "EUR", 1, 1, 5000, 1500 + 200 + 300)]
        assert b.held()["pending_refunds"] == 0 and b.unmatched_refunds == 0


def test_a_refund_naming_only_its_order_finds_the_customer_weeks_later() -> None:
    """Shopify refunds name the order, never the customer, and come long after the window."""
    b = ProfileBook("o", TZ)
    feed([paid(T0, "o1", 5000), ev(Kind.PAGE_VIEWED, T0 + 60 * DAY, customer="c9")], book=b)
    assert b.held()["open_orders"] == 0 and b.held()["final_orders"] == 1
    [r] = b.apply(refund(T0 + 60 * DAY, "o1", 900, "re1"))
    assert money(r.value) == [("s", "EUR", 1, 1, 5000, 900)]
    assert b.apply(refund(T0 + 61 * DAY, "o1", 900, "re1")) == []  # a redelivery: no increase


def test_a_refund_that_arrives_before_its_order_waits_for_it_then_counts_or_is_dropped() -> None:
    b = ProfileBook("o", TZ)
    b.advance(T0)
    assert b.apply(refund(T0 + H, "o1", 400)) == [] and b.held()["pending_refunds"] == 1
    [r] = b.apply(paid(T0 + 30 * MIN, "o1", 1000))
    assert money(r.value) == [("s", "EUR", 1, 1, 1000, 400)] and b.held()["pending_refunds"] == 0
    b.apply(refund(T0 + H, "o2", 300, "r2"))
    b.advance(T0 + H + KEEP + 1)  # waited `keep` of watermark: dropped
    assert b.held()["pending_refunds"] == 0 and b.unmatched_refunds == 1
    b.apply(paid(T0 + 2 * H, "o2", 1000))
    assert money(b.profile("c1")) == [("s", "EUR", 2, 2, 2000, 400)]


def test_a_final_order_ignores_any_later_report_and_a_backfilled_order_is_final_at_once() -> None:
    b = ProfileBook("o", TZ)
    b.apply(paid(T0, "o1", 1000))
    b.advance(T0 + KEEP)
    assert b.held()["open_orders"] == 1  # W must pass paid + keep
    b.advance(T0 + KEEP + 1)
    assert b.held() == {"customers": 1, "open_orders": 0, "final_orders": 1, "refund_names": 0, "pending_refunds": 0}
    # an earlier report of a final order changes nothing any more: its amount and time are final
    [r] = b.apply(paid(T0 - H, "o1", 1, id="earlier"))
    assert money(r.value) == [("s", "EUR", 1, 1, 1000, 0)] and r.value.first_paid == T0
    assert r.value.first_seen == T0 - H  # the report still says the customer was there
    # a backfill far behind the watermark: counted once, final at once, and its repeats are recognised
    [r] = b.apply(paid(T0 - 300 * DAY, "old", 700, customer="c2"))
    assert r.value.orders == 1 and b.held()["open_orders"] == 0
    assert b.apply(paid(T0 - 299 * DAY, "old", 700, customer="c2", id="old-again"))[0].value.orders == 1


def test_orders_of_two_stores_and_currencies_are_kept_apart() -> None:
    got, _ = feed([paid(T0, "o1", 1000), paid(T0 + H, "o1", 900, store="s2", currency="USD"),
                   paid(T0 + 2 * H, "o2", 300, store="s2", currency="USD", qty=3)])
    v = got["c1"]
    assert money(v) == [("s", "EUR", 1, 1, 1000, 0), ("s2", "USD", 2, 4, 1200, 0)]
    assert (v.orders, v.items, v.first_paid, v.last_paid) == (3, 5, T0, T0 + 2 * H)


def test_records_share_the_organisations_version_and_advance_emits_nothing() -> None:
    version = Version(41)
    s = Shoppers("o", TZ, 60, version=version)
    out = s.apply(ev(Kind.CUSTOMER_CREATED, T0 - H, customer="c1")) + s.apply(paid(T0, "o1", cart="k1"))
    out += s.advance(T0 + 10 * DAY)
    versions = [r.version for r in out]
    assert versions == list(range(42, 42 + len(versions))) and version.value == versions[-1]
    assert {r.kind for r in out} == {"customer", "journey_day"}
    assert [r.day for r in out if r.kind == "customer"] == ["2026-03-02", "2026-03-02"]
    assert s.held()["profiles_customers"] == 1 and s.held()["profiles_open_orders"] == 0


def test_a_snapshot_keeps_every_customer_even_one_whose_key_holds_a_nul() -> None:
    for keys in (["c1", "c2"], ["c1", "odd\x00key", "c2"], []):
        b = ProfileBook("o", TZ)
        for i, k in enumerate(keys):
            b.apply(paid(T0 + i, f"o{i}", 100 + i, customer=k))
        restored = pickle.loads(pickle.dumps(b))
        assert restored.keys == keys and [restored.profile(k) for k in keys] == [b.profile(k) for k in keys]
        if keys:  # the restored book still knows the order: a repeat report is no second order
            restored.apply(paid(T0 + 1, "o0", customer=keys[0]))
            assert restored.profile(keys[0]).orders == 1


def test_snapshot_files_hold_what_changed_and_give_the_same_book_back(tmp_path: Path) -> None:
    """The profiles are written to snapshot files entry by entry (flows/snapshot_files.py): each snapshot
    writes the profiles, final orders and refund totals changed since the previous one."""
    from flows.profiles import FINAL_ORDERS, OPEN_ORDERS, PROFILES, REFUND_TOTALS, TABLES
    from flows.snapshot_files import SnapshotFiles

    b = ProfileBook("o", TZ)
    for i in range(300):
        b.apply(paid(T0 + i * MIN, f"o{i}", 100 + i, customer=f"c{i % 50}"))
    b.apply(refund(T0 + 400 * MIN, "o7", 30))
    b.advance(T0 + 400 * MIN + KEEP + DAY)  # every order final: only fingerprints stay
    files = SnapshotFiles(tmp_path, "o")
    first = files.save(b.take_changes(), lambda *_: True, b.tables)
    assert files.last.entries_written == 50 + 300 + 1
    b.apply(paid(T0 + 500 * MIN + KEEP + DAY, "o-new", 999, customer="c3"))
    b.apply(paid(T0 + 3 * MIN, "o3", 103, customer="c3"))  # a final order reported again: nothing changes
    changed = b.take_changes()
    assert {t: len(changed[t]) for t in TABLES} == {PROFILES: 1, FINAL_ORDERS: 0, REFUND_TOTALS: 0, OPEN_ORDERS: 1}
    second = files.save(changed, lambda *_: True, b.tables)
    assert files.last.entries_written == 2 and len(second.files) == len(first.files) + 1
    back = b.without_tables()
    assert back.keys == [] and back.orders.count == 0
    back.with_tables(SnapshotFiles(tmp_path, "o").load(second, lambda *_: True))
    assert back.keys == b.keys and [back.profile(f"c{i}") for i in range(50)] == [b.profile(f"c{i}") for i in range(50)]
    assert sorted(back.orders.items()) == sorted(b.orders.items()) and back.held() == b.held()
    back.apply(paid(T0 + 9 * MIN, "o9", 109, customer="c9"))  # known to the restored book too
    assert back.profile("c9") == b.profile("c9")


def test_open_orders_are_in_the_snapshot_files_not_pickled_into_every_snapshot(tmp_path: Path) -> None:
    """The orders of the window are written when a report changes them and as None once final (a restore
    drops them); the pickled rest holds none; a restored book goes on exactly as the one that kept running."""
    from flows.profiles import OPEN_ORDERS
    from flows.snapshot_files import SnapshotFiles

    keep = lambda table, key, value: value is not None  # noqa: E731  (Organisation.keeps for the profiles' tables)
    b = ProfileBook("o", TZ)
    for i in range(40):
        b.apply(paid(T0 + i * DAY // 4, f"o{i}", 100 + i, customer=f"c{i % 6}"))
    b.advance(T0 + 10 * DAY)  # the first 12 of the 40 orders (6 h apart) final, 28 open
    files = SnapshotFiles(tmp_path, "o")
    first = files.save(b.take_changes(), keep, b.tables)
    assert b.held()["open_orders"] == 28 and b.without_tables().open == {}
    b.apply(refund(T0 + 10 * DAY, "o35", 30))  # a refund of an open order changes it
    b.apply(paid(T0 + 10 * DAY, "o39", 90, customer="c2"))  # an earlier-looking report: only that order again
    b.advance(T0 + 10 * DAY + DAY)  # four more final
    changed = b.take_changes()
    assert sorted(v is None for v in changed[OPEN_ORDERS].values()) == [False, False, True, True, True, True]
    second = files.save(changed, keep, b.tables)
    small = pickle.loads(pickle.dumps(b.without_tables()))  # what the Bytewax snapshot holds beside the files
    back = small.with_tables(SnapshotFiles(tmp_path, "o").load(second, keep))
    assert back.held() == b.held() and back.open.keys() == b.open.keys()
    assert len(first.files) + 1 == len(second.files)
    later = [refund(T0 + 12 * DAY, "o38", 50, name="r2"), paid(T0 + 12 * DAY, "o-new", 70, customer="c9")]
    for e in later:
        assert back.apply(e) == b.apply(e)
    assert back.advance(T0 + 30 * DAY) == b.advance(T0 + 30 * DAY)
    assert [back.profile(f"c{i}") for i in range(10)] == [b.profile(f"c{i}") for i in range(10)]
    assert back.held() == b.held() and back.held()["open_orders"] == 0


def test_a_book_pickled_whole_by_an_older_storepulse_is_read_and_written_out_whole_once() -> None:
    b = ProfileBook("o", TZ)
    for i in range(20):
        b.apply(paid(T0 + i * MIN, f"o{i}", 100 + i, customer=f"c{i % 4}"))
    b.advance(T0 + 20 * MIN + KEEP + DAY)
    state = {k: v for k, v in b.__dict__.items() if k not in ("_slot", "_store_ix", "_cur_ix", "_work", "_dirty")}
    state["keys"] = "\x00".join(b.keys)  # as the old __getstate__ wrote it
    from array import array
    state["blobs"] = (array("I", map(len, b.blobs)), b"".join(b.blobs))
    old = ProfileBook.__new__(ProfileBook)
    old.__setstate__(pickle.loads(pickle.dumps(state)))
    assert [old.profile(f"c{i}") for i in range(4)] == [b.profile(f"c{i}") for i in range(4)]
    assert old.with_tables({}) is old and old.keys == b.keys  # no files yet: the pickled book stands
    changed = old.take_changes()  # the first snapshot writes it all out
    assert (len(changed["profiles"]), len(changed["profile_final_orders"])) == (4, 20)


def test_fingerprint_map_keeps_every_entry_through_growth_and_pickling() -> None:
    rnd = random.Random(7)
    m = FingerprintMap("I")
    want = {rnd.getrandbits(64): rnd.getrandbits(32) for _ in range(40_000)}
    for fp, v in want.items():
        m.put(fp, v)
    m = pickle.loads(pickle.dumps(m))
    assert m.count == len(want) and all(m.get(fp) == v for fp, v in want.items())
    assert m.get(rnd.getrandbits(64)) is None
    fp = next(iter(want))
    m.put(fp, 5)
    assert m.get(fp) == 5 and m.count == len(want)
    # a key whose bytes appear straddling two entries is still found only where it is aligned
    m2 = FingerprintMap("I")
    m2.put(0x0102030405060708, 0x010C0B0A)  # entry bytes 08 07 06 05 04 03 02 01 | 0A 0B 0C 01
    straddling = 0x010C0B0A01020304  # bytes 04 03 02 01 0A 0B 0C 01: at offset 4, same bucket (top byte 01)
    assert m2.get(straddling) is None
    m2.put(straddling, 9)
    assert (m2.get(straddling), m2.get(0x0102030405060708), m2.count) == (9, 0x010C0B0A, 2)
    assert fingerprint("s", "o1") != fingerprint("s", "o2") and fingerprint("s", "o1") == fingerprint("s", "o1")


def test_a_profile_stays_well_under_1_kib() -> None:
    """The bench measures 1M customers; this guards the bound on 20k (tracemalloc is exact)."""
    n = 20_000
    b = ProfileBook("o", TZ)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        t = T0 + i * MIN
        b.apply(ev(Kind.CUSTOMER_CREATED, t, id=f"c{i}", customer=f"cus_{i:08d}",
                   attrs={"email": f"person{i}@example.com", "first_name": "Alexandra", "last_name": "Example"}))
        for k in range(i % 4):
            b.apply(paid(t + k * H, f"o{i}-{k}", 1000 + k, customer=f"cus_{i:08d}", id=f"p{i}-{k}"))
    b.advance(T0 + n * MIN + KEEP + DAY)
    per = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    assert b.held()["open_orders"] == 0 and b.held()["final_orders"] == n * 3 // 2
    assert per < 1024, per


# --- generated shops: disorder, redelivery, snapshots, and the documented SQL -------------------

GEN_T0 = int(dt.datetime(2026, 3, 28, 18, 0, tzinfo=ZoneInfo(TZ)).timestamp() * 1000)
PEOPLE = ("c1", "c2", "c3", "c4")


@st.composite
def shop(draw: st.DrawFn) -> list[Event]:
    """A few customers over three days: contact events, visits, orders reported several times, refunds."""
    events: list[Event] = []
    def at():
        return GEN_T0 + draw(st.integers(0, 3 * 24 * 60)) * MIN + draw(st.sampled_from([0, 0, 7]))
    for n in range(draw(st.integers(0, 8))):
        who, kind = draw(st.sampled_from(PEOPLE)), draw(st.sampled_from([Kind.CUSTOMER_CREATED, Kind.CUSTOMER_UPDATED, Kind.IDENTIFIED]))
        attrs = draw(st.fixed_dictionaries({}, optional={
            "email": st.sampled_from(["a@x.io", "b@x.io", " c@x.io ", ""]), "name": st.sampled_from(["Ann", "Bo", "  "]),
            "first_name": st.sampled_from(["Cy", "Di"]), "last_name": st.sampled_from(["Lee", ""]),
            "created_at": st.integers(GEN_T0 - 5 * DAY, GEN_T0 + 5 * DAY), "created": st.integers(1_770_000_000, 1_780_000_000)}))
        events.append(ev(kind, at(), id=f"k{n}", store=draw(st.sampled_from(["s1", "s2"])), customer=who,
                         visitor="v" if kind is Kind.IDENTIFIED else None, attrs=attrs))
    def typed() -> dict[str, str]:  # the buyer's details on an order or checkout (and on events that are neither)
        return draw(st.fixed_dictionaries({}, optional={
            "email": st.sampled_from(["g@x.io", "h@x.io", " "]), "customer_name": st.sampled_from(["Gil", "Hu", ""]),
            "name": st.sampled_from(["#1001"])}))
    for n in range(draw(st.integers(0, 6))):
        events.append(ev(draw(st.sampled_from([Kind.PAGE_VIEWED, Kind.EMAIL_ENGAGED, Kind.ORDER_CANCELLED,
                                               Kind.CHECKOUT_STARTED, Kind.CART_UPDATED, Kind.ORDER_PLACED])), at(),
                         id=f"v{n}", store=draw(st.sampled_from(["s1", "s2"])), customer=draw(st.sampled_from(PEOPLE)),
                         order="x1", attrs=typed()))
    for o in range(draw(st.integers(0, 6))):
        owner = draw(st.sampled_from([*PEOPLE, None]))
        store = draw(st.sampled_from(["s1", "s2"]))
        for r in range(draw(st.integers(1, 3))):  # reports of one payment: times, amounts may differ
            named = draw(st.sampled_from([owner, owner, None, "c1"]))  # now and then another customer
            qty = draw(st.integers(1, 3))
            events.append(ev(Kind.ORDER_PAID, at(), id=f"o{o}-{r}", store=store, order=f"o{o}", customer=named,
                             currency=draw(st.sampled_from(["EUR", "USD"])), amount=draw(st.integers(1, 5000)),
                             items=(Item("p", qty, 100),), attrs=typed()))
    for n in range(draw(st.integers(0, 4))):  # refund names: fixed order (or credit note) and currency
        store, currency = draw(st.sampled_from(["s1", "s2"])), draw(st.sampled_from(["EUR", "USD"]))
        order = draw(st.sampled_from(["o0", "o1", "o9", None]))  # o9 is never paid
        named = draw(st.sampled_from([*PEOPLE, None]))
        for r in range(draw(st.integers(1, 3))):
            events.append(ev(Kind.ORDER_REFUNDED, at(), id=f"r{n}-{r}", store=store, order=order, refund=f"r{n}",
                             customer=named, currency=currency, amount=draw(st.integers(1, 900))))
    return events


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shop(), st.integers(0, 3 * H), st.randoms(use_true_random=False))
def test_redelivery_and_disorder_within_the_window_leave_the_same_final_records(
        events: list[Event], lateness: int, rnd: random.Random) -> None:
    if not events:
        return
    ordered = sorted(events, key=lambda e: (e.time, e.id))
    expected, ref = feed(ordered, lateness)
    copies = [(e.time + rnd.randrange(lateness + 1), rnd.random(), e) for e in events * 3]
    got, b = feed([e for _, _, e in sorted(copies, key=lambda c: (c[0], c[1]))], lateness)
    assert got == expected
    assert b.held() == ref.held() and b.unmatched_refunds == ref.unmatched_refunds
    backwards, _ = feed(list(reversed(ordered)), 10 * DAY)  # all at once, backwards, nothing final before the end
    assert backwards == expected


@settings(max_examples=60, deadline=None)
@given(shop(), st.integers(0, 100))
def test_a_snapshot_taken_anywhere_resumes_to_the_same_final_records(events: list[Event], cut_percent: int) -> None:
    if not events:
        return
    ordered = sorted(events, key=lambda e: (e.time, e.id))
    expected, _ = feed(ordered)
    cut = len(ordered) * cut_percent // 100
    b = ProfileBook("o", TZ)
    out: list[Record] = []
    for e in ordered[:cut]:
        out += b.apply(e) + b.advance(e.time - 5 * MIN)
    b = pickle.loads(pickle.dumps(b))
    for e in ordered[cut:]:
        out += b.apply(e) + b.advance(e.time - 5 * MIN)
    b.advance(ordered[-1].time + KEEP + DAY)
    assert final(out) == expected


def doc_sql(marker: str) -> str:
    """The ```sql block of docs/metrics.md whose first line starts with `marker`: the tests run the docs."""
    for block in re.findall(r"```sql\n(.*?)```", (REPO / "docs" / "metrics.md").read_text(), re.S):
        if block.startswith(marker):
            return block
    raise AssertionError(f"no SQL block starting with {marker!r} in docs/metrics.md")


def sql_profiles(events: list[Event], tmp: Path) -> dict[str, Customer]:
    """The documented SQL over the events (one per id, as the log keeps them), shaped like the records."""
    path = tmp / "events.ndjson"
    with path.open("w") as f:
        for e in {e.id: e for e in events}.values():
            f.write(json.dumps({
                "id": e.id, "kind": e.kind.value, "store": e.store, "time": e.time, "amount": e.amount,
                "currency": e.currency or None, "customer": e.customer, "visitor": e.visitor, "order": e.order,
                "refund": e.refund, "attrs": e.attrs,
                "items": [{"product": i.product, "qty": i.qty, "unit_price": i.unit_price} for i in e.items],
            }) + "\n")
    con = duckdb.connect()
    con.execute(f"""CREATE TABLE events AS SELECT * FROM read_json('{path}', format = 'newline_delimited', columns = {{
        id: 'VARCHAR', kind: 'VARCHAR', store: 'VARCHAR', time: 'BIGINT', amount: 'BIGINT', currency: 'VARCHAR',
        customer: 'VARCHAR', visitor: 'VARCHAR', "order": 'VARCHAR', refund: 'VARCHAR', attrs: 'JSON',
        items: 'STRUCT(product VARCHAR, qty BIGINT, unit_price BIGINT)[]'}})""")
    body = "\n".join(line for line in doc_sql("-- customer profiles").splitlines() if not line.lstrip().startswith("--"))
    results = []
    for stmt in (s.strip() for s in body.split(";") if s.strip()):
        cur = con.execute(stmt)
        if stmt.upper().startswith(("SELECT", "WITH")):
            cols = [d[0] for d in cur.description]
            results.append([dict(zip(cols, row)) for row in cur.fetchall()])
    people, money_rows = results
    out = {}
    for p in people:
        mine = [m for m in money_rows if m["customer"] == p["customer"]]
        out[p["customer"]] = Customer(
            customer=p["customer"], store=p["store"], registered=p["registered"], first_seen=p["first_seen"],
            registered_at=p["registered_at"], last_active=p["last_active"], email=p["email"], name=p["name"],
            orders=p["orders"], items=p["items"], first_paid=p["first_paid"], last_paid=p["last_paid"],
            money=[CustomerMoney(m["store"], m["currency"], m["orders"], m["items"], m["gross"], m["refunds"],
                                 m["first_paid"], m["last_paid"]) for m in mine],
        )
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(events=shop())
def test_the_documented_sql_equals_the_book_on_generated_shops(events: list[Event], tmp_path: Path) -> None:
    if not events:
        return
    got, _ = feed(sorted(events, key=lambda e: (e.time, e.id)))
    assert got == sql_profiles(events, tmp_path)


# --- through `storepulse up`: signed webhooks and the events API in, GET /customers out ----------

def stripe_customer_created(evt: str, cus: str, email: str, name: str, created: int) -> bytes:
    return orjson.dumps({"id": evt, "object": "event", "created": created, "type": "customer.created",
                         "data": {"object": {"id": cus, "object": "customer", "email": email, "name": name,
                                             "created": created}}})


def wait_customers(sp: Storepulse, check: Any, timeout: float = 20, **params: object) -> dict[str, Any]:
    return wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/customers", **params).json(), check, timeout,
                     "GET /customers")


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
def test_customers_list_and_never_bought_through_storepulse(tmp_path: Path, backend: str) -> None:
    with contextlib.ExitStack() as cleanup:
        redis_url = None
        if backend == "redis":
            server = RedisServer(tmp_path / "redis")
            cleanup.callback(server.stop)
            redis_url = server.url
        sp = Storepulse(tmp_path, redis_url, config=ORGS_TOML)
        cleanup.callback(sp.ensure_stopped)
        sp.start()
        berlin = ZoneInfo("Europe/Berlin")
        t = int(time.time()) - 3600
        def iso(s):
            return dt.datetime.fromtimestamp(s, dt.UTC).astimezone(berlin).isoformat()
        tag = uuid.uuid4().hex[:6]
        # registered, never bought (Stripe); registered, then bought twice; a site login that never bought
        for evt, cus, email, name, created in (("ec1", "cus_new", "new@example.com", "Nina New", t - 600),
                                                ("ec2", "cus_a", "a@example.com", "Ann A", t - 1200)):
            assert sp.post_stripe("acme-stripe", stripe_customer_created(evt, cus, email, name, created)).status_code == 200
        r = sp.post_events([{"type": "identify", "id": f"{tag}-1", "time": (t - 300) * 1000, "visitor": "v1",
                             "customer": "site-7", "properties": {"email": "seven@example.com", "name": "Sev En"}},
                            {"type": "page_view", "id": f"{tag}-2", "time": (t + 900) * 1000, "customer": "cus_b",
                             "url": "/"}])
        assert r.status_code == 200, r.text
        post_list_orders(sp, t)
        sp.post_stripe("acme-stripe", charge_refunded("e5", "ch_2", "pi_2", 4500, 500, created=t + 240))
        # the refund names no customer: it reaches cus_a through its order
        everyone = wait_customers(sp, lambda b: b["customers"] and b["customers"][0]["lifetime"]["refunds"]["amount"] == 500,
                                  period="all")
        assert [(c["customer"], c["revenue"]["amount"], c["orders"], c["items"]) for c in everyone["customers"]] == [
            ("cus_a", 7500, 2, 5), ("cus_b", 1500, 1, 1)]
        assert everyone["summary"] == {"customers": 2, "repeat_customers": 1, "repeat_purchase_rate": 0.5,
                                       "new_customers": 2, "returning_customers": 0, "guest_orders": 1}
        a, b_ = everyone["customers"]
        assert a == {"customer": "cus_a", "revenue": {"amount": 7500, "currency": "EUR", "exponent": 2}, "orders": 2, "items": 5,
                     "first_order_at": iso(t), "last_order_at": iso(t + 60), "registered_at": iso(t - 1200),
                     "email": "a@example.com", "name": "Ann A", "last_active_at": iso(t + 60),
                     "lifetime": {"orders": 2, "items": 5, "revenue": {"amount": 7500, "currency": "EUR", "exponent": 2},
                                  "refunds": {"amount": 500, "currency": "EUR", "exponent": 2},
                                  "net_revenue": {"amount": 7000, "currency": "EUR", "exponent": 2}}}
        # cus_b was never registered: first seen with its order; its page view is its last activity
        assert (b_["registered_at"], b_["last_active_at"], b_["email"]) == (iso(t + 120), iso(t + 900), None)
        assert everyone["total"] == 2 and everyone["filter"] is None
        # a bounded period sums its own orders: the same numbers (all orders are in it)
        yesterday = (dt.datetime.fromtimestamp(t, berlin).date() - dt.timedelta(days=1)).isoformat()
        bounded = sp.get("/api/v1/orgs/acme/customers", **{"from": yesterday}).json()
        assert (bounded["customers"], bounded["summary"]) == (everyone["customers"], everyone["summary"])
        by_items = sp.get("/api/v1/orgs/acme/customers", period="all", sort="items", limit=1).json()["customers"]
        assert [c["customer"] for c in by_items] == ["cus_a"]
        registered = sp.get("/api/v1/orgs/acme/customers", period="all", sort="registered").json()["customers"]
        assert [c["customer"] for c in registered] == ["cus_b", "cus_a"]  # newest registration first

        never = sp.get("/api/v1/orgs/acme/customers", period="all", filter="never_bought").json()
        assert never["total"] == 2 and never["sort"] == "registered"
        assert [(c["customer"], c["registered_at"], c["email"], c["name"], c["orders"], c["revenue"]["amount"])
                for c in never["customers"]] == [
            ("site-7", iso(t - 300), "seven@example.com", "Sev En", 0, 0),
            ("cus_new", iso(t - 600), "new@example.com", "Nina New", 0, 0)]
        day = dt.datetime.fromtimestamp(t - 600, berlin).date()
        registered_on = sp.get("/api/v1/orgs/acme/customers", filter="never_bought",
                               **{"from": day.isoformat(), "to": day.isoformat()}).json()
        on_day = {c for c, s in (("site-7", t - 300), ("cus_new", t - 600)) if dt.datetime.fromtimestamp(s, berlin).date() == day}
        assert {c["customer"] for c in registered_on["customers"]} == on_day == {"cus_new"} | on_day
        later = (day + dt.timedelta(days=2)).isoformat()
        assert sp.get("/api/v1/orgs/acme/customers", filter="never_bought", **{"from": later}).json()["total"] == 0
        only_site = sp.get("/api/v1/orgs/acme/customers", period="all", filter="never_bought", store="acme-site").json()
        assert [c["customer"] for c in only_site["customers"]] == ["site-7"]
        assert sp.get("/api/v1/orgs/acme/customers", filter="bought").status_code == 400
        assert sp.get("/api/v1/orgs/acme/customers", sort="price").status_code == 400
        in_chf = sp.get("/api/v1/orgs/acme/customers", period="all", currency="CHF")  # the test rates have no CHF
        assert in_chf.status_code == 200 and in_chf.json()["missing_rates"][0]["currency"] == "CHF"
        assert "incomplete in CHF: no exchange rate for CHF on " in in_chf.json()["message"]
