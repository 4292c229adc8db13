"""The Redis read model by day (state/redis_readmodel.py) against its previous layout (one hash per record
kind: main at BASELINE, its RedisReadModel read from git history), in one run, on one real redis-server:
what a write costs, `records` of today's orders over 1, 7 and 90 days, and read API requests right after
a write.

Both layouts hold the same data (bench/read_api.py's shop, written through each model's own `write`,
20,000 changes a call): customers registered over two years, paid orders over the last 90 days, carts and
day records; the new layout in database 0, the old one in database 1. The read API runs in this process
(the gateway's routes over httpx's ASGI transport, no socket): per endpoint, the first request, then each
of --live requests right after a write like the dataflow's for a paid order (one of today's orders and
its customer's profile, at a newer version). The old layout has no day stamps, so its read side computes
each list from the whole period every time; the new one recomputes the days whose stamp moved (today).

    .venv/bin/python bench/redis_read.py [--customers 300000] [--orders 300000] [--repeat 5] [--live 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import redis
from msgspec import Raw

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need the repository on sys.path (run as a script).
from bench.read_api import CONFIG, NOW, NOW_MS, ORG, TOKEN, TZ, generate  # noqa: E402
from core.changes import Change, Record  # noqa: E402
from core.records import Customer, Order  # noqa: E402
from state.day_stamps import DayStamped  # noqa: E402
from state.readmodel import ReadModel  # noqa: E402
from state.redis_readmodel import RedisReadModel  # noqa: E402
from storepulse.gc_policy import SERVERS, settle  # noqa: E402
from tests.helpers import free_port, wait_for  # noqa: E402

BASELINE = "153b4302ec3b4a1c671e197e08341d9c805d40a4"  # main before records were kept by day
TODAY = NOW.astimezone(TZ).date()
ENDPOINTS: list[tuple[str, dict[str, Any]]] = [
    ("figures", {"period": "90d"}),
    ("orders", {"period": "7d", "sort": "latest", "limit": 20}),
    ("orders", {"period": "90d", "sort": "best", "limit": 10}),
    ("customers", {"period": "90d", "sort": "revenue", "limit": 20}),
    ("products", {"period": "30d", "sort": "revenue", "limit": 10}),
]


def old_model(url: str) -> ReadModel:
    """main's RedisReadModel at BASELINE, exactly as it was (from this repository's history)."""
    shown = subprocess.run(["git", "-C", str(REPO), "show", f"{BASELINE}:state/redis_readmodel.py"],
                           capture_output=True, text=True)
    if shown.returncode != 0:
        raise SystemExit(f"the baseline needs this repository's history (commit {BASELINE}): {shown.stderr.strip()}")
    source = shown.stdout
    module = types.ModuleType("baseline_redis_readmodel")
    exec(compile(source, "baseline:state/redis_readmodel.py", "exec"), module.__dict__)
    model: ReadModel = module.RedisReadModel(url)
    return model


class Both:
    """What bench/read_api.py's `generate` loads into: each batch written through both models."""

    def __init__(self, *models: ReadModel) -> None:
        self.models, self.took = models, [0.0] * len(models)

    def bulk_load(self, changes: list[Change]) -> None:
        for i, m in enumerate(self.models):
            t = time.perf_counter()
            m.write(changes)
            self.took[i] += time.perf_counter() - t


def _ms(xs: list[float]) -> str:
    return f"{statistics.median(xs) * 1000:8.1f} ms"


def time_records(model: ReadModel, repeat: int) -> dict[int, tuple[list[float], int]]:
    out = {}
    for span in (1, 7, 90):
        first = (TODAY - timedelta(days=span - 1)).isoformat()
        times, n = [], 0
        for _ in range(repeat):
            t = time.perf_counter()
            n = len(model.records(ORG, Order, first, TODAY.isoformat()))
            times.append(time.perf_counter() - t)
        out[span] = (times, n)
    return out


