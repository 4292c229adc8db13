"""What one dataflow snapshot costs, part by part, under bench/automation_latency.py's load: 5,000
customers' first orders, then repeat orders at 2,000 events/s of event time (so every customer stays
inside the 5-minute lateness with its kept steps piling up), folded in epochs of 4,000 events (the
2 s epoch) in batches of 200, each epoch then snapshotted as flows/dataflow.py does
(flows/snapshots.py's save, timed by its parts; where the tree packs segment states ahead and merges
snapshot files a step at a time after each batch, that time is shown beside it, with its longest
step: the stall it adds to one batch). Events go through their log JSON first, as the
dataflow reads them. CPU time (process time), the dataflow's collector policy (storepulse/gc_policy.py); `wall`: the same snapshot in wall time (with
the fsyncs' waits: the stall the dataflow sees, on a quiet disk); `of it gc`: the
collector's pauses that fell inside the snapshot.

With `--baseline-tree DIR` the same load runs on the storepulse source in DIR too (a fresh process
each, alternating `--rounds` times): the same-run baseline.

    .venv/bin/python bench/snapshot_cost.py [--epochs 8] [--baseline-tree /work/ab-snap] [--rounds 2]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent
EPOCH = 4000
CUSTOMERS = 5000


def measure(epochs: int) -> list[dict[str, float]]:
    """In this process, on the storepulse source first on sys.path: one row per epoch."""
    from bench.dataflow_capacity import CONFIG
    from core.events import Event, Item, Kind, event_from_json
    from flows import snapshots
    from flows.organisation import Organisation
    from flows.snapshot_files import SnapshotFiles
    from storepulse.gc_policy import DATAFLOW, settle

    t0 = 1_796_600_000_000
    org = Organisation.new(CONFIG.orgs["acme"])
    files = SnapshotFiles(Path(tempfile.mkdtemp(prefix="sp-bench-snapcost-")), "acme")
    stepwise = hasattr(files, "merge_step")  # as flows/dataflow.py does (not in older trees)
    if stepwise:
        files.stepwise = True
    settle(DATAFLOW)
    collecting = {"since": 0.0, "seconds": 0.0}
    pauses: list[float] = []

    def collector(phase: str, info: dict[str, int]) -> None:  # the cyclic collector's pauses, whatever part they hit
        if phase == "start":
            collecting["since"] = time.process_time()
        else:
            pauses.append(time.process_time() - collecting["since"])
            collecting["seconds"] += pauses[-1]
    gc.callbacks.append(collector)
    rows = []
    for k in range(epochs):
        batch = []
        for i in range(k * EPOCH, (k + 1) * EPOCH):
            amount = 15_000 if i >= CUSTOMERS and i % 10 == 0 else 2_000
            e = Event(id=f"e{i}", kind=Kind.ORDER_PAID, org="acme", store="site", time=t0 + i // 2, amount=amount,
                      currency="EUR", order=f"o{i}", customer=f"c{i % CUSTOMERS}", items=(Item("mug", 1, amount),))
            batch.append(event_from_json(e.to_json()))
        row: dict[str, float] = {"ahead": 0.0, "longest step": 0.0}
        ahead = getattr(org, "pack_ahead", None)  # as flows/dataflow.py does after each batch (not in older trees)
        for j in range(0, EPOCH, 200):
            part = batch[j:j + 200]
            org.apply_all(part, part[-1].time + 50)
            if ahead is not None:
                t = time.process_time()
                ahead()
                if stepwise:
                    files.merge_step(org.keeps)
                step = time.process_time() - t
                row["ahead"] += step
                row["longest step"] = max(row.get("longest step", 0.0), step)
        collecting["seconds"] = 0.0
        start, wall = time.process_time(), time.perf_counter()
        changes: dict[str, dict[object, object]] = {}
        for book in org._tabled():
            t = time.process_time()
            changes.update(book.take_changes())
            row[f"take {type(book).__name__}"] = time.process_time() - t
        t = time.process_time()
        listed = files.save(changes, org.keeps, org.tables, org.held_entries)
        row["files.save"] = time.process_time() - t
        t = time.process_time()
        data = pickle.dumps((snapshots.FORMAT, org.without_tables(), listed), protocol=pickle.HIGHEST_PROTOCOL)
        row["pickle rest"] = time.process_time() - t
        row["total"] = time.process_time() - start
        row["wall"] = time.perf_counter() - wall  # with the fsyncs' waits, which CPU time leaves out
        row["of it gc"] = collecting["seconds"]
        row["customers changed"] = len(changes.get(org.segments.table, {}))
        row["steps held"] = sum(len(c.steps) for c in org.segments.customers.live.values())
        row["MB written"] = (files.last.bytes_written + len(data)) / 1e6
        rows.append(row)
    rows[-1]["gc pauses"] = len(pauses)
    rows[-1]["gc longest"] = max(pauses, default=0.0)
    rows[-1]["gc seconds"] = sum(pauses)
    return rows


def run(tree: Path, epochs: int) -> list[dict[str, float]]:
    code = (f"import sys, json; sys.path[:0] = [{str(tree)!r}, {str(HERE / 'bench')!r}]; "
            f"from snapshot_cost import measure; print(json.dumps(measure({epochs})))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         cwd=tree, env={**os.environ, "PYTHONPATH": str(tree)})
    rows: list[dict[str, float]] = json.loads(out.stdout.splitlines()[-1])
    return rows


def show(name: str, rows: list[dict[str, float]]) -> None:
    print(f"--- {name}: ms of CPU per snapshot")
    keys = [k for k in rows[0] if k not in ("customers changed", "steps held", "MB written", "ahead", "gc pauses",
                                            "gc longest", "gc seconds", "longest step")]
    print("  epoch  changed  steps  " + "  ".join(f"{k.removeprefix('take '):>14}" for k in keys) + "  MB written")
    for n, r in enumerate(rows):
        print(f"  {n:5}  {r['customers changed']:7,.0f}  {r['steps held']:5,.0f}  "
              + "  ".join(f"{r[k] * 1e3:14.1f}" for k in keys) + f"  {r['MB written']:10.1f}"
              + f"  (+{r['ahead'] * 1e3:.1f} ms ahead over the epoch's 20 batches, the longest {r['longest step'] * 1e3:.1f})")
    late = rows[1:]  # the first epoch creates every customer: not the steady state
    print(f"  mean of epochs 1-{len(rows) - 1}: total {sum(r['total'] for r in late) / len(late) * 1e3:.1f} ms CPU, "
          f"{sum(r['wall'] for r in late) / len(late) * 1e3:.1f} ms wall "
          f"(+{sum(r['ahead'] for r in late) / len(late) * 1e3:.1f} ms packed ahead), "
          f"{sum(r['MB written'] for r in late) / len(late):.1f} MB; the collector paused {rows[-1]['gc pauses']:.0f} "
          f"times over the run (batches included), {rows[-1]['gc seconds'] * 1e3:.0f} ms in all, the longest"
          f" {rows[-1]['gc longest'] * 1e3:.0f} ms")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--baseline-tree", type=Path, help="storepulse source to run the same load on, alternating")
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    for n in range(args.rounds):
        trees = [("this tree", HERE)] + ([("baseline tree", args.baseline_tree.resolve())] if args.baseline_tree else [])
        for name, tree in trees:
            show(f"{name}, round {n + 1}", run(tree, args.epochs))


if __name__ == "__main__":
    main()
