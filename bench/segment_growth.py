"""What a segment's growth costs (GET /api/v1/orgs/{org}/segments/{id}/growth, ws_gateway/segment_views.py):
the stored entries and exits of one busy segment read from a real SQLite read model over 7, 30 and 90
days, then counted per local day, beside the read alone in the same run (the baseline: what the stored
history costs whatever is done with it).

    .venv/bin/python bench/segment_growth.py [--changes 300000] [--repeat 5]

The changes are spread evenly over 90 days (a segment that ~3,300 customers enter or leave a day), with
a cause of an event id, as the dataflow writes them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need the repository on sys.path (run as a script).
from core.changes import Record  # noqa: E402
from core.clock import local_day  # noqa: E402
from core.records import RecordKind  # noqa: E402
from core.segment_records import SegmentChange  # noqa: E402
from state.sqlite_readmodel import SqliteReadModel  # noqa: E402
from ws_gateway.segment_views import change_day, growth, growth_days  # noqa: E402

T_END = 1_796_600_000_000  # 2026-12-06T23:33Z
DAY_MS = 86_400_000
BERLIN = ZoneInfo("Europe/Berlin")


def changes(n: int) -> list[Record[SegmentChange]]:
    out: list[Record[SegmentChange]] = []
    for i in range(n):
        at = T_END - (i * 90 * DAY_MS) // n
        kind = "entered" if i % 3 else "exited"
        v = SegmentChange("buyers", f"c{i % 200_000}", kind, at, f"events:shop:o{i}")
        out.append(Record("acme", i + 1, RecordKind.SEGMENT_CHANGE, f"buyers|c{i % 200_000}|{at}|{kind}",
                          change_day("buyers", at), v))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--changes", type=int, default=300_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = SqliteReadModel(Path(tmp) / "readmodel.sqlite3")
        made = changes(args.changes)
        for i in range(0, len(made), 10_000):
            model.write(made[i:i + 10_000])
        last = local_day(T_END, BERLIN)
        print(f"{args.changes:,} stored changes of one segment over 90 days; best and median of {args.repeat}")
        print(f"{'period':>7} {'changes':>9} {'read alone (baseline)':>24} {'read + growth (the route)':>27} {'ratio':>6}")
        for days in (7, 30, 90):
            first = (last - timedelta(days=days - 1)).isoformat()
            start, end = growth_days(first, last.isoformat(), BERLIN)
            lo, hi = change_day("buyers", start), change_day("buyers", end - 1)
            read, both = [], []
            n = 0
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                found = model.records("acme", SegmentChange, lo, hi)
                read.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                found = model.records("acme", SegmentChange, lo, hi)
                g = growth(found, first, last.isoformat(), BERLIN, 50)
                both.append(time.perf_counter() - t0)
                n = len(found)
                assert g["entered"] + g["exited"] == n, (g["entered"], g["exited"], n)
            ms = lambda xs: f"{min(xs) * 1000:7.0f} / {statistics.median(xs) * 1000:5.0f} ms"  # noqa: E731
            print(f"{days:>6}d {n:>9,} {ms(read):>24} {ms(both):>27} {statistics.median(both) / statistics.median(read):6.2f}")
        model.close()


if __name__ == "__main__":
    main()
