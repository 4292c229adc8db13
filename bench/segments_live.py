"""Live segments in the organisation's state: the UCI Online Retail file folded by `Organisation`
(what the dataflow runs per batch), with the 39 predefined customer segments and 61 more (100 in all;
--products: and the 9 predefined product segments), against the same fold without segments, in the same run. Prints CPU time, events per second, the segments'
share and their cost per event, evaluations and changes, and the state per customer: what the snapshot
files hold of the segments (packed, flows/segment_states.py, beside the customers pickled whole as
before, same run) and of the profiles, what a snapshot of every batch costs per event both ways, what
a restore costs, and what the customers hold in memory.

--customers N: then the same state at N customers (the replay's customers repeated under new keys,
their orders and refunds under new fingerprints, restored from the packed tables as a restart would):
what the snapshot files hold and cost, what a restore costs, and the memory it takes (RSS).

    .venv/bin/python bench/segments_live.py [--batch 500] [--extra 61] [--products] [--no-skip] [--customers 1000000]
        [--changes FILE]
    .venv/bin/python bench/segments_live.py --whales 2000 --define 50000
"""

from __future__ import annotations

import argparse
import gc
import os
import pickle
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from core.changes import Bucket, Record  # noqa: E402
from core.config import parse_config  # noqa: E402
from core.definitions import delete_event, put_event  # noqa: E402
from core.events import Event, Item, Kind  # noqa: E402
from core.records import RecordKind, Value  # noqa: E402
from flows.membership import Membership  # noqa: E402
from flows.organisation import Organisation  # noqa: E402
from flows.product_segments import ProductMembership  # noqa: E402
from flows.profiles import FINAL_ORDERS, GUEST, PROFILES, REFUND_TOTALS, ProfileBook  # noqa: E402
from flows.snapshot_files import _dumps  # noqa: E402
from ingest.replay import map_file  # noqa: E402
from storepulse.gc_policy import DATAFLOW, settle  # noqa: E402

FILE = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
CONFIG = '[orgs.retail]\ntimezone = "Europe/London"\ncurrency = "GBP"\ntoken = "retail-token-0123456789"\n' \
         'product_segments = {products}\n' \
         '[orgs.retail.stores.uk]\nprovider = "events"\nsecret = "retail-key-0123456789"\n'


def extra_segments(n: int) -> list[dict[str, object]]:
    """n more rules mixing windows, thresholds, products and combinators."""
    products = ["85123A", "22423", "85099B", "47566", "20725", "84879", "22720", "22197"]
    out: list[dict[str, object]] = []
    for i in range(n):
        days = (7, 30, 90, 180)[i % 4]
        kind = i % 6
        if kind == 0:
            out.append({"spent": {"gte": f"{100 * (1 + i % 9)}.00", "within": f"{days}d"}})
        elif kind == 1:
            out.append({"orders": {"gte": 1 + i % 5, "within": f"{days}d"}})
        elif kind == 2:
            out.append({"bought_product": {"gte": 1, "product": products[i % len(products)], "within": f"{days}d"}})
        elif kind == 3:
            out.append({"all": [{"orders": {"gte": 2}}, {"last_order_at": {"before": f"{days}d"}}]})
        elif kind == 4:
            out.append({"any": [{"order_value": {"gte": f"{50 * (1 + i % 7)}.00"}}, {"items": {"gte": 10 + i}}]})
        else:
            out.append({"not": {"refunds": {"gte": 1, "within": f"{days}d"}}})
    return out


class Snapshots:
    """What snapshotting the segments after every batch (an epoch) costs: the changed customers packed
    (now) and pickled whole (before), CPU seconds and bytes; not counted in the fold's time."""

    def __init__(self) -> None:
        self.packed_s = self.pickled_s = 0.0
        self.packed_bytes = self.pickled_bytes = self.customers = 0

    def take(self, s: Membership) -> None:
        changed = list(s._changed)
        started = time.process_time()
        self.pickled_bytes += len(_dumps({s.table: {k: s.customers.get(k) for k in changed}}))
        self.pickled_s += time.process_time() - started
        started = time.process_time()
        self.packed_bytes += len(_dumps(s.take_changes()))
        self.packed_s += time.process_time() - started
        self.customers += len(changed)


