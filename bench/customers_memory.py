"""What the read side keeps for best customers (ws_gateway/customer_rank.py) at bench/read_api.py's
scale, in one process over its SQLite read model: RSS after the profile-day parts, after the 90
order-day customers parts, then after each period's kept sums and rankings (7d, 30d, 90d, all time),
with the time each took to build. Beside it, the same-run baseline: building the same answer from the
same parts the way the read side did before (lists.customers_list and customer_summary over the merged
parts, per request).

    .venv/bin/python bench/customers_memory.py [--db /tmp/storepulse-bench-read/readmodel.sqlite3]
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need the repository on sys.path (run as a script).
from core.figures import OPEN_END  # noqa: E402
from core.records import Customer, Order  # noqa: E402
from state.sqlite_readmodel import SqliteReadModel  # noqa: E402
from storepulse.gc_policy import SERVERS, settle  # noqa: E402
from ws_gateway import cached_lists, list_parts, lists  # noqa: E402
from ws_gateway.day_cache import DayCache  # noqa: E402

ORG, TZ, TODAY = "bench", ZoneInfo("Europe/Berlin"), date(2026, 12, 1)  # bench/read_api.py's


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("/tmp/storepulse-bench-read/readmodel.sqlite3"))
    args = parser.parse_args()
    if not args.db.exists():
        raise SystemExit(f"{args.db} is missing: write it with bench/read_api.py --load-only")
    model, cache = SqliteReadModel(args.db), DayCache()
    settle(SERVERS)  # as the gateway runs
    start = rss_mb()
    lives = cache.day_parts(model, ORG, Customer, "", OPEN_END, ("lives", "EUR", None, str(TZ)), functools.partial(
        cached_lists._lives_part, currency="EUR", rates=None, tz=TZ, store=None))
    after_lives = rss_mb()
    first90 = (TODAY - timedelta(days=89)).isoformat()
    parts = cache.day_parts(model, ORG, Order, first90, TODAY.isoformat(), ("customers", "EUR", None), functools.partial(
        list_parts.customers_part, currency="EUR", rates=None, store=None), per_record=cached_lists.CUSTOMERS_WEIGHT)
    after_parts = rss_mb()
    print(f"start {start:,.0f} MB; profile-day parts (1M profiles) +{after_lives - start:,.0f} MB; "
          f"90 order-day customers parts +{after_parts - after_lives:,.0f} MB")
    merged = {k: v for _, p in lives for k, v in p.lives.items()}
    prev = rss_mb()
    for days in (7, 30, 90, None):
        first = (TODAY - timedelta(days=days - 1)).isoformat() if days else ""
        last = TODAY.isoformat() if days else OPEN_END
        t = time.perf_counter()
        cached_lists.best_customers(cache, model, ORG, first, last, currency="EUR", rates=None, tz=TZ, store=None,
                                    members=None, sort="revenue", limit=20)
        built = time.perf_counter() - t
        now = rss_mb()
        t = time.perf_counter()  # baseline: the same answer from the same parts, as computed per request before
        if days:
            figures = list_parts.merge_customers([p for d, p in parts if d >= first])  # type: ignore[misc]
        else:
            figures = lists.lifetime_customers(merged)
        lists.customers_list(figures, merged, sort="revenue", limit=20, currency="EUR", tz=TZ)
        first_ever = {k: life.first_paid for k in figures if (life := merged.get(k)) and life.first_paid is not None}
        lists.customer_summary(figures, first_ever, 0, first, last, TZ)
        print(f"{days or 'all'}{'d' if days else ''}: {len(figures):,} customers; kept sums and rankings built in "
              f"{built:.1f} s, +{now - prev:,.0f} MB; baseline (merge, rank, count per request) {time.perf_counter() - t:.1f} s",
              flush=True)
        prev = rss_mb()
    print(f"total {rss_mb():,.0f} MB RSS")
    model.close()


if __name__ == "__main__":
    main()
