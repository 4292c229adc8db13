"""The dataflow's speed, side by side in one run (this machine is noisy; ratios hold, seconds do not).

1. Online-retail replay through the full Bytewax dataflow (SQLite log -> ledger -> SQLite read
   model, recovery on), against a plain Python loop running the same domain logic on the same events.
2. Per-event cost as history grows (synthetic orders), against a DuckDB recompute of the same
   daily figures over the whole history; memory per order kept in state, and snapshot (pickle) time.

    .venv/bin/python bench/dataflow.py [--sizes 10000,100000,1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import pickle
import shutil
import sys
import tempfile
import time
from datetime import timedelta
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bytewax.recovery import RecoveryConfig  # noqa: E402
from bytewax.testing import run_main  # noqa: E402

from core.config import parse_config  # noqa: E402
from core.events import Event, Item, Kind  # noqa: E402
from flows.dataflow import build_flow  # noqa: E402
from flows.revenue import RevenueLedger  # noqa: E402
from flows.run import ensure_recovery_dir, tune_gc  # noqa: E402
from ingest.replay import map_file  # noqa: E402
from state.log import DEFAULT_PARTITIONS  # noqa: E402
from state.sqlite_log import SqliteEventLog, SqliteLogReader  # noqa: E402
from state.sqlite_readmodel import SqliteReadModel  # noqa: E402

RETAIL = REPO.parent / "shared" / "data" / "online_retail.csv.gz"
CONFIG = parse_config('[orgs.retail]\ntimezone = "Europe/London"\ncurrency = "GBP"\ntoken = "bench-token-0123456789"\n'
                      '[orgs.retail.stores.shop]\nprovider = "events"\nsecret = "k"\n', {})
BATCH = 2000
EPOCH_SECONDS = float(os.environ.get("EPOCH_SECONDS", "1"))


def plain_loop(events: list[Event]) -> float:
    ledger = RevenueLedger("retail", "Europe/London")
    started = time.perf_counter()
    for i in range(0, len(events), BATCH):
        ledger.apply_all(events[i:i + BATCH])
    return time.perf_counter() - started


def full_dataflow(events: list[Event], workdir: Path) -> tuple[float, int]:
    log = SqliteEventLog(workdir / "log.sqlite3")
    for i in range(0, len(events), 5000):
        log.append_sync(events[i:i + 5000])
    asyncio.run(log.close())
    ensure_recovery_dir(workdir / "recovery")
    tune_gc()
    flow = build_flow(CONFIG, lambda: SqliteLogReader(workdir / "log.sqlite3"),
                      lambda: SqliteReadModel(workdir / "readmodel.sqlite3"), DEFAULT_PARTITIONS, until_caught_up=True)
    started = time.perf_counter()
    recovery = None if os.environ.get("NO_RECOVERY") else RecoveryConfig(str(workdir / "recovery"))
    run_main(flow, epoch_interval=timedelta(seconds=EPOCH_SECONDS), recovery_config=recovery)
    elapsed = time.perf_counter() - started
    model = SqliteReadModel(workdir / "readmodel.sqlite3")
    orders = len(model.records("retail", "order"))
    model.close()
    return elapsed, orders


def synthetic(n: int, start: int = 0) -> list[Event]:
    """n paid orders over ~3 years, 5,000 customers, 3 items each."""
    t0 = 1_600_000_000_000
    return [
        Event(id=f"s{i}", kind=Kind.ORDER_PAID, org="retail", store="shop", time=t0 + i * 9_000, amount=1000 + i % 977,
              currency="GBP", customer=f"c{i % 5000}", order=f"o{i}",
              items=(Item(f"p{i % 300}", 1, 300), Item(f"p{(i * 7) % 300}", 2, 350 + i % 977 // 2)))
        for i in range(start, start + n)
    ]


def growth(sizes: list[int]) -> list[tuple[int, float, float, float, float]]:
    import duckdb

    tune_gc()  # as `storepulse flows` runs
    rows = []
    for n in sizes:
        gc.collect()
        ledger = RevenueLedger("retail", "Europe/London")
        history = synthetic(n)
        tracemalloc.start()
        for i in range(0, n, BATCH):
            ledger.apply_all(history[i:i + BATCH])
        mem = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        probe = synthetic(10_000, start=n)
        started = time.perf_counter()
        for i in range(0, len(probe), BATCH):
            ledger.apply_all(probe[i:i + BATCH])
        per_event_us = (time.perf_counter() - started) / len(probe) * 1e6
        started = time.perf_counter()
        snap = pickle.dumps(ledger)
        snapshot_s = time.perf_counter() - started
        con = duckdb.connect()
        con.execute("CREATE TABLE e AS SELECT range AS i, 1600000000000 + range * 9000 AS t, 1000 + range % 977 AS amount "
                    f"FROM range({n + 10_000})")
        started = time.perf_counter()
        con.execute("SELECT CAST(to_timestamp(t / 1000) AT TIME ZONE 'Europe/London' AS DATE) d, sum(amount), count(*) "
                    "FROM e GROUP BY d").fetchall()
        duck_s = time.perf_counter() - started
        rows.append((n, per_event_us, duck_s * 1000, mem / n, snapshot_s * 1000))
        print(f"  history {n:>10,}: ledger {per_event_us:6.2f} us/event | DuckDB recompute {duck_s * 1000:8.1f} ms "
              f"| state {mem / n:6.0f} B/order | snapshot {snapshot_s * 1000:8.1f} ms ({len(snap) / 1e6:.1f} MB)", flush=True)
        del ledger, history, con
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    args = ap.parse_args()
    print("storepulse dataflow benchmark (one worker)")
    if RETAIL.exists():
        mapped = map_file(RETAIL, "online-retail", "retail", "shop")
        events = mapped.events
        loop_s = min(plain_loop(events) for _ in range(3))
        workdir = Path(tempfile.mkdtemp(prefix="sp-bench-flows-"))
        try:
            flow_s, orders = full_dataflow(events, workdir)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        print(f"online-retail: {len(events):,} events ({orders:,} order records)")
        print(f"  plain Python loop, same domain logic : {len(events) / loop_s:>10,.0f} events/s")
        print(f"  full Bytewax dataflow (log -> model) : {len(events) / flow_s:>10,.0f} events/s "
              f"(ratio {loop_s / flow_s:.2f} of the loop)")
    else:
        print(f"online-retail skipped: {RETAIL} is absent")
    print("per-event cost as history grows (synthetic paid orders, 10,000 more after the history):")
    growth([int(s) for s in args.sizes.split(",")])


if __name__ == "__main__":
    main()