def fold(events: list[Event], batch: int, with_segments: bool, extra: int,
         products: bool = False, snaps: Snapshots | None = None,
         record: list[str] | None = None) -> tuple[float, Organisation]:
    org = Organisation.new(parse_config(CONFIG.format(products=str(products).lower()), {}).orgs["retail"])
    if not with_segments:
        org.segments = Membership("retail", "Europe/London", "GBP", {})
        org.products = ProductMembership("retail", "Europe/London", "GBP", {})
    defs = [put_event("retail", "segment", f"x{i}", {"name": f"x{i}", "rule": r}, 0, f"d{i}")
            for i, r in enumerate(extra_segments(extra))] if with_segments else []
    org.apply_all(defs)
    cpu = 0.0
    for i in range(0, len(events), batch):
        started = time.process_time()
        out = org.apply_all(events[i:i + batch])
        cpu += time.process_time() - started
        if record is not None:
            record += decisions(out)
        if snaps is not None:
            snaps.take(org.segments)
    return cpu, org


def decisions(records: list[Bucket | Record[Value]]) -> list[str]:
    """The segment changes and memberships of one batch, in the order written: what --changes compares."""
    return [f"{r.kind} {r.key} {r.value!r}" for r in records
            if isinstance(r, Record) and r.kind in (RecordKind.SEGMENT_CHANGE, RecordKind.SEGMENT_MEMBER)]