def time_api(model: ReadModel, live: int) -> list[tuple[str, float, list[float]]]:
    from core.config import parse_config
    from state.sqlite_connections import SqliteConnectionStats
    from state.sqlite_rejected import SqliteRejectedStore
    from web.app import build_app
    from ws_gateway import api
    from ws_gateway.limits import ApiLimits

    tmp = Path(tempfile.mkdtemp(prefix="sp-bench-redis-read-"))
    side = api.ReadSide(parse_config(CONFIG, {}), model, SqliteRejectedStore(tmp / "rejected.sqlite3"),
                        SqliteConnectionStats(tmp / "connections.sqlite3"), ws_port=0, now=lambda: NOW,
                        limits=ApiLimits(rate=1e9, burst=1e9))
    app = build_app(api.routes, api.handlers, {"read_side": side})
    today = TODAY.isoformat()
    order = next(r for r in model.records(ORG, Order, today, today) if r.value.customer is not None)
    profile = next(r for r in model.records(ORG, Customer) if r.key == order.value.customer)

    # The dataflow's versions (events * 2**16: flows/organisation.py) stay below 2**53, which Redis's Lua
    # compares exactly (its numbers are doubles): not time_ns().
    versions = [1_000]

    async def run() -> list[tuple[str, float, list[float]]]:
        out = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=900,
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            async def get(endpoint: str, params: dict[str, Any]) -> float:
                t = time.perf_counter()
                r = await client.get(f"/api/v1/orgs/{ORG}/{endpoint}", params=params)
                r.raise_for_status()
                return time.perf_counter() - t

            for endpoint, params in ENDPOINTS:
                first = await get(endpoint, params)
                after: list[float] = []
                for _ in range(live):
                    versions[0] += 1
                    v = versions[0]
                    await asyncio.to_thread(model.write, [Record(ORG, v, Order.KIND, order.key, today, order.value),
                                                          Record(ORG, v, Customer.KIND, profile.key, profile.day, profile.value)])
                    after.append(await get(endpoint, params))
                out.append((f"/{endpoint} " + ",".join(f"{k}={v}" for k, v in params.items()), first, after))
        return out

    try:
        return asyncio.run(run())
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_cost(port: int, n: int) -> None:
    """What the day layout costs the writer: n orders through `write` in batches of 500 as the dataflow's
    sink writes them, then again at a newer version (a tenth of them moving day), into an empty database,
    per layout, alternated twice."""
    rng = random.Random(3)
    days = [(TODAY - timedelta(days=d)).isoformat() for d in range(90)]
    first = [Record(ORG, 1, Order.KIND, f"web:w{i}", rng.choice(days), Order(
        "web", f"w{i}", f"cus_{i:07d}", "web", NOW_MS, NOW_MS, "EUR", 1000 + i % 5000, 0, False, Raw(b'[["p1",1,1000,""]]')))
        for i in range(n)]
    again = [Record(ORG, 2, r.kind, r.key, rng.choice(days) if i % 10 == 0 else r.day, r.value) for i, r in enumerate(first)]
    took: dict[str, list[tuple[float, float]]] = {"new": [], "old": []}
    for _ in range(2):
        for name, make in (("new", RedisReadModel), ("old", old_model)):
            redis.Redis(port=port, db=2).flushdb()
            model = make(f"redis://127.0.0.1:{port}/2")
            times = []
            for changes in (first, again):
                t = time.perf_counter()
                for i in range(0, n, 500):
                    model.write(changes[i:i + 500])
                times.append(time.perf_counter() - t)
            took[name].append((times[0], times[1]))
            model.close()
    redis.Redis(port=port, db=2).flushdb()
    for name, runs in took.items():
        print(f"  {name}: " + "; ".join(f"insert {a / n * 1e6:.1f} µs, newer version {b / n * 1e6:.1f} µs" for a, b in runs)
              + " a record")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=300_000)
    parser.add_argument("--orders", type=int, default=300_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--live", type=int, default=5)
    parser.add_argument("--write-orders", type=int, default=50_000, help="orders of the write-cost comparison (0: none)")
    args = parser.parse_args()
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed: `apt-get install redis-server`")
    workdir, port = Path(tempfile.mkdtemp(prefix="sp-bench-redis-")), free_port()
    server = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                               "--dir", str(workdir)], stdout=subprocess.DEVNULL)
    try:
        wait_for(lambda: _pings(port), 10, "redis-server")
        new, old = RedisReadModel(f"redis://127.0.0.1:{port}/0"), old_model(f"redis://127.0.0.1:{port}/1")
        assert isinstance(new, DayStamped) and not isinstance(old, DayStamped)
        if args.write_orders:
            print(f"the writer, {args.write_orders:,} orders in batches of 500, per record (two runs each):", flush=True)
            write_cost(port, args.write_orders)
        print(f"loading {args.customers:,} customers and {args.orders:,} orders into both layouts", flush=True)
        both = Both(new, old)
        generate(both, args.customers, args.orders)  # type: ignore[arg-type]  # only bulk_load is called
        used = redis.Redis(port=port).info("memory")["used_memory"]
        print(f"written through write(): new {both.took[0]:.1f} s, old {both.took[1]:.1f} s", flush=True)
        print(f"records(org, Order, first, today), median of {args.repeat}:")
        got = {name: time_records(m, args.repeat) for name, m in (("new", new), ("old", old))}
        for span in (1, 7, 90):
            (nt, n), (ot, o) = got["new"][span], got["old"][span]
            assert n == o, (span, n, o)
            print(f"  {span:>2} days ({n:>7,} orders): new {_ms(nt)}  old {_ms(ot)}  ({statistics.median(ot) / statistics.median(nt):.1f}x)")
        print(f"the read API (in process): the first request, then {args.live} each right after a write to today")
        settle(SERVERS)  # the garbage collector as `storepulse gateway` runs it
        api_times = {name: time_api(m, args.live) for name, m in (("new", new), ("old", old))}
        for (what, nf, na), (_, of, oa) in zip(api_times["new"], api_times["old"], strict=True):
            print(f"  {what:<46} first: new {_ms([nf])} old {_ms([of])} | after a write, p50: new {_ms(na)} old {_ms(oa)}",
                  flush=True)
        old.close()
        t = time.perf_counter()
        moved = RedisReadModel(f"redis://127.0.0.1:{port}/1")  # the old layout moved into days, as on upgrade
        print(f"opening the old layout with this version moved {moved.moved:,} records into days in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        assert len(moved.records(ORG, Order)) == len(new.records(ORG, Order))
        moved.close()
        new.close()
        redis.Redis(port=port, db=1).flushdb()  # the old layout gone: what is left is the new one's
        alone = redis.Redis(port=port).info("memory")["used_memory"]
        print(f"memory: new layout {alone / 1e6:,.0f} MB, old layout {(used - alone) / 1e6:,.0f} MB", flush=True)
    finally:
        server.terminate()
        server.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=0.5).ping())
    except redis.exceptions.ConnectionError:
        return False


if __name__ == "__main__":
    main()
