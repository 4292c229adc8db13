"""POST /segments/preview's work at N customers (issue 9: under 2 s at 1M), beside a same-run baseline.

A real SQLite read model (state/sqlite_readmodel.py) is filled with N customers' `customer` records,
their paid `order` records (60 % buyers of 1 to 6 orders over two years, a few products each) and a
cart for a third of them. Then, best of --repeat, wall time of:

- baseline: reading the three record kinds alone (`model.records`, what the preview reads);
- each rule: the preview as the route runs it (ws_gateway/segment_preview.py): read the records
  (each kind only when the rule reads what it gives: no customer records for a rule over orders that
  no customer without one meets), rebuild every customer's facts, evaluate the rule
  (core/rules) for each of them; the three parts' times are those of the best run.

    .venv/bin/python bench/segment_preview.py [--customers 100000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need the repository on sys.path (run as a script).
import orjson  # noqa: E402
from msgspec import Raw  # noqa: E402

from core.changes import Record  # noqa: E402
from core.clock import local_day  # noqa: E402
from core.records import Cart, Customer, CustomerMoney, Order, RecordKind  # noqa: E402
from core.rules import Context, inputs, parse_rule  # noqa: E402
from state.sqlite_readmodel import SqliteReadModel  # noqa: E402
from ws_gateway.segment_preview import CART_READS, buyers_only, customer_facts, preview, reads_lines  # noqa: E402

ORG, TZ, CURRENCY = "bench", "Europe/Berlin", "EUR"
NOW = 1_767_225_600_000  # 2026-01-01 UTC
DAY = 86_400_000
RULES = {
    "spent >= 100 within 30d": {"spent": {"gte": "100.00", "within": "30d"}},
    "orders >= 2 within 90d": {"orders": {"gte": 2, "within": "90d"}},
    "bought p7 within 180d": {"bought_product": {"product": "p7", "gte": 1, "within": "180d"}},
    "lapsed (2+ orders, last 180d ago)": {"all": [{"orders": {"gte": 2}}, {"last_order_at": {"before": "180d"}}]},
    "open cart >= 50": {"open_cart_value": {"gte": "50.00"}},
}


def fill(model: SqliteReadModel, customers: int, seed: int = 7) -> int:
    """Writes the records; returns how many."""
    rnd = random.Random(seed)
    zone = __import__("zoneinfo").ZoneInfo(TZ)
    written, batch = 0, []
    version = 0

    def flush() -> None:
        nonlocal batch, written
        model.write(batch)
        written += len(batch)
        batch = []

    for i in range(customers):
        key = f"c{i:07d}"
        first = NOW - rnd.randrange(730 * DAY)
        orders = rnd.randrange(1, 7) if rnd.random() < 0.6 else 0
        gross, times = 0, []
        for n in range(orders):
            t = first + rnd.randrange(max(1, NOW - first))
            amount = rnd.randrange(500, 30_000)
            lines = [[f"p{rnd.randrange(50)}", rnd.randrange(1, 4), amount // 2, ""] for _ in range(rnd.randrange(1, 4))]
            version += 1
            batch.append(Record(ORG, version, RecordKind.ORDER, f"s:{key}-{n}", local_day(t, zone).isoformat(),
                                Order("s", f"{key}-{n}", key, "web", t, t, CURRENCY, amount, 0, False,
                                      Raw(orjson.dumps(lines)))))
            gross, times = gross + amount, [*times, t]
        money = [CustomerMoney("s", CURRENCY, orders, orders, gross, 0, min(times), max(times))] if orders else []
        version += 1
        batch.append(Record(ORG, version, RecordKind.CUSTOMER, key, local_day(first, zone).isoformat(),
                            Customer(key, "s", None, first, first, max([first, *times]), None, None, orders, orders,
                                     min(times) if times else None, max(times) if times else None, money)))
        if i % 3 == 0:
            last = NOW - rnd.randrange(3 * DAY)
            status = rnd.choice(("open", "abandoned", "purchased"))
            version += 1
            batch.append(Record(ORG, version, RecordKind.CART, f"s:cart-{key}", local_day(last, zone).isoformat(),
                                Cart("s", f"cart-{key}", key, status, CURRENCY, rnd.randrange(1000, 20_000),
                                     [("p1", 1, 1000)], last - 60_000, last, last + 3_600_000, None)))
        if len(batch) >= 5000:
            flush()
    flush()
    return written


def best(repeat: int, run: Callable[[], int]) -> tuple[float, int]:
    times, out = [], 0
    for _ in range(repeat):
        started = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - started)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = SqliteReadModel(Path(tmp) / "readmodel.sqlite3")
        started = time.perf_counter()
        n = fill(model, args.customers)
        print(f"{args.customers:,} customers, {n:,} records written in {time.perf_counter() - started:.1f} s")

        def read() -> int:
            return sum(len(model.records(ORG, kind)) for kind in (Customer, Order, Cart))

        base, count = best(args.repeat, read)
        print(f"  baseline, reading the records alone ({count:,}):  {base:6.2f} s")
        ctx = Context(TZ, CURRENCY)
        for name, data in RULES.items():
            rule = parse_rule(data, currency=CURRENCY, timezone=TZ)
            reads = inputs(rule)
            runs = []
            for _ in range(args.repeat):
                # as the route: the order and cart records only when the rule reads what they give
                t0 = time.perf_counter()
                found = (None if buyers_only(rule, reads, NOW, ctx) else model.records(ORG, Customer),
                         model.records(ORG, Order) if "orders" in reads else [],
                         model.records(ORG, Cart) if reads & CART_READS else [])
                t1 = time.perf_counter()
                facts = customer_facts(*found, CURRENCY, lines=reads_lines(rule, {}), stores="stores" in reads)
                t2 = time.perf_counter()
                members, _ = preview(rule, facts, NOW, ctx)
                t3 = time.perf_counter()
                runs.append((t3 - t0, t1 - t0, t2 - t1, t3 - t2))
            took, read_s, facts_s, eval_s = min(runs)
            print(f"  preview {name:36s} {took:6.2f} s  ({took / base:.2f}x the baseline; read {read_s:.2f} s, "
                  f"facts {facts_s:.2f} s, evaluate {eval_s:.2f} s; {members:,} members of {len(facts):,})")
        model.close()


if __name__ == "__main__":
    main()
