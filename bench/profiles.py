"""Customer profiles: memory per customer, snapshot size and time, and per-event cost, side by side in
one run with a baseline (this machine is noisy; ratios hold, seconds do not).

The book (flows/profiles.py) against a plain dict-of-dicts fold of the same rules: one dict per
customer, one per (store, currency), every order's facts in a dict (how the rules read without a
window), emitting the same absolute records (a copy of the changed customer's dict). Both eat the
same synthetic shop: N customers registering over two years, each with a customer.created (e-mail,
name) and a page view; 60 % buy 1-5 orders of 1-3 items; one order in ten is refunded two days later
by a refund naming only its order (as Shopify's do). The watermark trails the stream by 5 minutes,
as in the dataflow. Each (implementation, measure) runs in its own process so that RSS deltas are
clean: one timed run (CPU us/event, RSS delta, snapshot), one under tracemalloc (exact bytes). The two
must agree on a sample of customers' numbers, or the run fails.

    .venv/bin/python bench/profiles.py [--customers 1000000] [--no-tracemalloc]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need what is set up above (the repository on sys.path, run as a script).
from core.changes import Record  # noqa: E402
from core.events import Event, Item, Kind  # noqa: E402
from core.records import RecordKind  # noqa: E402
from flows.profiles import ProfileBook  # noqa: E402

T_START = 1_700_000_000_000
SPAN_MS = 2 * 365 * 86_400_000
LATENESS = 5 * 60_000
FIRST = ("Alexandra", "Ben", "Chloé", "Dmitri", "Eun-ji", "Farah", "Giulia", "Hiro")
LAST = ("Example", "Okonkwo", "Müller", "Nakamura", "Silva", "Lindqvist")


def shop(n: int) -> Iterator[tuple[int, list[Event]]]:
    """Per customer, in registration order: (the watermark before its events, its events)."""
    for i in range(n):
        t = T_START + i * SPAN_MS // n
        cus = f"cus_{i:012x}"
        events = [Event(id=f"c{i}", kind=Kind.CUSTOMER_CREATED, org="o", store="shop", time=t, customer=cus,
                        attrs={"email": f"{FIRST[i % 8].lower()}.{i}@example.com", "first_name": FIRST[i % 8],
                               "last_name": LAST[i % 6], "created_at": t}),
                  Event(id=f"v{i}", kind=Kind.PAGE_VIEWED, org="o", store="shop", time=t + 3_600_000, customer=cus)]
        orders = (i * 7919) % 10
        orders = 0 if orders < 4 else 1 + (orders - 4) % 5  # 60 % buy, 1 to 5 orders
        for k in range(orders):
            paid = t + (k + 1) * 6 * 3_600_000
            qty = 1 + (i + k) % 3
            events.append(Event(id=f"p{i}-{k}", kind=Kind.ORDER_PAID, org="o", store="shop", time=paid, amount=qty * 1990,
                                currency="EUR", customer=cus, order=f"{i}-{k}", items=(Item(f"sku{k}", qty, 1990),)))
            if (i + k) % 10 == 0:
                events.append(Event(id=f"r{i}-{k}", kind=Kind.ORDER_REFUNDED, org="o", store="shop", time=paid + 2 * 86_400_000,
                                    amount=1990, currency="EUR", order=f"{i}-{k}", refund=f"re{i}-{k}"))
        yield t - LATENESS, events


class PlainProfiles:
    """The baseline: the same rules over plain dicts, every order's facts kept."""

    def __init__(self) -> None:
        self.customers: dict[str, dict[str, Any]] = {}
        self.orders: dict[tuple[str, str], dict[str, Any]] = {}  # (store, order) -> its facts
        self.refunds: dict[tuple[str, str], int] = {}  # (store, refund) -> largest total

    def apply(self, e: Event) -> list[Record]:
        """Folds the event in; like the book, the changed customers' records (a copy of each dict: plain
        values, not core.records.Customer)."""
        changed = self._fold(e)
        return [Record("o", 0, RecordKind.CUSTOMER, k, "", {**self.customers[k], "money": [  # type: ignore[type-var]
            {"store": s, "currency": c, **m} for (s, c), m in self.customers[k]["money"].items()]}) for k in changed]

    def _fold(self, e: Event) -> list[str]:
        changed = []
        if e.customer:
            changed.append(e.customer)
            c = self.customers.get(e.customer)
            if c is None:
                c = self.customers[e.customer] = {"first_seen": e.time, "store": e.store, "registered": None,
                                                  "last_active": None, "email": None, "name": None, "money": {}}
            c["first_seen"] = min(c["first_seen"], e.time)
            if e.kind is not Kind.ORDER_REFUNDED:
                c["last_active"] = max(c["last_active"] or e.time, e.time)
            if e.kind is Kind.CUSTOMER_CREATED:
                c["registered"] = min(e.time, e.attrs.get("created_at", e.time))
                c["email"] = e.attrs["email"]
                c["name"] = f"{e.attrs['first_name']} {e.attrs['last_name']}"
        if e.kind is Kind.ORDER_PAID and e.customer:
            key = (e.store, e.order or e.id)
            if key in self.orders:
                return changed
            self.orders[key] = {"customer": e.customer, "time": e.time, "id": e.id, "amount": e.amount,
                                "currency": e.currency, "units": sum(i.qty for i in e.items)}
            m = self._money(e.customer, e.store, e.currency)
            m["orders"] += 1
            m["items"] += self.orders[key]["units"]
            m["gross"] += e.amount
            m["first"] = min(m["first"] or e.time, e.time)
            m["last"] = max(m["last"] or e.time, e.time)
        elif e.kind is Kind.ORDER_REFUNDED and e.order:
            order = self.orders.get((e.store, e.order))
            name = (e.store, e.refund or e.id)
            if order is not None and e.amount > self.refunds.get(name, 0):
                self._money(order["customer"], e.store, e.currency)["refunds"] += e.amount - self.refunds.get(name, 0)
                self.refunds[name] = e.amount
                changed.append(order["customer"])
        return changed

    def _money(self, customer: str, store: str, currency: str) -> dict[str, Any]:
        return self.customers[customer]["money"].setdefault(
            (store, currency), {"orders": 0, "items": 0, "gross": 0, "refunds": 0, "first": None, "last": None})

    def advance(self, watermark: int) -> None:
        pass

    def numbers(self, customer: str) -> tuple[int, int, int, int]:
        m = list(self.customers[customer]["money"].values())
        return (sum(x["orders"] for x in m), sum(x["items"] for x in m), sum(x["gross"] for x in m),
                sum(x["refunds"] for x in m))


