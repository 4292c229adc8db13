"""POST /segments/preview's work at N customers (issue 9: under 2 s at 1M), beside a same-run baseline.

A real SQLite read model (state/sqlite_readmodel.py) is filled with N customers' `customer` records,
their paid `order` records (60 % buyers of 1 to 6 orders over --days days, a few products each, a
tenth in USD) and a cart for a third of them. Then, wall time of:

- build: the preview columns read from the model (ws_gateway/preview_index.py `load`: what the
  gateway does once in the background at start), and the process's peak RSS after it;
- per rule, best of --repeat: the preview from the columns (ws_gateway/preview_eval.py), first with
  the per-customer aggregates of an earlier preview kept (`warm`), then just after a write of
  --writes new order records reached the columns (`after a write`: what a live shop sees);
- per rule, once, the same-run baseline: the records' path the route took before
  (ws_gateway/segment_preview.py `preview_records`: read the records, rebuild the facts, evaluate
  core/rules per customer), and the check that both answer the same count and first members.
  `--no-baseline` leaves it out (it takes ~1 min a rule at 1M customers);
- with --restart, a restart with the columns kept (ws_gateway/preview_keep.py): the columns saved (as
  at shutdown: the file's size, the time), --since records written after (orders today, old orders
  rewritten, a third of them to another day, customers active again), then a fresh index's load of the
  file and its catch-up (preview_index.catch_up: only the days whose stamp changed) beside the full
  build above, and every rule's preview from the taken columns checked equal to the built columns
  fed the same records; last the catch-up when every day's stamp changed (a long uptime's bound).

    .venv/bin/python bench/segment_preview.py [--customers 100000] [--days 90] [--repeat 3] [--writes 1000]
                                              [--restart] [--since 3000]
"""

from __future__ import annotations

import argparse
import gc
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need the repository on sys.path (run as a script).
import msgspec  # noqa: E402
import orjson  # noqa: E402
from msgspec import Raw  # noqa: E402

from core.changes import Record  # noqa: E402
from core.clock import local_day  # noqa: E402
from core.rates import parse_ecb_csv  # noqa: E402
from core.records import Cart, Customer, CustomerMoney, Order, RecordKind  # noqa: E402
from core.rules import Context, inputs, parse_rule, parse_segments  # noqa: E402
from state.sqlite_readmodel import SqliteReadModel  # noqa: E402
from ws_gateway.preview_index import HeldColumns, catch_up, load  # noqa: E402
from ws_gateway.preview_keep import KeptColumns  # noqa: E402
from ws_gateway.segment_preview import buyers_only, preview_records  # noqa: E402

ORG, TZ, CURRENCY = "bench", "Europe/Berlin", "EUR"
NOW = 1_767_225_600_000  # 2026-01-01 UTC
DAY = 86_400_000
RULES = {
    "spent >= 100 within 30d": {"spent": {"gte": "100.00", "within": "30d"}},
    "orders >= 2 within 90d": {"orders": {"gte": 2, "within": "90d"}},
    "bought p7 within 180d": {"bought_product": {"product": "p7", "gte": 1, "within": "180d"}},
    "lapsed (2+ orders, last 60d ago)": {"all": [{"orders": {"gte": 2}}, {"last_order_at": {"before": "60d"}}]},
    "open cart >= 50": {"open_cart_value": {"gte": "50.00"}},
    "order of 250+ in 30d, items >= 5": {"all": [{"order_value": {"gte": "250.00", "within": "30d"}},
                                                  {"items": {"gte": 5}}]},
    "registered 7d, no order; or store s2": {"any": [{"all": [{"registered_at": {"after": "7d"}}, {"orders": {"eq": 0}}]},
                                                      {"store": {"eq": "s2"}}]},
    "ordered 2 days ago, active 24h": {"all": [{"last_order_at": {"on": "2d"}}, {"last_active_at": {"after": "24h"}}]},
    "in_segment big, abandoned 24h": {"all": [{"in_segment": {"eq": "big"}},
                                              {"last_abandoned_cart_at": {"after": "24h"}}]},
}
SEGMENTS = {"big": {"spent": {"gte": "300.00", "within": "90d"}}}
RATES_CSV = "Date,USD,\n" + "\n".join(f"2025-{m:02d}-{d:02d},1.{(m * d) % 50 + 10}" for m in range(1, 13) for d in range(1, 29))


