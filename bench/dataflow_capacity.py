"""The dataflow's capacity for bench/automation_latency.py's load, under configurations side by side in
one run, alternating: the read model written by the worker itself (flows/sinks.py, the default) or by a
writer process beside it (flows/write_behind.py, `--write-behind`), and the epoch (`--epoch-ms`).

The load of bench/automation_latency.py, prefilled in an SQLite log: `--customers` first orders, then
`--events` repeat orders over the same customers (one in ten over 100.00), with the 39 predefined
segments live. The full dataflow (one worker, recovery on) folds the log to its end.
Printed per mode: events/s of the whole log (wall clock), the CPU time of the dataflow process and of
its writer process, per event, and the dataflow's own counters (read-model write and snapshot time).
The events/s is the stage's capacity: at a rate above it, a backlog builds between the log and the
webhook.

    .venv/bin/python bench/dataflow_capacity.py [--customers 5000] [--events 20000] [--repeat 3] \
        [--configs "sync:2000,behind:2000,sync:10000"]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bytewax.recovery import RecoveryConfig  # noqa: E402
from bytewax.testing import run_main  # noqa: E402
from prometheus_client import REGISTRY  # noqa: E402

from core.config import parse_config  # noqa: E402
from core.events import Event, Item, Kind  # noqa: E402
from flows.dataflow import build_flow  # noqa: E402
from flows.recovery import ensure_recovery_dir  # noqa: E402
from flows.write_behind import ModelAt  # noqa: E402
from state.log import DEFAULT_PARTITIONS  # noqa: E402
from state.sqlite_log import SqliteEventLog, SqliteLogReader  # noqa: E402
from state.sqlite_readmodel import SqliteReadModel  # noqa: E402

CONFIG = parse_config('[orgs.acme]\ntimezone = "Europe/Berlin"\ncurrency = "EUR"\ntoken = "bench-token-0123456789abcdef"\n'
                      '[orgs.acme.stores.site]\nprovider = "events"\nsecret = "k"\n', {})
T0 = 1_796_600_000_000


def events(customers: int, repeat: int) -> list[Event]:
    out = []
    for n in range(customers + repeat):
        amount = 15_000 if n >= customers and n % 10 == 0 else 2_000
        out.append(Event(id=f"e{n}", kind=Kind.ORDER_PAID, org="acme", store="site", time=T0 + n, amount=amount,
                         currency="EUR", order=f"o{n}", customer=f"c{n % customers}", items=(Item("mug", 1, amount),)))
    return out


def counter(name: str) -> float:
    return REGISTRY.get_sample_value(f"storepulse_flow_{name}") or 0.0


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run(log: Path, work: Path, behind: bool, epoch_ms: int) -> dict[str, float]:
    shutil.copy(log, work / "log.sqlite3")
    ensure_recovery_dir(work / "recovery", 1)
    flow = build_flow(CONFIG, lambda: SqliteLogReader(work / "log.sqlite3"),
                      lambda: SqliteReadModel(work / "readmodel.sqlite3"), DEFAULT_PARTITIONS, until_caught_up=True,
                      files_dir=work / "recovery" / "segments", write_behind=ModelAt(work) if behind else None)
    names = ("write_seconds_total", "snapshot_seconds_total", "snapshots_total", "events_total")
    before = {n: counter(n) for n in names}
    wall, cpu, child = time.perf_counter(), time.process_time(), children_cpu()
    run_main(flow, epoch_interval=timedelta(milliseconds=epoch_ms), recovery_config=RecoveryConfig(str(work / "recovery")))
    out = {n: counter(n) - before[n] for n in names}
    # the writer is a child process, waited for when the dataflow closes its sink: its CPU is in RUSAGE_CHILDREN
    out |= {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "writer_cpu": children_cpu() - child}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--events", type=int, default=20000, help="repeat orders after each customer's first")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--configs", default="sync:2000,behind:2000",
                    help="comma-separated writer:epoch-ms; writer sync (the worker writes: the default) or behind (a writer "
                         "process); the first is the baseline")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-wb-"))
    try:
        log = SqliteEventLog(tmp / "log.sqlite3")
        log.append_sync(events(args.customers, args.events))
        asyncio.run(log.close())
        n = args.customers + args.events
        print(f"{n:,} events ({args.customers:,} first orders, {args.events:,} repeat orders), 39 predefined segments, "
              f"one worker; load average {os.getloadavg()[0]:.2f} at the start ({os.cpu_count()} cores)")
        configs = [(w, int(e)) for w, e in (c.split(":") for c in args.configs.split(","))]
        for r in range(args.repeat):
            for i, (writer, epoch_ms) in enumerate(configs):
                work = tmp / f"run{r}-{i}"
                work.mkdir()
                m = run(tmp / "log.sqlite3", work, writer == "behind", epoch_ms)
                shutil.rmtree(work, ignore_errors=True)
                label = f"{'writer process' if writer == 'behind' else 'worker writes'}, epoch {epoch_ms} ms" + \
                    (" (baseline)" if i == 0 else "")
                print(f"  round {r + 1} {label:<43} {n / m['wall']:>7,.0f} events/s  dataflow CPU "
                      f"{m['cpu'] / n * 1e6:4.0f} us/event, writer CPU {m['writer_cpu'] / n * 1e6:4.0f} us/event; "
                      f"read-model write {m['write_seconds_total']:.2f} s, {m['snapshots_total']:.0f} snapshots "
                      f"{m['snapshot_seconds_total']:.2f} s; load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
