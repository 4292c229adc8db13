"""The dataflow's speed, side by side in one run (this machine is noisy; ratios hold, seconds do not).

1. Online-retail replay through the full Bytewax dataflow (SQLite log -> organisation state ->
   SQLite read model, recovery and segment files on, one worker), against a plain Python loop that
   runs the same domain logic (decode the log's bytes, then the organisation: ledger and shoppers'
   books) over the same events, with no Bytewax, no log and no read model. Also shown: the
   ledger alone over decoded events (the loop this benchmark used to compare with), and where the
   dataflow's time goes (log reads, read-model writes and snapshots are timed by the dataflow's own
   counters, flows/metrics.py). Each side runs --repeat times, alternating; the best run counts.
2. Per-event cost as history grows: the revenue ledger with the refund horizon (eviction) and its
   segment store, after 10k, 1M and 10M synthetic paid orders (one every 30 s, so 10M span 9.5 years
   and the horizon holds about a million), then 10,000 more in epochs of 2,000, each followed by a
   snapshot (three times; the best counts): µs per event, the snapshot's time and bytes per epoch,
   and what a snapshot of the whole state costs (what every epoch cost when the state was one
   pickled object). Beside it, DuckDB recomputing the same daily figures over the whole history,
   checked equal to the ledger's (the day buckets it emitted, as a read model keeps them).

    .venv/bin/python bench/dataflow.py [--sizes 10000,1000000,10000000] [--repeat 3] [--epoch-ms 2000] [--segments 61]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pickle
import resource
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need what is set up above (the repository on sys.path, run as a script).
from bytewax.recovery import RecoveryConfig  # noqa: E402
from bytewax.testing import run_main  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402

from core.config import parse_config  # noqa: E402
from core.events import Event, Item, Kind, event_from_json  # noqa: E402
from core.limits import problem  # noqa: E402
from core.records import Order  # noqa: E402
from flows.dataflow import build_flow  # noqa: E402
from flows.organisation import ALLOWED_LATENESS_MS, Organisation  # noqa: E402
from flows.quarantine import unstorable  # noqa: E402
from flows.recovery import ensure_recovery_dir  # noqa: E402
from flows.revenue import DEFAULT_HORIZON_MS, RevenueLedger  # noqa: E402
from flows.run import RECOVERY_PARTITIONS  # noqa: E402
from flows.snapshot_files import SnapshotFiles  # noqa: E402
from flows.sources import BATCH  # noqa: E402
from ingest.replay import map_file  # noqa: E402
from state.log import DEFAULT_PARTITIONS  # noqa: E402
from state.sqlite_log import SqliteEventLog, SqliteLogReader  # noqa: E402
from state.sqlite_readmodel import SqliteReadModel  # noqa: E402
from storepulse.gc_policy import DATAFLOW, settle  # noqa: E402

RETAIL = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
CONFIG = parse_config('[orgs.retail]\ntimezone = "Europe/London"\ncurrency = "GBP"\ntoken = "bench-token-0123456789"\n'
                      '[orgs.retail.stores.shop]\nprovider = "events"\nsecret = "k"\n', {})
EPOCH_EVENTS = 2000  # growth: events between two snapshots
SPACING_MS = 30_000
PROBES = 3
T0 = 1_600_000_000_000


def cpu() -> float:
    return time.process_time()


# --- 1. online-retail ------------------------------------------------------------------------------


def write_log(events: list[Event], path: Path) -> list[bytes]:
    """The events into a SQLite log; returns their bodies as the log holds them, in log order."""
    log = SqliteEventLog(path)
    for i in range(0, len(events), 5000):
        log.append_sync(events[i:i + 5000])
    asyncio.run(log.close())
    reader = SqliteLogReader(path)
    bodies: list[bytes] = []
    for p in range(DEFAULT_PARTITIONS):
        after = None
        while rows := reader.read(p, after, BATCH):
            bodies += [b for _, b in rows]
            after = rows[-1][0]
    reader.close()
    return bodies


def plain_loop(bodies: list[bytes]) -> tuple[float, float]:
    """Decode + the organisation's domain logic, batch by batch as the source reads, with the checks
    that keep a poison event from stopping it (core/limits.py, flows/quarantine.py): (wall s, CPU s)."""
    org = Organisation.new(CONFIG.orgs["retail"])
    w, c = time.perf_counter(), cpu()
    for i in range(0, len(bodies), BATCH):
        events = [event_from_json(b) for b in bodies[i:i + BATCH]]
        unstorable(org.apply_all([e for e in events if problem(e) is None]))
    return time.perf_counter() - w, cpu() - c


def ledger_loop(events: list[Event]) -> tuple[float, float]:
    """The old baseline: the ledger alone over decoded events."""
    ledger = RevenueLedger("retail", "Europe/London")
    w, c = time.perf_counter(), cpu()
    for i in range(0, len(events), BATCH):
        ledger.apply_all(events[i:i + BATCH])
    return time.perf_counter() - w, cpu() - c


def floors(bodies: list[bytes], log: Path, workdir: Path) -> None:
    """CPU µs per event of each step alone, in this process: what bounds one worker's rate."""
    from flows.shoppers import Shoppers

    def per_event(f, repeat: int = 3) -> float:
        best = float("inf")
        for _ in range(repeat):
            gc.collect()
            c = time.thread_time()
            f()
            best = min(best, time.thread_time() - c)
        return best / len(bodies) * 1e6

    import orjson

    n = len(bodies)
    decoded = [event_from_json(b) for b in bodies]
    reader = SqliteLogReader(log)
    steps: dict[str, float] = {}

    def read() -> None:
        for p in range(DEFAULT_PARTITIONS):
            after = None
            while rows := reader.read(p, after, BATCH):
                after = rows[-1][0]

    steps["log read (SQLite)"] = per_event(read)
    steps["orjson.loads of the body"] = per_event(lambda: [orjson.loads(b) for b in bodies])
    steps["event_from_json (Event + Items)"] = per_event(lambda: [event_from_json(b) for b in bodies])
    steps["range check (core.limits.problem)"] = per_event(lambda: [problem(e) for e in decoded])

    def ledger() -> None:
        led = RevenueLedger("retail", "Europe/London")
        for i in range(0, n, BATCH):
            for e in decoded[i:i + BATCH]:
                led.fold(e, e.time - ALLOWED_LATENESS_MS)
            led.flush(led.version)

    steps["revenue ledger"] = per_event(ledger)
    for book in ("carts", "journey", "attribution", "profiles"):
        def one(book: str = book) -> None:
            b = getattr(Shoppers("retail", "Europe/London"), book)
            for e in decoded:
                b.apply(e)
                b.advance(e.time - ALLOWED_LATENESS_MS)
        steps[f"{book} book"] = per_event(one)
    org = Organisation.new(CONFIG.orgs["retail"])
    changes = [org.apply_all(decoded[i:i + BATCH]) for i in range(0, n, BATCH)]
    steps["storable check of the changes (flows.quarantine)"] = per_event(lambda: [unstorable(c) for c in changes])

    def write() -> None:
        path = workdir / f"floor-{time.monotonic_ns()}.sqlite3"
        model = SqliteReadModel(path)
        for c in changes:
            model.write(c)
        model.close()

    steps[f"read-model write ({sum(map(len, changes)) / n:.2f} changes per event)"] = per_event(write, 1)
    print("  what each step costs alone, CPU µs per event (the rate it would cap one worker at):")
    for name, us in steps.items():
        print(f"    {name:52s} {us:7.1f} µs  ({1e6 / us:>9,.0f}/s)")