def fill(model: SqliteReadModel, customers: int, days: int, seed: int = 7) -> int:
    """Writes the records (the bulk path: as the dataflow's writes, unpublished); returns how many."""
    rnd = random.Random(seed)
    zone = __import__("zoneinfo").ZoneInfo(TZ)
    written, batch = 0, list[Record[Any]]()
    version = 0

    def flush() -> None:
        nonlocal batch, written
        model.bulk_load(batch)
        written += len(batch)
        batch = []

    for i in range(customers):
        key = f"c{i:07d}"
        first = NOW - rnd.randrange(max(days, 2) * DAY)
        orders = rnd.randrange(1, 7) if rnd.random() < 0.6 else 0
        gross, times = 0, list[int]()
        for n in range(orders):
            t = first + rnd.randrange(max(1, NOW - first))
            amount = rnd.randrange(500, 30_000)
            lines = [[f"p{rnd.randrange(50)}", rnd.randrange(1, 4), amount // 2, ""] for _ in range(rnd.randrange(1, 4))]
            version += 1
            currency = "USD" if rnd.random() < 0.1 else CURRENCY
            batch.append(Record(ORG, version, RecordKind.ORDER, f"s:{key}-{n}", local_day(t, zone).isoformat(),
                                Order("s", f"{key}-{n}", key, "web", t, t, currency, amount, 0, False,
                                      Raw(orjson.dumps(lines)))))
            gross, times = gross + amount, [*times, t]
        money = [CustomerMoney("s", CURRENCY, orders, orders, gross, 0, min(times), max(times))] if orders else []
        last_active = max([first, *times]) if rnd.random() < 0.5 else NOW - rnd.randrange(3 * DAY)
        version += 1
        batch.append(Record(ORG, version, RecordKind.CUSTOMER, key, local_day(first, zone).isoformat(),
                            Customer(key, "s", None, first, first, last_active, None, None, orders, orders,
                                     min(times) if times else None, max(times) if times else None, money)))
        if i % 3 == 0:
            last = NOW - rnd.randrange(3 * DAY)
            status = rnd.choice(("open", "abandoned", "purchased"))
            version += 1
            store = "s2" if rnd.random() < 0.2 else "s"
            batch.append(Record(ORG, version, RecordKind.CART, f"{store}:cart-{key}", local_day(last, zone).isoformat(),
                                Cart(store, f"cart-{key}", key, status, CURRENCY, rnd.randrange(1000, 20_000),
                                     [("p1", 1, 1000)], last - 60_000, last, last + 3_600_000, None)))
        if len(batch) >= 5000:
            flush()
    flush()
    return written


def best(repeat: int, run: Callable[[], tuple[int, list[str]]]) -> tuple[float, tuple[int, list[str]]]:
    times, out = [], (0, list[str]())
    for _ in range(repeat):
        started = time.perf_counter()
        out = run()
        times.append(time.perf_counter() - started)
    return min(times), out


def rss_mb() -> float:
    """The process's resident memory now, in MB (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def writes(customers: int, count: int, version: int, seed: int) -> list[Record[Order]]:
    """`count` new paid orders of random existing customers, today."""
    rnd = random.Random(seed)
    return [Record(ORG, version + i, RecordKind.ORDER, f"s:new-{seed}-{i}", "2025-12-31",
                   Order("s", f"new-{seed}-{i}", f"c{rnd.randrange(customers):07d}", "web", NOW - 1000, NOW - 1000,
                         CURRENCY, rnd.randrange(500, 30_000), 0, False, Raw(b'[["p7", 1, 500, ""]]')))
            for i in range(count)]


def since_restart(model: SqliteReadModel, count: int, version: int, seed: int) -> list[Record[Any]]:
    """`count` writes after a shutdown: a third new orders today, a third old orders rewritten on 20
    random days (every other one paid again yesterday: it moves day), a third customers of 20 random
    days active again."""
    rnd = random.Random(seed)
    zone = ZoneInfo(TZ)
    out: list[Record[Any]] = list(writes(10**9, count // 3, version, seed))  # their customers are new too

    def picked(kind: type[Any]) -> list[Record[Any]]:
        days = rnd.sample(sorted(model.day_stamps(ORG, kind)), 20)
        keys = [k for day in days for k in model.day_versions(ORG, kind, day)]
        return model.records_by_key(ORG, kind, rnd.sample(keys, min(len(keys), count // 3)))

    for i, r in enumerate(picked(Order)):
        paid = NOW - DAY if i % 2 == 0 else r.value.paid
        value = msgspec.structs.replace(r.value, amount=r.value.amount + 100, paid=paid)
        out.append(Record(ORG, version + count + i, RecordKind.ORDER, r.key, local_day(paid, zone).isoformat(), value))
    for i, r in enumerate(picked(Customer)):
        value = msgspec.structs.replace(r.value, last_active=NOW - 5000)
        out.append(Record(ORG, version + 2 * count + i, RecordKind.CUSTOMER, r.key, r.day, value))
    return out


def _taken(kept: KeptColumns, model: SqliteReadModel, ctx: Context, every_day: bool) -> tuple[HeldColumns, float, int, int]:
    """New columns from the file, caught up as a start does (`every_day`: as if every day's stamp changed
    since the save): the columns, seconds to load the file, and the days and records the catch-up read."""
    held = HeldColumns(Context(TZ, CURRENCY, ctx.rates))
    started = time.perf_counter()
    taken = kept.load(held.columns.ctx)
    assert taken is not None
    held.columns = taken[0]
    loaded = time.perf_counter() - started
    days, records = catch_up(model, ORG, held, {} if every_day else taken[1])
    held.settle(rerank=True)
    return held, loaded, days, records


def restart(args: argparse.Namespace, model: SqliteReadModel, held: HeldColumns, built: float, tmp: str,
            ctx: Context, rules: list[tuple[str, Any, bool]]) -> None:
    """The --restart measure (the module's docstring)."""
    kept = KeptColumns(Path(tmp) / f"preview-columns-{ORG}.pickle", b"bench mark\n")
    assert held.stamps is not None
    started = time.perf_counter()
    with held.lock:
        held._settle()
        size = kept.save(held.columns, held.stamps)
    saved = time.perf_counter() - started
    new = since_restart(model, args.since, 2 * 10**9, seed=99)
    model.bulk_load(new)
    held.take(new)  # the running gateway's columns get them from the feed
    gc.collect()
    started = time.perf_counter()
    fresh, loaded, days, records = _taken(kept, model, ctx, every_day=False)
    caught = time.perf_counter() - started - loaded
    print(f"  restart: saved {size / 1e6:.0f} MB in {saved:.1f} s; {len(new):,} records written since; the file "
          f"loaded in {loaded:.1f} s, caught up in {caught:.1f} s ({records:,} records read of {days} changed days): "
          f"{loaded + caught:.1f} s beside the build's {built:.1f} s; RSS {rss_mb():.0f} MB", flush=True)
    for name, rule, only_buyers in rules:
        assert fresh.preview(rule, NOW, ctx, only_buyers) == held.preview(rule, NOW, ctx, only_buyers), name
    print(f"  restart: all {len(rules)} rules answer the same from the taken columns as from the built ones", flush=True)
    del fresh
    gc.collect()
    started = time.perf_counter()
    _, _, days, records = _taken(kept, model, ctx, every_day=True)
    print(f"  restart after a long uptime (every day's stamp changed): loaded and caught up in "
          f"{time.perf_counter() - started:.1f} s ({records:,} records read of {days} days)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--writes", type=int, default=1000)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--restart", action="store_true", help="measure a restart with the columns kept")
    ap.add_argument("--since", type=int, default=3000, help="with --restart: records written after the save")
    args = ap.parse_args()
    rates = parse_ecb_csv(RATES_CSV)
    with tempfile.TemporaryDirectory() as tmp:
        model = SqliteReadModel(Path(tmp) / "readmodel.sqlite3")
        started = time.perf_counter()
        n = fill(model, args.customers, args.days)
        orders = len(model.day_stamps(ORG, Order))
        print(f"{args.customers:,} customers, {n:,} records written in {time.perf_counter() - started:.1f} s "
              f"(orders on {orders} days)")
        held = HeldColumns(Context(TZ, CURRENCY, rates))
        rss_before = rss_mb()
        started, cpu_started = time.perf_counter(), time.process_time()
        load(model, ORG, held)
        built, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        cols = held.columns
        gc.collect()
        print(f"  RSS before the build: {rss_before:.0f} MB")
        print(f"  build: the columns read from the model in {built:.1f} s ({cpu:.1f} s CPU): {cols.customers.n:,} customers, "
              f"{cols.orders.n:,} orders, {cols.carts.n:,} carts; RSS {rss_mb():.0f} MB after it, "
              f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB at the peak", flush=True)
        segments = parse_segments(SEGMENTS, currency=CURRENCY, timezone=TZ)
        ctx = Context(TZ, CURRENCY, rates, segments)
        version = 10**9
        parsed = []
        for i, (name, data) in enumerate(RULES.items()):
            rule = parse_rule(data, currency=CURRENCY, timezone=TZ)
            only_buyers = buyers_only(rule, inputs(rule, segments), NOW, ctx)
            parsed.append((name, rule, only_buyers))
            held.preview(rule, NOW, ctx, only_buyers)  # the aggregates of this rule's inputs, kept
            warm, answer = best(args.repeat, lambda: held.preview(rule, NOW, ctx, only_buyers))
            after = []
            for r in range(args.repeat):
                version += args.writes
                new = writes(args.customers, args.writes, version, seed=i * 100 + r)
                model.bulk_load(new)  # as the dataflow writes them; the feed brings them to the columns:
                held.take(list(new))
                started = time.perf_counter()
                answer = held.preview(rule, NOW, ctx, only_buyers)
                after.append(time.perf_counter() - started)
            line = f"  preview {name:38s} columns {warm:6.3f} s warm, {min(after):6.3f} s after a write; {answer[0]:,} members"
            if not args.no_baseline:
                started = time.perf_counter()
                old = preview_records(rule, lambda kind: model.records(ORG, kind), NOW, ctx)
                took = time.perf_counter() - started
                assert old == answer, (name, old[0], answer[0], old[1][:3], answer[1][:3])
                line += f"; baseline, the records' path: {took:6.2f} s ({took / min(after):,.0f}x), same answer"
            print(line, flush=True)
        if args.restart:
            restart(args, model, held, built, tmp, ctx, parsed)
        model.close()


if __name__ == "__main__":
    main()
