"""The read API at 1M customers and 1M orders (issue 11, "Speed"): every endpoint the dashboard's views
call, per period (7d, 30d, 90d), through the real HTTP server over a real SQLite read model, with
p50/p99 per endpoint; beside them, in the same run, what SQLite alone takes to count and to hand over
the same period's order rows (no Python work on them).

The data is written once into --db (kept between runs: delete it or pass --regenerate to rebuild) through
the read model's bulk path (`SqliteReadModel.bulk_load`: the rows and upserts of the dataflow's `write`,
one statement per table for 20,000 changes, no feed messages): 1M customer
profiles registered over two years, 1M paid orders over the last 90 days (two stores, EUR; 400 products
with a Zipf-like skew, 1-4 lines an order; two thirds of the customers buy, ~1.5 orders each; 3 % guest
orders, 5 % refunded), carts (one bought order's in four, and 31 % as many
abandoned ones as orders, 3 % of those recovered), and the day records the views sum
(cart days, abandoned products, journey days, e-mail attribution, revenue buckets by day and hour).
No segment members are written (the segment views are measured over the predefined definitions only).

The server runs in its own process (as `storepulse gateway` would); the client asks one request at a time:
per endpoint the first (which computes what the read side keeps), then --repeat more; then, with --live,
each request right after a write like the dataflow's for a paid order (the live shop's case).

    .venv/bin/python bench/read_api.py [--db /tmp/storepulse-bench-read/readmodel.sqlite3] [--repeat 7]
                                       [--customers 1000000] [--orders 1000000] [--regenerate] [--load-only]
                                       [--live 3] [--endpoints customers,orders] [--warm off|wait|nowait]

--warm: the server warms its kept parts at start (ws_gateway/warm_start.py) as `storepulse gateway` does;
"wait" measures once that is done (and says how long it took), "nowait" right away.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import multiprocessing
import random
import sqlite3
import statistics
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
from msgspec import Raw

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need what is set up above (the repository on sys.path, run as a script).
from core.changes import DAY, HOUR, Bucket, Change, Record, value_from_json  # noqa: E402
from core.records import (  # noqa: E402
    AbandonedProduct,
    Attribution,
    Cart,
    CartDay,
    Customer,
    CustomerMoney,
    JourneyDay,
    OpenCarts,
    Order,
)
from state.sqlite_readmodel import SqliteReadModel  # noqa: E402
from tests.helpers import free_port  # noqa: E402

ORG, TOKEN, TZ = "bench", "bench-read-token-0123456789", ZoneInfo("Europe/Berlin")
STORES = ("web", "shop")
CONFIG = f"""
[orgs.{ORG}]
timezone = "Europe/Berlin"
currency = "EUR"
token = "{TOKEN}"
[orgs.{ORG}.stores.web]
provider = "events"
secret = "bench-read-site-key-0123"
[orgs.{ORG}.stores.shop]
provider = "events"
secret = "bench-read-site-key-4567"
"""
NOW = datetime(2026, 12, 1, 11, 0, tzinfo=UTC)  # the read side's clock: the data's "today"
NOW_MS = int(NOW.timestamp() * 1000)
DAY_MS = 86_400_000
PRODUCTS = 400
CAMPAIGNS = 12
BATCH = 20_000


# --- the data -------------------------------------------------------------------------------------

class Days:
    """Local (Europe/Berlin) day of a UTC ms, by bisecting the local midnights: 1M lookups in ~1 s."""

    def __init__(self, first: datetime, days: int) -> None:
        start = first.astimezone(TZ).date()
        self.names = [(start + timedelta(days=i)).isoformat() for i in range(days + 2)]
        self.starts = [int(datetime.combine(start + timedelta(days=i), datetime.min.time(), TZ).timestamp() * 1000)
                       for i in range(days + 2)]

    def of(self, ms: int) -> str:
        return self.names[bisect.bisect_right(self.starts, ms) - 1]


class Hours:
    """The UTC hour ("YYYY-MM-DDTHH", as buckets name it) of a UTC ms."""

    def __init__(self, first: datetime, hours: int) -> None:
        start = first.replace(minute=0, second=0, microsecond=0)
        self.first = int(start.timestamp() * 1000)
        self.names = [(start + timedelta(hours=i)).strftime("%Y-%m-%dT%H") for i in range(hours + 1)]

    def of(self, ms: int) -> str:
        return self.names[(ms - self.first) // 3_600_000]


@dataclass
class Shop:
    """What the generated history adds up to, for the day records and buckets written after it."""

    hourly: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0, 0]))
    daily: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0, 0]))
    cart_days: dict[tuple[str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0] * 10))
    abandoned: Counter[tuple[str, str, str]] = field(default_factory=Counter)
    attributed: dict[tuple[str, str, str], list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    facts: dict[int, list[int]] = field(default_factory=dict)  # customer -> [orders, items, gross, refunds, first, last]
    carts: int = 0


def baskets(rng: random.Random, n: int = 4096) -> list[tuple[bytes, list[tuple[str, int, int]], int, int, dict[str, str]]]:
    """A pool of order contents (items JSON, cart items, amount, units, the cart's names): 1-4 lines (60/25/10/5 %) of
    400 products with a Zipf-like skew, qty 1-3. Orders draw from it: one random number an order."""
    products = [(f"p{i:03d}", f"Product {i}", rng.randrange(500, 15_000)) for i in range(PRODUCTS)]
    weights = _cumulative([1 / (k + 1) for k in range(PRODUCTS)])
    out = []
    for _ in range(n):
        lines = []
        for _ in range(rng.choices((1, 2, 3, 4), (60, 25, 10, 5))[0]):
            p, name, unit = products[bisect.bisect_left(weights, rng.random() * weights[-1])]
            lines.append((p, rng.choice((1, 1, 1, 2, 3)), unit, name))
        out.append((orjson.dumps(lines), [(p, q, u) for p, q, u, _ in lines], sum(q * u for _, q, u, _ in lines),
                    sum(q for _, q, _, _ in lines), {p: name for p, _, _, name in lines}))
    return out


def orders_and_carts(rng: random.Random, shop: Shop, registered: list[int], who: list[int | None], days: Days,
                     version: int) -> Iterator[Change]:
    """Each order (paid, in time order), and carts."""
    hours, pool, since = Hours(NOW - timedelta(days=92), 93 * 24), baskets(rng), NOW_MS - 90 * DAY_MS
    store_of = [STORES[c % 7 == 0] for c in range(len(registered))]
    paid_times = sorted(((rng.randrange(since if c is None else max(registered[c], since), NOW_MS - 60_000), c) for c in who),
                        key=lambda t: t[0])
    for i, (paid, cus) in enumerate(paid_times):
        items, cart_items, amount, units, names = pool[rng.getrandbits(12)]
        r = rng.random()  # one draw decides the store of a guest, the refund and the source
        store = STORES[r < 0.15] if cus is None else store_of[cus]
        refunded = amount if r < 0.05 else 0
        source = "web" if r < 0.8 else "email_campaign" if r < 0.95 else "automation"
        day = days.of(paid)
        person = None if cus is None else f"cus_{cus:07d}"
        yield Record(ORG, version, Order.KIND, f"{store}:o{i}", day, Order(
            store=store, order=f"o{i}", customer=person, source=source, placed=paid - 120_000, paid=paid,
            currency="EUR", amount=amount, refunded=refunded, cancelled=False, items=Raw(items),
            buyer="" if cus is None else f"Customer {cus}"))
        for acc in (shop.hourly[(hours.of(paid), store)], shop.daily[(day, store)]):
            acc[0], acc[1], acc[2], acc[3], acc[4] = acc[0] + amount, acc[1] + refunded, acc[2] + 1, acc[3] + 1, acc[4] + units
        if cus is not None:
            f = shop.facts.setdefault(cus, [0, 0, 0, 0, paid, paid])
            f[0], f[1], f[2], f[3], f[5] = f[0] + 1, f[1] + units, f[2] + amount, f[3] + refunded, paid
        if source != "web":
            a = shop.attributed[(day, store, f"c{i % CAMPAIGNS}")]
            a[0], a[1] = a[0] + 1, a[1] + amount
        # its cart, kept for one order in four (carts of bought orders are most of a shop's carts, but
        # writing 1M of them too would double the load time), and 31 % more carts: abandoned, 3 % of
        # those later recovered
        statuses = (("purchased",) if i % 4 == 0 else ()) + (("abandoned" if r < 0.3 else "recovered",) if r < 0.31 else ())
        for status in statuses:
            first = paid - (600_000 + i % 10_000_000) if status == "purchased" else paid - (i * 7919) % DAY_MS
            shop.carts += 1
            cday = days.of(first)
            yield Record(ORG, version, Cart.KIND, f"{store}:k{shop.carts}", cday, Cart(
                store=store, cart=f"k{shop.carts}", person=person, status=status, currency="EUR", value=amount,
                items=cart_items, first=first, last=first + 300_000, due=first + 3_900_000,
                paid=None if status == "abandoned" else paid, names=names, buyer="" if cus is None else f"Customer {cus}"))
            cd = shop.cart_days[(cday, store)]
            col = {"purchased": 8, "abandoned": 4, "recovered": 6}[status]
            cd[0], cd[1], cd[col], cd[col + 1] = cd[0] + 1, cd[1] + amount, cd[col] + 1, cd[col + 1] + amount
            if status == "recovered":  # a recovered cart was abandoned first
                cd[4], cd[5] = cd[4] + 1, cd[5] + amount
            if status != "purchased":
                for p, _, _ in cart_items:
                    shop.abandoned[(cday, store, p)] += 1


def profiles(shop: Shop, registered: list[int], days: Days, version: int) -> Iterator[Change]:
    for c, reg in enumerate(registered):
        f = shop.facts.get(c)
        store = STORES[c % 7 == 0]
        money = [] if f is None else [CustomerMoney(store, "EUR", f[0], f[1], f[2], f[3], f[4], f[5])]
        yield Record(ORG, version, Customer.KIND, f"cus_{c:07d}", days.of(reg), Customer(
            customer=f"cus_{c:07d}", store=store, registered=reg, first_seen=reg, registered_at=reg,
            last_active=reg if f is None else f[5], email=f"customer{c}@example.com", name=f"Customer {c}",
            orders=0 if f is None else f[0], items=0 if f is None else f[1],
            first_paid=None if f is None else f[4], last_paid=None if f is None else f[5], money=money))


def day_records(shop: Shop, days: Days, version: int) -> Iterator[Change]:
    """What the views sum per day: cart days, journey days, abandoned products, attribution; open carts; buckets."""
    today = days.of(NOW_MS)
    for (day, store), d in shop.cart_days.items():
        yield Record(ORG, version, CartDay.KIND, f"{store}|{day}|EUR", day, CartDay(store, "EUR", d[0], d[1], 0, 0, d[4], d[5], d[6], d[7], d[8], d[9]))
        bought = d[8] + d[6]
        yield Record(ORG, version, JourneyDay.KIND, f"{store}|{day}", day,
                     JourneyDay(store, d[0] * 4, d[0], bought, bought // 3, day < today))
    for (day, store, p), n in shop.abandoned.items():
        yield Record(ORG, version, AbandonedProduct.KIND, f"{store}|{day}|{p}", day, AbandonedProduct(store, p, n))
    for (day, store, camp), (n, revenue) in shop.attributed.items():
        yield Record(ORG, version, Attribution.KIND, f"{store}|{day}|{camp}|EUR", day, Attribution(store, camp, "EUR", n, revenue))
    for store in STORES:
        yield Record(ORG, version, OpenCarts.KIND, f"{store}|EUR", "", OpenCarts(store, "EUR", 37, 123_456))
    for grain, table in ((HOUR, shop.hourly), (DAY, shop.daily)):
        for (start, store), b in table.items():
            yield Bucket(ORG, version, grain, start, store, "EUR", *b)


def generate(model: SqliteReadModel, customers: int, orders: int, seed: int = 11) -> None:
    """Customers registered over two years (in that order); two in three buy, ~1.5 orders each: every
    buyer one, the rest skewed towards a few (cubed uniform); one order in 33 is a guest's."""
    rng, t0, days, shop = random.Random(seed), time.perf_counter(), Days(NOW - timedelta(days=732), 734), Shop()
    registered = sorted(NOW_MS - 3_600_000 - rng.randrange(2 * 365 * DAY_MS) for _ in range(customers))
    buyers = [c for c in range(customers) if c % 3 != 2] or [0]
    who: list[int | None] = [None if i % 33 == 0 else buyers[i] if i < len(buyers) else
                             buyers[int(len(buyers) * rng.random() ** 3)] for i in range(orders)]
    for n, changes in enumerate((orders_and_carts(rng, shop, registered, who, days, 1), profiles(shop, registered, days, 2),
                                 day_records(shop, days, 3))):
        while batch := list(itertools.islice(changes, BATCH)):
            model.bulk_load(batch)
        print(f"  {('orders and carts', 'profiles', 'day records and buckets')[n]} written "
              f"({shop.carts:,} carts), {time.perf_counter() - t0:.1f} s", flush=True)


def _cumulative(xs: list[float]) -> list[float]:
    out, total = [], 0.0
    for x in xs:
        total += x
        out.append(total)
    return out


# --- the server -------------------------------------------------------------------------------------

def serve(db: Path, port: int, warm: str = "off", warmed: Any = None) -> None:
    """The gateway's read API over `db`, as `storepulse gateway` builds it (no WebSocket, no event log);
    with `warm` other than "off", its kept parts warmed at start as `storepulse gateway` does
    (ws_gateway/warm_start.py), `warmed` (a multiprocessing Event) set when done."""
    import uvloop

    from core.config import parse_config
    from state.sqlite_connections import SqliteConnectionStats
    from state.sqlite_rejected import SqliteRejectedStore
    from storepulse.gc_policy import SERVERS, settle
    from storepulse.servers import http_server
    from web.app import build_app
    from ws_gateway import api, segments
    from ws_gateway.limits import ApiLimits

    side = api.ReadSide(parse_config(CONFIG, {}), SqliteReadModel(db), SqliteRejectedStore(db.parent / "rejected.sqlite3"),
                        SqliteConnectionStats(db.parent / "connections.sqlite3"), ws_port=0, now=lambda: NOW,
                        limits=ApiLimits(rate=1e9, burst=1e9))  # the benchmark measures speed, not the budget
    app = build_app(segments.routes + api.routes, api.handlers, {"read_side": side})
    server = http_server(app, "127.0.0.1", port)
    settle(SERVERS)
    if warm != "off":
        import threading

        from ws_gateway import warm_start  # not in the tree before it: imported only when asked for

        def report() -> None:
            warming.wait()
            for what, seconds in warming.took:
                print(f"  warmed {what} in {seconds:.1f} s", flush=True)
            warmed.set()

        warming = warm_start.start_side(side)
        threading.Thread(target=report, daemon=True).start()
    uvloop.run(server.serve())


# --- the measurement --------------------------------------------------------------------------------

# (view, endpoint, params): what each dashboard view asks (ws_gateway/static/views/*.js), per period.
ENDPOINTS: list[tuple[str, str, dict[str, Any]]] = [
    ("overview", "figures", {}),
    ("overview", "series", {"metric": "gross_revenue"}),
    ("overview", "journey", {}),
    ("overview", "attribution", {}),
    ("overview", "carts", {"limit": 1}),
    ("overview", "customers", {"limit": 1}),
    ("overview", "quota", {}),
    ("orders", "orders", {"sort": "latest", "limit": 20}),
    ("orders", "orders", {"sort": "best", "limit": 10}),
    ("products", "products", {"sort": "revenue", "limit": 10}),
    ("products", "products", {"sort": "units", "limit": 10}),
    ("products", "pairs", {"sort": "orders", "limit": 10}),
    ("carts", "carts", {"limit": 20}),
    ("customers", "customers", {"sort": "revenue", "limit": 20}),
    ("customers", "customers", {"filter": "never_bought", "limit": 20}),
    ("segments", "segments", {}),
]
PERIODS = ("7d", "30d", "90d")


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]