def counters() -> dict[str, float]:
    names = ("storepulse_flow_read_seconds_total", "storepulse_flow_write_seconds_total",
             "storepulse_flow_snapshot_seconds_total", "storepulse_flow_snapshot_bytes_total",
             "storepulse_flow_snapshots_total")
    return {n: REGISTRY.get_sample_value(n) or 0.0 for n in names}


def full_dataflow(log: Path, workdir: Path, epoch: timedelta) -> tuple[float, float, int, dict[str, float]]:
    """The whole dataflow over a copy of the log: (wall s, CPU s, order records, counters used)."""
    shutil.copy(log, workdir / "log.sqlite3")
    ensure_recovery_dir(workdir / "recovery", RECOVERY_PARTITIONS)
    flow = build_flow(CONFIG, lambda: SqliteLogReader(workdir / "log.sqlite3"),
                      lambda: SqliteReadModel(workdir / "readmodel.sqlite3"), DEFAULT_PARTITIONS, until_caught_up=True,
                      files_dir=workdir / "recovery" / "segments")
    before = counters()
    w, c = time.perf_counter(), cpu()
    run_main(flow, epoch_interval=epoch, recovery_config=RecoveryConfig(str(workdir / "recovery")))
    wall, used = time.perf_counter() - w, cpu() - c
    after = counters()
    model = SqliteReadModel(workdir / "readmodel.sqlite3")
    orders = len(model.records("retail", Order))
    model.close()
    return wall, used, orders, {k: after[k] - before[k] for k in after}