def final_states(s: Membership) -> list[str]:
    """Every customer's membership, timers and entry instants after the fold."""
    return [f"state {k} {c.now.at} {c.now.mask} {sorted(c.now.nexts.items())} {sorted(c.now.entered.items())}"
            for k, c in sorted(s.customers.items())]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--extra", type=int, default=61)
    p.add_argument("--products", action="store_true", help="the predefined product segments too")
    p.add_argument("--no-skip", action="store_true",
                   help="also fold evaluating every touched segment (no skipping of those an input cannot flip)")
    p.add_argument("--customers", type=int, default=0, help="then the state at this many customers")
    p.add_argument("--changes", type=Path, help="write every segment change and membership record, in order, and"
                   " every customer's final mask, timers and entry instants to this file (to diff two trees)")
    p.add_argument("--whales", type=int, default=0, help="only: the fold of five customers with this many orders each"
                   " (one every 10 h each), CPU per event (run it in two trees to compare)")
    p.add_argument("--define", type=int, default=0, help="only: one segment defined over this many idle customers")
    args = p.parse_args()
    if args.whales or args.define:
        settle(DATAFLOW)
        if args.whales:
            whales(args.whales, args.batch, args.extra)
        if args.define:
            define(args.define)
        return
    events = map_file(FILE, "online-retail", "retail", "uk").events
    # the dataflow's collector policy (flows/run.py settles it at start): with Python's default
    # thresholds, full collections over the customers' states cost a third of the evaluation time
    settle(DATAFLOW)
    plain, _ = fold(events, args.batch, False, 0)
    snaps = Snapshots()
    record: list[str] | None = [] if args.changes else None
    live, org = fold(events, args.batch, True, args.extra, args.products, snaps, record)
    if args.changes and record is not None:
        args.changes.write_text("\n".join(record + final_states(org.segments) + final_states(org.products)) + "\n")
        print(f"wrote {len(record)} change and member records and {len(org.segments.customers)} states to {args.changes}")
    s = org.segments
    n = len(events)
    p = org.products
    print(f"{n} events ({FILE.name}), batches of {args.batch}, {len(s.live.order)} customer segments and"
          f" {len(p.live.order)} product segments ({len({id(r) for r in s.live.rules.values()})} distinct customer"
          f" rules: equal ones are evaluated once)")
    print(f"  baseline, the same fold without segments: {plain:6.2f} s CPU  {n / plain:9,.0f} events/s")
    print(f"  with segments:                            {live:6.2f} s CPU  {n / live:9,.0f} events/s"
          f"  ({plain / live:.2f} of the baseline)")
    print(f"  segments' share: {(live - plain) / n * 1e6:.1f} us CPU/event, {s.stats.evaluations / n:.1f} segment"
          f" evaluations/event ({(live - plain) / s.stats.evaluations * 1e6:.1f} us each, all told),"
          f" {s.stats.changes} changes, {s.stats.withdrawn} withdrawn; products: {p.stats.evaluations / n:.1f}"
          f" evaluations/event, {p.stats.changes} changes")
    print(f"  of which evaluating the rules (the book's own timer around SegmentSet.evaluate):"
          f" {s.stats.seconds / n * 1e6:.1f} us/event, {s.stats.seconds / s.stats.evaluations * 1e6:.2f} us per segment"
          f" evaluation (wall clock)")
    fired = getattr(s.stats, "timer_evaluations", None)  # (absent from trees before 2026-12-07 07:00)
    if fired is not None:
        timer_s = s.stats.timer_seconds
        print(f"    at an input: {(s.stats.seconds - timer_s) / n * 1e6:.1f} us/event,"
              f" {(s.stats.evaluations - fired) / n:.1f} evaluations/event; at a timer (time passing):"
              f" {timer_s / n * 1e6:.1f} us/event, {fired / n:.1f} evaluations/event")
    if args.no_skip:  # the same run's baseline for core/rules/monotone.py: every touched segment evaluated
        steady_bits = Membership._steady_bits
        Membership._steady_bits = lambda self, s, growth, now: 0  # type: ignore[method-assign]
        try:
            every, org_every = fold(events, args.batch, True, args.extra, args.products)
        finally:
            Membership._steady_bits = steady_bits  # type: ignore[method-assign]
        e = org_every.segments.stats
        print(f"  evaluating every touched segment (no skipping): {every:6.2f} s CPU, segments' share"
              f" {(every - plain) / n * 1e6:.1f} us CPU/event, {e.evaluations / n:.1f} evaluations/event, evaluating"
              f" {e.seconds / n * 1e6:.1f} us/event; skipping: {s.stats.evaluations / n:.1f} evaluations/event,"
              f" {s.stats.seconds / n * 1e6:.1f} us/event; same changes: {e.changes == s.stats.changes}")
    # what a snapshot writes for them (flows/snapshot_files.py pickles each table without a memo): packed,
    # and pickled whole as before; the profiles' tables beside them
    n_customers = len(s.customers)
    packed = s.tables()
    written = len(_dumps(packed))
    every = dict(s.customers.items())  # every customer unpacked (idle ones are held packed since the fold)
    pickled = _dumps({s.table: every})
    profiles = org.shoppers.profiles
    prof = {name: len(_dumps({name: table})) for name, table in profiles.tables().items()}
    print(f"  snapshot files per customer ({n_customers} customers, {s.held()['steps']} kept steps):"
          f" segments packed {written / n_customers:,.0f} B (pickled whole, as before: {len(pickled) / n_customers:,.0f} B);"
          f" profiles {sum(prof.values()) / n_customers:,.0f} B (" + ", ".join(
              f"{k} {v / n_customers:,.0f}" for k, v in prof.items()) + ");"
          f" in all {(written + sum(prof.values())) / n_customers:,.0f} B"
          f" (before: {(len(pickled) + sum(prof.values())) / n_customers:,.0f} B)")
    print(f"  a snapshot after every batch: {snaps.customers / (n / args.batch):,.0f} changed customers each;"
          f" packing them {snaps.packed_s / n * 1e6:.1f} us CPU/event ({snaps.packed_s / live * 100:.1f} % of the fold"
          f" with segments), {snaps.packed_bytes / snaps.customers:,.0f} B each; pickling them whole as before"
          f" {snaps.pickled_s / n * 1e6:.1f} us/event ({snaps.pickled_s / live * 100:.1f} %),"
          f" {snaps.pickled_bytes / snaps.customers:,.0f} B each")
    started = time.process_time()
    restored = s.without_tables().with_tables(packed)
    restore_s = time.process_time() - started
    started = time.process_time()
    unpacked(restored)
    unpack_s = time.process_time() - started
    started = time.process_time()
    pickle.loads(pickled)
    unpickle_s = time.process_time() - started
    print(f"  restoring them: {restore_s / n_customers * 1e6:.1f} us CPU a customer (held packed), then unpacking"
          f" each {unpack_s / n_customers * 1e6:.1f} us (unpickled as before: {unpickle_s / n_customers * 1e6:.1f} us)")
    # what they hold in memory: the customers restored from the packed table, and a copy unpickled, under tracemalloc
    whole = pickle.dumps(every, protocol=pickle.HIGHEST_PROTOCOL)
    held = {}
    # each blob copied inside the measure: a restore reads its own bytes from the files
    for how, load in (("packed", lambda: s.without_tables().with_tables({s.table: copied(packed[s.table])})),
                      ("live", lambda: unpacked(s.without_tables().with_tables({s.table: copied(packed[s.table])}))),
                      ("unpickled", lambda: pickle.loads(whole))):
        gc.collect()
        tracemalloc.start()
        copy = load()
        held[how] = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        del copy
    print(f"  segment state in memory: {held['packed'] / n_customers:,.0f} B a customer held packed (restored, or idle"
          f" for an epoch: flows/customer_store.py), {held['live'] / n_customers:,.0f} B unpacked (touched),"
          f" {held['unpickled'] / n_customers:,.0f} B a copy unpickled")
    if args.customers:
        at_scale(org, args.customers)