def baseline(db: Path, period: str, repeat: int) -> dict[str, list[float]]:
    """SQLite alone over the same period's orders: COUNT(*), and every row's value handed to Python."""
    first = (NOW.astimezone(TZ).date() - timedelta(days={"7d": 6, "30d": 29, "90d": 89}[period])).isoformat()
    last = NOW.astimezone(TZ).date().isoformat()
    conn = sqlite3.connect(db)
    out: dict[str, list[float]] = {"count": [], "rows": []}
    q = "FROM records WHERE org = ? AND kind = 'order' AND day BETWEEN ? AND ?"
    for _ in range(repeat):
        t = time.perf_counter()
        conn.execute(f"SELECT count(*) {q}", (ORG, first, last)).fetchone()
        out["count"].append(time.perf_counter() - t)
        t = time.perf_counter()
        conn.execute(f"SELECT key, day, version, value {q}", (ORG, first, last)).fetchall()
        out["rows"].append(time.perf_counter() - t)
    conn.close()
    return out


def _get(client: httpx.Client, endpoint: str, params: dict[str, Any]) -> tuple[float, int]:
    t = time.perf_counter()
    r = client.get(f"/api/v1/orgs/{ORG}/{endpoint}", params=params)
    elapsed = time.perf_counter() - t
    r.raise_for_status()
    return elapsed, len(r.content)