def retail(repeat: int, epoch: timedelta, segments: int = 0) -> None:
    from bench.segments_live import extra_segments
    from core.definitions import put_event

    # --segments N: N more customer segments (beside the 39 predefined), defined by control events at the
    # head of the log, so the loop and the dataflow both keep them live (issue 9's "100 segments")
    defined = [put_event("retail", "segment", f"x{i}", {"name": f"x{i}", "rule": r}, 0, f"d{i}")
               for i, r in enumerate(extra_segments(segments))]
    events = defined + map_file(RETAIL, "online-retail", "retail", "shop").events
    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-flows-"))
    try:
        bodies = write_log(events, tmp / "log.sqlite3")
        decoded = [event_from_json(b) for b in bodies]
        loops, ledgers, flows = [], [], []
        for r in range(repeat):
            gc.collect()
            loops.append(plain_loop(bodies))
            ledgers.append(ledger_loop(decoded))
            run = tmp / f"run{r}"
            run.mkdir()
            flows.append(full_dataflow(tmp / "log.sqlite3", run, epoch))
            shutil.rmtree(run, ignore_errors=True)
        n = len(bodies)
        loop_w, loop_c = min(x[0] for x in loops), min(x[1] for x in loops)
        led_w, led_c = min(x[0] for x in ledgers), min(x[1] for x in ledgers)
        best = min(flows, key=lambda x: x[0])
        flow_w, flow_c, orders, k = best
        flow_cmin = min(x[1] for x in flows)
        print(f"online-retail: {n:,} events, {sum(len(b) for b in bodies) / n:,.0f} B each on average "
              f"({orders:,} order records), best of {repeat}; wall clock, and CPU time of this process")
        print(f"  plain Python loop: decode + organisation (ledger, shoppers) {n / loop_w:>9,.0f} events/s  "
              f"(CPU {n / loop_c:>9,.0f}/s)")
        print(f"  full Bytewax dataflow (log -> state -> read model)         {n / flow_w:>9,.0f} events/s  "
              f"(CPU {n / flow_cmin:>9,.0f}/s)   ratio {loop_w / flow_w:.2f} of the loop (CPU {loop_c / flow_cmin:.2f})")
        print(f"  for reference, the ledger alone over decoded events         {n / led_w:>9,.0f} events/s  "
              f"(CPU {n / led_c:>9,.0f}/s)")
        read, write, snap = (k["storepulse_flow_read_seconds_total"], k["storepulse_flow_write_seconds_total"],
                             k["storepulse_flow_snapshot_seconds_total"])
        print(f"  where the dataflow's {flow_w:.2f} s went (its best run): log reads {read:.2f} s, read-model writes "
              f"{write:.2f} s, {k['storepulse_flow_snapshots_total']:.0f} snapshots {snap:.2f} s "
              f"({k['storepulse_flow_snapshot_bytes_total'] / 1e6:.1f} MB), decode + domain + Bytewax "
              f"{flow_w - read - write - snap:.2f} s (the loop's decode + domain: {loop_w:.2f} s)")
        for i, (lw, fw) in enumerate(zip([x[0] for x in loops], [x[0] for x in flows])):
            print(f"    run {i + 1}: loop {n / lw:>9,.0f}/s, dataflow {n / fw:>9,.0f}/s, ratio {lw / fw:.2f}")
        floors(bodies, tmp / "log.sqlite3", tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# --- 2. growth -------------------------------------------------------------------------------------


def synthetic(start: int, n: int) -> list[Event]:
    """Paid orders start..start+n-1, one every SPACING_MS, 5,000 customers, two lines each."""
    return [
        Event(id=f"s{i}", kind=Kind.ORDER_PAID, org="retail", store="shop", time=T0 + i * SPACING_MS,
              amount=1000 + i % 977, currency="GBP", customer=f"c{i % 5000}", order=f"o{i}",
              items=(Item(f"p{i % 300}", 1, 300), Item(f"p{(i * 7) % 300}", 2, 350 + i % 977 // 2)))
        for i in range(start, start + n)
    ]


def fold(ledger: RevenueLedger, events: list[Event], shown: dict) -> None:
    """What the organisation does for the ledger: the event-time watermark, then a flush; the day
    buckets flushed are kept as a read model would."""
    for e in events:
        ledger.fold(e, e.time - ALLOWED_LATENESS_MS)
    for c in ledger.flush(ledger.version):
        if getattr(c, "grain", None) == "day":
            shown[c.start] = (c.gross, c.paid_orders, c.items)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def growth(sizes: list[int]) -> None:
    import duckdb

    print(f"per-event cost as history grows: synthetic paid orders one every {SPACING_MS // 1000} s, refund horizon "
          f"{DEFAULT_HORIZON_MS // 86_400_000} days; then {PROBES} x 10,000 more in epochs of {EPOCH_EVENTS:,}, a snapshot "
          "after each (best of the three)")
    for n in sizes:
        gc.collect()
        tmp = Path(tempfile.mkdtemp(prefix="sp-bench-growth-"))
        ledger, shown = RevenueLedger("retail", "Europe/London"), {}
        store = SnapshotFiles(tmp, "retail")
        w = time.perf_counter()
        for i in range(0, n, 50_000):
            fold(ledger, synthetic(i, min(50_000, n - i)), shown)
        build_s = time.perf_counter() - w
        # The whole state once, as the first snapshot (and as every snapshot cost before segments).
        w = time.perf_counter()
        store.save(ledger.take_changes(), lambda t, k, v: True, ledger.tables)
        full_s, full_b = time.perf_counter() - w, store.last.bytes_written
        folds, snaps, snap_b = [], [], []
        for probe_start in range(n, n + PROBES * 10_000, 10_000):  # PROBES times 10,000 more: the best counts
            fold_s = snap_s = 0.0
            for i in range(probe_start, probe_start + 10_000, EPOCH_EVENTS):
                probe = synthetic(i, EPOCH_EVENTS)
                w = time.perf_counter()
                fold(ledger, probe, shown)
                fold_s += time.perf_counter() - w
                w = time.perf_counter()
                small = pickle.dumps(ledger.without_tables())
                store.save(ledger.take_changes(), lambda t, k, v, led=ledger: led.keeps(t, k, v, led.watermark), ledger.tables)
                snap_s += time.perf_counter() - w
                snap_b.append(len(small) + store.last.bytes_written)
            folds.append(fold_s / 10_000)
            snaps.append(snap_s / (10_000 // EPOCH_EVENTS))
        total = n + PROBES * 10_000
        con = duckdb.connect()
        con.execute(f"CREATE TABLE e AS SELECT range AS i, {T0} + range * {SPACING_MS} AS t, 1000 + range % 977 AS amount "
                    f"FROM range({total})")
        w = time.perf_counter()
        rows = con.execute("SELECT CAST(timezone('Europe/London', to_timestamp(t / 1000)) AS DATE) AS d, sum(amount), "
                           "count(*), 3 * count(*) FROM e GROUP BY d").fetchall()
        duck_s = time.perf_counter() - w
        same = {r[0].isoformat(): (int(r[1]), r[2], r[3]) for r in rows} == shown
        held = ledger.held()
        print(f"  history {n:>10,}: ledger {min(folds) * 1e6:5.2f} us/event | snapshot per epoch "
              f"{min(snaps) * 1000:6.1f} ms, {sum(snap_b) / len(snap_b) / 1e3:7.1f} kB | whole state {full_s * 1000:7.0f} ms, "
              f"{full_b / 1e6:6.1f} MB | held {held['orders']:>9,} orders {held['buckets']:>6,} buckets | DuckDB recompute "
              f"{duck_s * 1000:6.0f} ms, same figures: {same} | history built in {build_s:.0f} s, max RSS {rss_mb():,.0f} MB",
              flush=True)
        del ledger, store, con
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,1000000,10000000")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--epoch-ms", type=int, default=2000)
    ap.add_argument("--segments", type=int, default=0, help="customer segments to define beside the predefined ones")
    args = ap.parse_args()
    settle(DATAFLOW)  # as `storepulse flows` runs
    print(f"storepulse dataflow benchmark (one worker), load average {os.getloadavg()[0]:.2f} at start")
    if RETAIL.exists():
        retail(args.repeat, timedelta(milliseconds=args.epoch_ms), args.segments)
    else:
        print(f"online-retail skipped: {RETAIL} is absent")
    if args.sizes:
        growth([int(s) for s in args.sizes.split(",")])
    print(f"load average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