def orders_of(customers: int, per_customer: int, hours_apart: int) -> list[Event]:
    """`per_customer` orders of each of `customers` customers, `hours_apart` hours apart each, in time order."""
    t0, hour = 1_293_840_000_000, 3_600_000
    n = customers * per_customer
    return [Event(id=f"e{i}", kind=Kind.ORDER_PAID, org="retail", store="uk",
                  time=t0 + i * hours_apart * hour // customers, customer=f"c{i % customers}", amount=1000 + i % 7 * 100,
                  currency="GBP", order=f"o{i}", items=(Item("85123A" if i % 3 else "22423", 1, 1000),)) for i in range(n)]


def whales(orders: int, batch: int, extra: int) -> None:
    """Customers with hundreds of orders in every window: what an event of theirs costs the fold."""
    events = orders_of(5, orders, 10)
    print(f"{len(events):,} orders of 5 customers (one every 10 h each), {39 + extra} customer segments")
    for _ in range(2):
        cpu, org = fold(events, batch, True, extra)
        print(f"  fold {cpu:6.2f} s CPU, {cpu / len(events) * 1e6:,.0f} us/event; evaluating"
              f" {org.segments.stats.seconds / len(events) * 1e6:.1f} us/event")


DEFINED = {"many": {"spent": {"gte": "20.00", "within": "30d"}},  # ~43 % of them members, each with a timer
           "few": {"spent": {"gte": "500.00", "within": "30d"}}}  # nobody: the common case of a new segment


def define(customers: int) -> None:
    """A segment defined over `customers` idle customers (held packed, as an epoch after their last
    event): what the one dataflow step that evaluates it for every customer costs; a segment many of
    them enter, and one none of them does; then what deleting each costs."""
    events = sorted(orders_of(customers, 3, 3 * 24 * 7), key=lambda e: e.time)
    _, org = fold(events, 2000, True, 0)
    m = org.segments
    for name, rule in DEFINED.items():
        m.take_changes()
        m.take_changes()  # untouched for an epoch: held packed
        put = put_event("retail", "segment", name, {"name": name, "rule": rule}, 0, f"d-{name}")
        packed = len(m.customers.packed)
        started = time.process_time()
        out = org.apply_all([put])
        cpu = time.process_time() - started
        print(f"defining a segment ({name} members: {m.counts[name]:,}) over {len(m.customers):,} customers"
              f" ({packed:,} held packed):"
              f" {cpu:.2f} s CPU, {cpu / customers * 1e6:.1f} us a customer, {len(out):,} records")
    for name in DEFINED:
        m.take_changes()
        m.take_changes()
        started = time.process_time()
        out = org.apply_all([delete_event("retail", "segment", name, 0, f"x-{name}")])
        cpu = time.process_time() - started
        print(f"deleting it ({name}): {cpu:.2f} s CPU, {cpu / customers * 1e6:.1f} us a customer, {len(out):,} records")


def copied(table: dict[str, bytes]) -> dict[str, bytes]:
    return {k: bytes(bytearray(b)) for k, b in table.items()}


