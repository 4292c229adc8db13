"""What the dataflow's read-model write and its 64-bit check cost per event with live segments, this
tree against a baseline tree, alternating in one run.

bench/dataflow_capacity.py's load (`--customers` first orders, then `--events` repeat orders, the 39
predefined segments, one worker, epoch `--epoch-ms`) is folded once by this tree's dataflow, and every
write its sink makes is kept. Then, `--repeat` times, alternating, a fresh process of each tree checks
those changes (flows/quarantine.py `unstorable`) and writes them (flows/sinks.py `write`, into a fresh
SQLite read model): CPU seconds of each (process time, so the load of the box moves them less than the
wall clock), per event. The baseline is the same tree unless `--baseline-tree` names another checkout
(e.g. `git worktree add /tmp/base main`); its read model must take the same change types.

    .venv/bin/python bench/dataflow_write.py [--baseline-tree /tmp/base] [--customers 5000] [--events 20000] \
        [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# Run in a fresh process of the tree under test: the writes, checked then written, CPU seconds as JSON.
REPLAY = """
import json, pickle, sys, tempfile, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from flows import quarantine, sinks
from state.sqlite_readmodel import SqliteReadModel
writes = pickle.loads(Path(sys.argv[2]).read_bytes())
changes = [c for items in writes for _, out in items for c in out.changes]
started = time.process_time()
assert quarantine.unstorable(changes) is None
checked = time.process_time()
model = SqliteReadModel(Path(tempfile.mkdtemp(dir=sys.argv[3])) / "readmodel.sqlite3")
written = time.process_time()
for items in writes:
    sinks.write(model, items)
done = time.process_time()
model.close()
print(json.dumps({"check": checked - started, "write": done - written, "changes": len(changes)}))
"""


def capture(tmp: Path, customers: int, repeat: int, epoch_ms: int) -> Path:
    """Folds the load with this tree's dataflow, keeping what each sink write got."""
    import dataflow_capacity

    from flows import sinks
    from state.sqlite_log import SqliteEventLog

    log = SqliteEventLog(tmp / "log.sqlite3")
    log.append_sync(dataflow_capacity.events(customers, repeat))
    asyncio.run(log.close())
    kept: list[list[sinks.Item]] = []
    write = sinks.write

    def keep(model: sinks.ReadModel, items: list[sinks.Item]) -> None:
        kept.append(items)
        write(model, items)

    sinks.write = keep  # type: ignore[assignment]  # the sink calls sinks.write: kept, then written as usual
    try:
        (tmp / "fold").mkdir()
        dataflow_capacity.run(tmp / "log.sqlite3", tmp / "fold", False, epoch_ms)
    finally:
        sinks.write = write  # type: ignore[assignment]  # as above
    path = tmp / "writes.pickle"
    path.write_bytes(pickle.dumps(kept))
    return path


def replay(tree: Path, writes: Path, tmp: Path) -> dict[str, float]:
    import json

    out = subprocess.run([sys.executable, "-c", REPLAY, str(tree), str(writes), str(tmp)], check=True,
                         capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out.splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline-tree", type=Path, default=REPO)
    ap.add_argument("--customers", type=int, default=5000)
    ap.add_argument("--events", type=int, default=20000, help="repeat orders after each customer's first")
    ap.add_argument("--epoch-ms", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-write-"))
    try:
        writes = capture(tmp, args.customers, args.events, args.epoch_ms)
        n = args.customers + args.events
        print(f"{n:,} events ({args.customers:,} first orders, {args.events:,} repeat orders), 39 predefined segments, "
              f"epoch {args.epoch_ms} ms; load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
        for r in range(args.repeat):
            for label, tree in (("baseline", args.baseline_tree), ("this tree", REPO)):
                m = replay(tree, writes, tmp)
                print(f"  round {r + 1} {label:<9} {m['changes']:,.0f} changes: 64-bit check {m['check']:.3f} s "
                      f"({m['check'] / n * 1e6:4.1f} us/event), read-model write {m['write']:.2f} s "
                      f"({m['write'] / n * 1e6:5.1f} us/event); load {os.getloadavg()[0]:.2f}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