def book_numbers(book: ProfileBook, customer: str) -> tuple[int, int, int, int]:
    v = book.profile(customer)
    assert v is not None
    return (v.orders, v.items, sum(m.gross for m in v.money), sum(m.refunds for m in v.money))


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(impl: str, n: int, traced: bool) -> dict[str, Any]:
    """One implementation, one measure, in this process."""
    book: Any = ProfileBook("o", "Europe/London") if impl == "book" else PlainProfiles()
    gc.collect()
    if traced:
        tracemalloc.start()
    base, base_rss = (tracemalloc.get_traced_memory()[0] if traced else 0), rss()
    events = 0
    elapsed = 0.0
    last = 0
    for watermark, batch in shop(n):
        started = time.process_time()  # CPU time: other work on the machine does not count
        book.advance(watermark)
        for e in batch:
            book.apply(e)
        elapsed += time.process_time() - started
        events += len(batch)
        last = max(last, max(e.time for e in batch))
    gc.collect()
    out: dict[str, Any] = {"impl": impl, "events": events, "us_per_event": elapsed / events * 1e6}
    open_orders = book.held()["open_orders"] if impl == "book" else 0
    if traced:
        out["traced_trailing"] = (tracemalloc.get_traced_memory()[0] - base) / n
        book.advance(last + 8 * 86_400_000)  # every order final: the steady state of an old shop
        gc.collect()
        out["traced_final"] = (tracemalloc.get_traced_memory()[0] - base) / n
        tracemalloc.stop()
        out["open_orders"] = open_orders
        return out
    out["rss_trailing"] = (rss() - base_rss) / n
    book.advance(last + 8 * 86_400_000)
    gc.collect()
    out["rss_final"] = (rss() - base_rss) / n
    started = time.process_time()
    snap = pickle.dumps(book)  # the default protocol, as Bytewax's snapshots
    out["snapshot_s"] = time.process_time() - started
    out["snapshot_bytes"] = len(snap)
    started = time.process_time()
    restored = pickle.loads(snap)
    out["restore_s"] = time.process_time() - started
    out["open_orders"] = open_orders
    if impl == "book":
        from flows.snapshot_files import _dumps
        out["files_bytes"] = len(_dumps(book.tables()))  # what the snapshot files hold of it, written once
        out.update(epoch_snapshot(book, last + 8 * 86_400_000, n))
    # the two implementations must agree on every customer: a sample of the numbers, checked in the parent
    step = max(1, n // 2000)
    numbers = book_numbers if impl == "book" else PlainProfiles.numbers
    out["sample"] = [numbers(restored, f"cus_{i:012x}") for i in range(0, n, step)]
    return out


def epoch_snapshot(book: ProfileBook, t: int, n: int, events: int = 2_000) -> dict[str, Any]:
    """What a snapshot costs per epoch with the profiles in snapshot files (flows/snapshot_files.py): the
    whole book written once, then an epoch of `events` paid orders of random customers, then its snapshot:
    the changed entries to a new file, the small rest pickled."""
    import random
    import tempfile
    from pathlib import Path

    from flows.snapshot_files import SnapshotFiles

    with tempfile.TemporaryDirectory() as tmp:
        files = SnapshotFiles(Path(tmp), "o")
        files.save(book.take_changes(), lambda *_: True, book.tables)
        rnd = random.Random(5)
        for i in range(events):
            book.apply(Event(id=f"epoch-{i}", kind=Kind.ORDER_PAID, org="o", store="s1", time=t + i, amount=1000,
                             currency="EUR", customer=f"cus_{rnd.randrange(n):012x}", order=f"epoch-{i}",
                             items=(Item("p", 1, 1000),)))
        started = time.process_time()
        files.save(book.take_changes(), lambda *_: True, book.tables, book.held_entries)
        small = pickle.dumps(book.without_tables())
        return {"epoch_snapshot_s": time.process_time() - started,
                "epoch_snapshot_bytes": files.last.bytes_written + len(small), "epoch_events": events}


def run_child(impl: str, n: int, traced: bool) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", impl, "--customers", str(n)] + (["--traced"] if traced else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--no-tracemalloc", action="store_true")
    ap.add_argument("--child", choices=("book", "plain"))
    ap.add_argument("--traced", action="store_true")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.customers, args.traced)))
        return
    n = args.customers
    print(f"customer profiles, {n:,} customers (CPython {sys.version.split()[0]}, load average {os.getloadavg()[0]:.2f})")
    timed = {impl: run_child(impl, n, False) for impl in ("plain", "book")}
    assert timed["book"]["sample"] == timed["plain"]["sample"], "the book and the baseline disagree"
    traced = {} if args.no_tracemalloc else {impl: run_child(impl, n, True) for impl in ("plain", "book")}
    b = timed["book"]
    print(f"  events: {b['events']:,}; both agree on orders, items, gross and refunds of {len(b['sample']):,} sampled customers")
    print(f"  {'':38} {'plain dicts':>14} {'ProfileBook':>14} {'ratio':>7}")

    def row(label: str, key: str, src: dict[str, dict[str, Any]], fmt: str = "{:,.0f}") -> None:
        pv, bv = src["plain"][key], src["book"][key]
        print(f"  {label:38} {fmt.format(pv):>14} {fmt.format(bv):>14} {bv / pv:7.2f}")

    if traced:
        row("B/customer, tracemalloc, trailing W", "traced_trailing", traced)
        row("B/customer, tracemalloc, all final", "traced_final", traced)
    row("B/customer, RSS delta, trailing W", "rss_trailing", timed)
    row("B/customer, RSS delta, all final", "rss_final", timed)
    row("snapshot (pickle) bytes/customer", "snapshot_bytes", {k: {"snapshot_bytes": v["snapshot_bytes"] / n} for k, v in timed.items()})
    row("snapshot (pickle.dumps), CPU s", "snapshot_s", timed, "{:.2f}")
    row("restore (pickle.loads), CPU s", "restore_s", timed, "{:.2f}")
    row("apply + advance, CPU us/event", "us_per_event", timed, "{:.2f}")
    print(f"  open orders at the end of the stream (window 7 days): {b['open_orders']:,}")
    print(f"  ProfileBook in snapshot files, everything written once (profiles, final orders, refund totals):"
          f" {b['files_bytes'] / n:,.0f} B/customer")
    print(f"  ProfileBook snapshot per epoch of {b['epoch_events']:,} paid orders (profiles in snapshot files): "
          f"{b['epoch_snapshot_s'] * 1000:.1f} ms CPU, {b['epoch_snapshot_bytes']:,} bytes, against the whole "
          f"book pickled: {b['snapshot_s'] * 1000:.0f} ms, {b['snapshot_bytes']:,} bytes")


if __name__ == "__main__":
    main()