def unpacked(m: Membership) -> Membership:
    """The book with every customer unpacked, as if something had just touched each."""
    for key in list(m.customers.packed):
        m.customers[key]
    return m


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def at_scale(org: Organisation, n: int) -> None:
    """The replay's segment states and profiles repeated to n customers, restored from their tables as
    a restart restores them; then what a snapshot of them all writes and costs, packed and as before."""
    s, profiles = org.segments, org.shoppers.profiles
    source = list(s.tables()[s.table].items())
    ptables = profiles.tables()
    k0 = len(source)
    gc.collect()
    before = rss()  # memory: from before the tables are built to after they are restored and dropped
    packed = {f"{k}~{i // k0}": bytes(bytearray(blob)) for i in range(n) for k, blob in [source[i % k0]]}  # own blobs
    started = time.process_time()
    m = s.without_tables().with_tables({s.table: packed})
    restore_s = time.process_time() - started
    del packed
    gc.collect()
    seg_rss = rss() - before  # held packed, as restored (and as idle customers are held)
    started = time.process_time()
    unpacked(m)  # then every customer touched: what the segments held before idle customers were packed
    thaw_s = time.process_time() - started
    gc.collect()
    live_rss = rss() - before
    prof: dict[str, dict[int, object]] = {PROFILES: {}, FINAL_ORDERS: {}, REFUND_TOTALS: {}}
    for copy in range(-(-n // k0)):
        mix = copy * 0x9E3779B97F4A7C15
        for slot, (key, blob) in ptables[PROFILES].items():
            if copy * k0 + slot < n:
                prof[PROFILES][copy * k0 + slot] = (f"{key}~{copy}", bytes(bytearray(blob)))  # a blob of its own
        for fp, slot in ptables[FINAL_ORDERS].items():
            if slot == GUEST or copy * k0 + slot < n:
                prof[FINAL_ORDERS][(fp ^ mix) & (2**64 - 1)] = slot if slot == GUEST else copy * k0 + slot
        for fp, total in ptables[REFUND_TOTALS].items():
            prof[REFUND_TOTALS][(fp ^ mix) & (2**64 - 1)] = total
    print(f"at {n:,} customers (the replay's {k0:,} repeated; {len(prof[FINAL_ORDERS]):,} final orders,"
          f" {len(prof[REFUND_TOTALS]):,} refunds), load average {os.getloadavg()[0]:.1f}:")
    started = time.process_time()
    book = ProfileBook(profiles.org, "Europe/London").with_tables(prof)  # type: ignore[arg-type]
    prof_restore_s = time.process_time() - started
    del prof
    # the book's memory counted object by object (RSS would count the freed tables it was built from): its
    # keys, blobs and the lists holding them, and the fingerprint maps' buckets
    prof_held = sum(map(sys.getsizeof, book.keys)) + sum(map(sys.getsizeof, book.blobs)) + sys.getsizeof(
        book.keys) + sys.getsizeof(book.blobs) + sum(sys.getsizeof(b) for fm in (book.orders, book.refunds)
                                                      for b in fm._buckets)
    started = time.process_time()
    written = len(_dumps(m.tables()))
    snap_s = time.process_time() - started
    started = time.process_time()
    pickled = len(_dumps({m.table: m.customers.live}))
    pickled_s = time.process_time() - started
    started = time.process_time()
    prof_written = len(_dumps(book.tables()))
    prof_s = time.process_time() - started
    print(f"  snapshot files, everything written once: segments packed {written / n:,.0f} B a customer in"
          f" {snap_s:.1f} s CPU (pickled whole as before: {pickled / n:,.0f} B in {pickled_s:.1f} s); profiles"
          f" {prof_written / n:,.0f} B in {prof_s:.1f} s; in all {(written + prof_written) / n:,.0f} B a customer"
          f" (before: {(pickled + prof_written) / n:,.0f} B)")
    print(f"  restore from the tables: segments {restore_s:.1f} s CPU ({restore_s / n * 1e6:.1f} us a customer, held"
          f" packed), then unpacking every one {thaw_s:.1f} s ({thaw_s / n * 1e6:.0f} us a customer); profiles"
          f" {prof_restore_s:.1f} s; memory: segments {seg_rss / n:,.0f} B a customer held packed, {live_rss / n:,.0f} B"
          f" unpacked (RSS); profiles {prof_held / n:,.0f} B (sizeof); {m.held()['timers']:,} timers")


if __name__ == "__main__":
    main()
