"""What the SQLite read model's day stamps (`record_days`, kept by triggers: docs/read_speed.md) cost
the writer: N orders through `SqliteReadModel.write` in batches of 500 as the dataflow's sink writes
them, then the same orders again at a newer version, with the triggers and, as the same-run baseline,
without them (dropped on a fresh file). Alternating, twice each.

    .venv/bin/python bench/readmodel_write.py [--orders 100000]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

# The E402 noqa below: these imports need what is set up above (the repository on sys.path, run as a script).
import read_api  # noqa: E402

from core.changes import Record  # noqa: E402
from core.records import Order  # noqa: E402
from state.sqlite_readmodel import SqliteReadModel  # noqa: E402


def orders(n: int) -> list[Record[Order]]:
    rng, days = random.Random(1), read_api.Days(read_api.NOW - read_api.timedelta(days=732), 734)
    registered = sorted(read_api.NOW_MS - 3_600_000 - rng.randrange(2 * 365 * read_api.DAY_MS) for _ in range(n))
    out: list[Record[Order]] = []
    for c in read_api.orders_and_carts(rng, read_api.Shop(), registered, list(range(n)), days, 1):
        if isinstance(c, Record) and isinstance(c.value, Order):
            out.append(c)
    return out


def run(path: Path, changes: list[Record[Order]], stamps: bool) -> tuple[float, float]:
    model = SqliteReadModel(path)
    if not stamps:
        model._conn.executescript("DROP TRIGGER record_days_insert; DROP TRIGGER record_days_update;")
    t = time.perf_counter()
    for i in range(0, len(changes), 500):
        model.write(changes[i:i + 500])
    new = time.perf_counter() - t
    again = [Record(c.org, 2, c.kind, c.key, c.day, c.value) for c in changes]
    t = time.perf_counter()
    for i in range(0, len(again), 500):
        model.write(again[i:i + 500])
    model.close()
    return new, time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    args = parser.parse_args()
    changes = orders(args.orders)
    with tempfile.TemporaryDirectory() as tmp:
        for n, stamps in enumerate((False, True, False, True)):
            new, upd = run(Path(tmp) / f"{n}.sqlite3", changes, stamps)
            print(f"{'with' if stamps else 'without'} day stamps: {len(changes):,} orders written in {new:.2f} s "
                  f"({new / len(changes) * 1e6:.1f} µs each), rewritten in {upd:.2f} s ({upd / len(changes) * 1e6:.1f} µs each)",
                  flush=True)


if __name__ == "__main__":
    main()