def _label(params: dict[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in params.items())


def measure(base: str, repeat: int, endpoints: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Per period and endpoint: the first request after the server started (it computes what later
    ones reuse), then `repeat` more: p50 and p99."""
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=900) as client:
        for period in PERIODS:
            for view, endpoint, params in endpoints:
                first, size = _get(client, endpoint, {**params, "period": period})
                times = [_get(client, endpoint, {**params, "period": period})[0] for _ in range(repeat)]
                print(f"  {period:>3} {view:<9} /{endpoint:<11} {_label(params):<28} first {first * 1000:8.1f} ms  "
                      f"p50 {_pct(times, 0.5) * 1000:8.1f} ms  p99 {_pct(times, 0.99) * 1000:8.1f} ms  {size:,} B", flush=True)


def live(base: str, db: Path, repeat: int, endpoints: list[tuple[str, str, dict[str, Any]]]) -> None:
    """Each request right after a write as the dataflow makes it for a paid order (`SqliteReadModel.write`:
    one of today's orders and its customer's profile, at a newer version): what a live shop costs."""
    model = SqliteReadModel(db)
    today = NOW.astimezone(TZ).date().isoformat()
    conn = sqlite3.connect(db)
    key, order = next((k, o) for k, v in conn.execute(
        "SELECT key, value FROM records WHERE org = ? AND kind = 'order' AND day = ? LIMIT 100", (ORG, today))
        if (o := value_from_json(Order, v)).customer is not None)
    (cday, cvalue), = conn.execute("SELECT day, value FROM records WHERE org = ? AND kind = 'customer' AND key = ?",
                                   (ORG, order.customer)).fetchall()
    profile = value_from_json(Customer, cvalue)
    conn.close()
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=900) as client:
        for period in PERIODS:
            for view, endpoint, params in endpoints:
                times = []
                for _ in range(repeat):
                    version = time.time_ns()
                    model.write([Record(ORG, version, Order.KIND, key, today, order),
                                 Record(ORG, version, Customer.KIND, profile.customer, cday, profile)])
                    times.append(_get(client, endpoint, {**params, "period": period})[0])
                print(f"  {period:>3} {view:<9} /{endpoint:<11} {_label(params):<28} "
                      f"p50 {_pct(times, 0.5) * 1000:8.1f} ms  p99 {_pct(times, 0.99) * 1000:8.1f} ms", flush=True)
    model.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("/tmp/storepulse-bench-read/readmodel.sqlite3"))
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--live", type=int, default=3, help="requests per endpoint right after a write (0: none)")
    parser.add_argument("--load-only", action="store_true", help="write the data, measure nothing")
    parser.add_argument("--endpoints", default="", help="only these endpoints (comma-separated, e.g. customers)")
    parser.add_argument("--warm", choices=("off", "wait", "nowait"), default="off",
                        help="warm the kept parts at start (ws_gateway/warm_start.py); wait: measure once it is done")
    args = parser.parse_args()
    if args.regenerate and args.db.exists():
        args.db.unlink()
    if not args.db.exists():
        args.db.parent.mkdir(parents=True, exist_ok=True)
        print(f"writing {args.customers:,} customers and {args.orders:,} orders into {args.db}", flush=True)
        t = time.perf_counter()
        model = SqliteReadModel(args.db)
        generate(model, args.customers, args.orders)
        model.close()
        print(f"generated in {time.perf_counter() - t:.1f} s ({args.db.stat().st_size / 1e6:,.0f} MB)", flush=True)
    if args.load_only:
        return
    endpoints = [e for e in ENDPOINTS if not args.endpoints or e[1] in args.endpoints.split(",")]
    port = free_port()
    spawn = multiprocessing.get_context("spawn")
    warmed = spawn.Event()
    started = time.perf_counter()
    server = spawn.Process(target=serve, args=(args.db, port, args.warm, warmed), daemon=True)
    server.start()
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or not server.is_alive():
                    raise SystemExit("the server did not start") from None
                time.sleep(0.05)
        print(f"server up in {time.perf_counter() - started:.1f} s", flush=True)
        if args.warm == "wait":
            warmed.wait()
            print(f"warmed {time.perf_counter() - started:.1f} s after the server process started", flush=True)
        print("baseline: SQLite alone over the period's order rows")
        for period in PERIODS:
            b = baseline(args.db, period, args.repeat)
            print(f"  {period:>3} SELECT count(*): p50 {statistics.median(b['count']) * 1000:7.1f} ms; "
                  f"SELECT the rows (fetchall): p50 {statistics.median(b['rows']) * 1000:7.1f} ms", flush=True)
        print(f"the read API, one request at a time: the first, then {args.repeat} more")
        measure(base, args.repeat, endpoints)
        if args.live:
            print(f"the read API right after a write to today (an order and its customer's profile), {args.live} each")
            live(base, args.db, args.live, endpoints)
    finally:
        server.terminate()
        server.join(10)


if __name__ == "__main__":
    main()
