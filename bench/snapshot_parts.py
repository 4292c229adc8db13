"""What each epoch's snapshot writes, part by part, for bench/automation_latency.py's load (5,000
customers' first orders, then repeat orders; 39 predefined segments), folded in epochs of 4,000 events
(2 s at 2,000/s) and saved through flows/snapshots.py into real snapshot files after each. Beside it,
in the same run, the baseline: what the e-mail attribution book pickled whole into every snapshot
before its orders and touches became tables. Then a restore of the segment states, with the cyclic
collector running and paused (flows/snapshots.py pauses it), alternated.

    .venv/bin/python bench/snapshot_parts.py [--customers 5000] [--events 20000] [--repeat 60]
"""

from __future__ import annotations

import argparse
import gc
import pickle
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dataflow_capacity import CONFIG, events
from flows.organisation import Organisation
from flows.snapshot_files import SnapshotFiles


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--events", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=60, help="the segment states repeated this many times for the restore")
    args = ap.parse_args()
    org = Organisation.new(CONFIG.orgs["acme"])
    evs = events(args.customers, args.events)
    root = Path(tempfile.mkdtemp(prefix="sp-bench-snap-"))
    files = SnapshotFiles(root, "acme")
    print(f"{len(evs):,} events, epochs of 4,000; per epoch (KB):")
    print("  events  pickled part  files written  attribution whole (before)  largest changed tables")
    for i in range(0, len(evs), 4000):
        batch = evs[i:i + 4000]
        org.apply_all(batch, batch[-1].time + 1000)
        whole = len(pickle.dumps(org.shoppers.attribution, protocol=pickle.HIGHEST_PROTOCOL))
        changes = org.take_changes()
        sizes = sorted(((len(pickle.dumps(t, protocol=pickle.HIGHEST_PROTOCOL)), name) for name, t in changes.items()),
                       reverse=True)
        before = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
        listed = files.save(changes, org.keeps, org.tables, org.held_entries)
        written = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) - before
        part = len(pickle.dumps((1, org.without_tables(), listed), protocol=pickle.HIGHEST_PROTOCOL))
        print(f"  {i + len(batch):6,}  {part / 1024:12,.0f}  {max(written, 0) / 1024:13,.0f}  {whole / 1024:26,.0f}  "
              + ", ".join(f"{name} {size / 1024:,.0f}" for size, name in sizes[:3]))
    s = org.segments
    packed = s.tables()[s.table]
    big = {f"{k}#{n}": v for n in range(args.repeat) for k, v in packed.items()}
    print(f"restoring {len(big):,} segment states (the run's, repeated), µs a customer:")
    for mode in ("collector running", "collector paused", "collector running", "collector paused"):
        gc.collect()
        if mode == "collector paused":
            gc.disable()
        t = time.process_time()
        restored = s.without_tables().with_tables({s.table: big})
        took = time.process_time() - t
        gc.enable()
        print(f"  {mode}: {took / len(big) * 1e6:.1f}")
        del restored


if __name__ == "__main__":
    main()
