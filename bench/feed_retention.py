"""What the change feed's retention (state/feed_retention.py) costs the SQLite read model's writer, live-like:
`--writes` small writes (12 day buckets each, one feed row of ~1.9 KB: about one event's worth with the
predefined segments) into a read model whose feed already holds `--prefill-mib` of rows, so that the
trims run as in steady state. CPU seconds of the writes (process time), per write, each variant in a
fresh process and a fresh file, alternating `--repeat` times:

- `trim`: this tree as shipped (KEEP_BYTES 192 MiB, a trim every 16 MiB published);
- `no trim`: this tree with trimming off (the `upto` bookkeeping only): the same-run baseline of the deletion;
- `baseline tree`: `--baseline-tree`'s read model (e.g. main's, before retention), if given.

    .venv/bin/python bench/feed_retention.py [--writes 40000] [--prefill-mib 200] [--repeat 3] \
        [--baseline-tree /work/main]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# Run in a fresh process of the tree under test: argv = tree, file, writes, prefill bytes, trim ("default",
# "off" or "none": a tree without retention). Prints the CPU seconds of the writes and the feed's final size.
RUN = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from core.changes import DAY, Bucket
from state.sqlite_readmodel import SqliteReadModel
path, writes, prefill, trim = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
if trim == "none":
    model = SqliteReadModel(path)
elif trim == "off":
    model = SqliteReadModel(path, trim_bytes=1 << 62)
else:
    model = SqliteReadModel(path)
body = b"[" + b"x" * 1900 + b"]"
n = prefill // len(body)
columns = [r[1] for r in model._conn.execute("PRAGMA table_info(changes)")]
if "upto" in columns:
    rows = [("acme", v, body, v * len(body)) for v in range(1, n + 1)]
    model._conn.executemany("INSERT INTO changes (org, version, body, upto) VALUES (?, ?, ?, ?)", rows)
else:
    model._conn.executemany("INSERT INTO changes (org, version, body) VALUES (?, ?, ?)",
                            [("acme", v, body) for v in range(1, n + 1)])
model._conn.commit()
batches = [[Bucket("acme", n + i + 1, DAY, f"2026-{1 + d // 28:02d}-{1 + d % 28:02d}", "s", "EUR", 100 * i, 0, i, i, i)
            for d in range(12)] for i in range(writes)]
t = time.process_time()
for b in batches:
    model.write(b)
cpu = time.process_time() - t
rows, kept = model._conn.execute("SELECT count(*), sum(length(body)) FROM changes").fetchone()
print(json.dumps({"cpu": cpu, "rows": rows, "kept": kept}))
"""


def run(tree: Path, writes: int, prefill: int, trim: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="feed-retention-") as tmp:
        out = subprocess.run([sys.executable, "-c", RUN, str(tree), str(Path(tmp) / "rm.sqlite3"), str(writes),
                              str(prefill), trim], check=True, capture_output=True, text=True).stdout
    result: dict[str, float] = json.loads(out)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--writes", type=int, default=40_000)
    ap.add_argument("--prefill-mib", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline-tree", type=Path)
    args = ap.parse_args()
    variants = [("trim", REPO, "default"), ("no trim", REPO, "off")]
    if args.baseline_tree:
        variants.append(("baseline tree", args.baseline_tree, "none"))
    print(f"{args.writes} writes of 12 buckets (~1.9 KB of feed each) after {args.prefill_mib} MiB of feed rows")
    for r in range(args.repeat):
        for name, tree, trim in variants:
            got = run(tree, args.writes, args.prefill_mib << 20, trim)
            load = os.getloadavg()[0]
            print(f"round {r + 1} {name:>13}: {got['cpu'] / args.writes * 1e6:6.1f} us CPU/write, "
                  f"feed kept {got['rows']:>7} rows {got['kept'] / 2**20:6.1f} MiB (load {load:.1f})", flush=True)


if __name__ == "__main__":
    main()
