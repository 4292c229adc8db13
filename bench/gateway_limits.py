"""The read side against greedy and hostile clients, through a real `storepulse up` (embedded SQLite).

1. Fairness of the read API: organisation "calm" asks for its figures one request after another,
   first alone, then while organisation "greedy" floods hourly series over a year from 16
   connections that ignore Retry-After. Prints calm's latency (p50 / p95 / max) and status codes,
   and what greedy got back.
2. WebSocket floods: 100 clients of "greedy" each send frames as fast as the server takes them
   (large frames, then a second wave of small ones), then close. Prints the close codes they got,
   the gateway process's RSS before, at the peak and after they left, and whether calm's dashboard
   client kept receiving its updates during the flood.

    .venv/bin/python bench/gateway_limits.py [--src TREE] [--flood-seconds 10] [--days 365]

`--server-args "--api-concurrency 2"` passes limits to the server.
`--src TREE` runs the server from another source tree (`git archive <commit> | tar -x -C TREE`),
e.g. the commit before the limits, to print the same numbers side by side across two runs.
Every process started here is started in its own session and stopped by its process group.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench import ingest as bi  # noqa: E402  (the repository is on sys.path: bench/ is a namespace package)

# The E402 noqa below: these imports need what is set up above (the repository on sys.path, run as a script).
from storepulse import STOREPULSE  # noqa: E402
from tests.helpers import free_port, payment_intent_succeeded, stripe_signature  # noqa: E402

KEY = "greedy-site-key-0123456789"
TOKENS = {"greedy": "greedy-token-0123456789", "calm": "calm-token-0123456789"}
CALM_SECRET = "whsec_calm_secret"
CONFIG = f"""
[orgs.greedy]
timezone = "Europe/Berlin"
currency = "EUR"
token = "{TOKENS['greedy']}"
[orgs.greedy.stores.greedy-site]
provider = "events"
secret = "{KEY}"

[orgs.calm]
timezone = "Europe/Berlin"
currency = "EUR"
token = "{TOKENS['calm']}"
[orgs.calm.stores.calm-stripe]
provider = "stripe"
secret = "{CALM_SECRET}"
"""
BERLIN = ZoneInfo("Europe/Berlin")


def start(workdir: Path, src: Path, procs: list, extra: list[str]) -> tuple[int, int, int]:
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "storepulse.toml").write_text(CONFIG)
    http_port, ws_port = free_port(), free_port()
    cmd = [*STOREPULSE, "up", "--config", str(workdir / "storepulse.toml"), "--data-dir", str(workdir / "data"),
           "--http-port", str(http_port), "--ws-port", str(ws_port), *extra]
    p = bi.Proc("storepulse up", cmd, workdir / "storepulse.log", env={**os.environ, "PYTHONPATH": str(src)}, cwd=src)
    procs.append(p)
    bi.wait_until(lambda: bi.http_ok(http_port), 60, "storepulse up", p)
    return p.pid, http_port, ws_port


def load_history(base: str, days: int) -> int:
    """One paid order an hour for `days` days up to now: a year of hour buckets for greedy."""
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    hours = days * 24
    events = [{"type": "order_paid", "id": f"h{i}", "time": int((now - dt.timedelta(hours=i)).timestamp() * 1000),
               "order": f"o{i}", "visitor": f"v{i % 500}", "amount": "12.50", "currency": "EUR"} for i in range(hours)]
    for i in range(0, hours, 1000):
        r = httpx.post(f"{base}/v1/events", content=orjson.dumps({"events": events[i:i + 1000]}), timeout=60,
                       headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
        r.raise_for_status()
    return hours


def get(client: httpx.Client, base: str, org: str, path: str, **params: object) -> httpx.Response:
    return client.get(f"{base}/api/v1/orgs/{org}/{path}", params=params,
                      headers={"Authorization": f"Bearer {TOKENS[org]}"}, timeout=30)


def calm_latencies(base: str, seconds: float) -> tuple[list[float], Counter[int]]:
    lat: list[float] = []
    codes: Counter[int] = Counter()
    with httpx.Client() as c:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t0 = time.perf_counter()
            r = get(c, base, "calm", "figures", period="all")
            lat.append((time.perf_counter() - t0) * 1000)
            codes[r.status_code] += 1
            time.sleep(0.05)
    return lat, codes


def _flood(base: str, seconds: float, conns: int, out) -> None:
    today = dt.datetime.now(BERLIN).date()
    params = {"metric": "gross_revenue", "granularity": "hour", "from": (today - dt.timedelta(days=365)).isoformat(),
              "to": today.isoformat()}
    codes: Counter[int] = Counter()
    retry_after: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    lock = threading.Lock()

    def worker() -> None:
        with httpx.Client() as c:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                r = get(c, base, "greedy", "series", **params)
                with lock:
                    codes[r.status_code] += 1
                    if r.status_code == 429:
                        retry_after[r.headers.get("retry-after", "-")] += 1
                        errors[r.json().get("error", "")[:90]] += 1

    threads = [threading.Thread(target=worker) for _ in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.send((dict(codes), dict(retry_after), dict(errors)))


def fairness(base: str, seconds: float) -> None:
    with httpx.Client() as c:  # warm both paths once
        get(c, base, "calm", "figures", period="all").raise_for_status()
    alone, alone_codes = calm_latencies(base, 3)
    parent, child = mp.Pipe()
    flood = mp.get_context("spawn").Process(target=_flood, args=(base, seconds, 16, child))
    flood.start()
    time.sleep(0.5)
    during, during_codes = calm_latencies(base, seconds - 1)
    flood.join()
    codes, retry_after, errors = parent.recv()

    def row(name: str, lat: list[float], cs: Counter[int]) -> str:
        return (f"  calm figures {name:<22} n={len(lat):4d}  p50 {bi.percentile(lat, 50):7.1f} ms  "
                f"p95 {bi.percentile(lat, 95):7.1f} ms  max {max(lat):7.1f} ms  codes {dict(cs)}")

    print("read API fairness (16 connections of greedy asking hourly series over 365 days, ignoring Retry-After)")
    print(row("alone", alone, alone_codes))
    print(row("during greedy's flood", during, during_codes))
    print(f"  greedy got: {codes}; Retry-After values: {retry_after}")
    for e, n in errors.items():
        print(f"    {n:6d} x {e}")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


async def _flooder(url: str, size: int, frames: int, ready: asyncio.Semaphore, go: asyncio.Event) -> str:
    """Authenticates, waits for the other flooders, then sends `frames` pings of `size` bytes, reading
    what the server sends; then closes. The close code it ends with."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    try:
        async with connect(url, max_size=None, open_timeout=30, close_timeout=5) as ws:
            await ws.send(orjson.dumps({"type": "auth", "token": TOKENS["greedy"]}).decode())
            await asyncio.wait_for(ws.recv(), 30)  # the snapshot
            ready.release()
            await go.wait()
            payload = orjson.dumps({"type": "ping", "pad": "x" * size}).decode()

            async def drain() -> None:  # reads what the server sends, so its close frame gets through
                with contextlib.suppress(ConnectionClosed):
                    async for _ in ws:
                        pass

            reading = asyncio.create_task(drain())
            try:
                for i in range(frames):
                    await asyncio.wait_for(ws.send(payload), 2)  # a server that stops reading: give up
                    if i % 20 == 0:
                        await asyncio.sleep(0)  # as a network would, let the server's close frame be read
            except (TimeoutError, ConnectionClosed):
                pass
            await ws.close()
            reading.cancel()
            await ws.wait_closed()
            return f"{ws.close_code}" if ws.close_code is not None else "none"
    except (ConnectionClosed, OSError, TimeoutError) as exc:
        return type(exc).__name__


async def _ws_flood(ws_port: int, clients: int, size: int, frames: int) -> Counter[str]:
    url = f"ws://127.0.0.1:{ws_port}/v1/live"
    ready, go = asyncio.Semaphore(0), asyncio.Event()
    floods = [asyncio.create_task(_flooder(url, size, frames, ready, go)) for _ in range(clients)]
    for _ in range(clients):
        await ready.acquire()
    go.set()
    return Counter(await asyncio.gather(*floods))


def websocket_flood(base: str, ws_port: int, pid: int) -> None:
    from websockets.sync.client import connect

    print("WebSocket flood (100 clients of greedy; RSS of the gateway process)")
    before = rss_kb(pid)
    print(f"  RSS before: {before / 1024:.1f} MiB")
    seen: list[int] = []
    stop = threading.Event()

    def calm_dashboard() -> None:
        with connect(f"ws://127.0.0.1:{ws_port}/v1/live", open_timeout=30) as ws:
            ws.send(orjson.dumps({"type": "auth", "token": TOKENS["calm"]}).decode())
            while not stop.is_set():
                try:
                    msg = orjson.loads(ws.recv(timeout=0.5))
                except TimeoutError:
                    continue
                if msg.get("type") == "figures":
                    seen.append(msg["figures"]["total"]["all"]["paid_orders"])

    def calm_payments() -> None:
        n = 0
        while not stop.is_set():
            body = payment_intent_succeeded(f"evt_calm_{n}", f"pi_calm_{n}", 100)
            httpx.post(f"{base}/webhooks/stripe/calm-stripe", content=body, timeout=30,
                       headers={"Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, CALM_SECRET)})
            n += 1
            time.sleep(0.5)

    dash = threading.Thread(target=calm_dashboard)
    pay = threading.Thread(target=calm_payments)
    dash.start()
    pay.start()
    peak = before
    for size, frames in ((60_000, 200), (1_000, 5_000)):
        t0 = time.monotonic()
        result: dict[str, Counter[str]] = {}

        def run(size: int = size, frames: int = frames, result: dict[str, Counter[str]] = result) -> None:
            result["codes"] = asyncio.run(_ws_flood(ws_port, 100, size, frames))

        flood = threading.Thread(target=run)
        flood.start()
        while flood.is_alive():
            peak = max(peak, rss_kb(pid))
            time.sleep(0.05)
        print(f"  {frames} frames of {size:,} B from each of 100 clients: {time.monotonic() - t0:.1f} s, "
              f"close codes {dict(result['codes'])}")
    time.sleep(3)  # the server's collection after the last close has run
    stop.set()
    dash.join()
    pay.join()
    after = rss_kb(pid)
    print(f"  RSS peak {peak / 1024:.1f} MiB, after they left {after / 1024:.1f} MiB "
          f"(+{(after - before) / 1024:.1f} MiB)")
    print(f"  calm's dashboard received {len(seen)} figures pushes during the flood (paid orders {seen[:1]} .. {seen[-1:]})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--src", type=Path, default=REPO, help="source tree to run the server from")
    ap.add_argument("--flood-seconds", type=float, default=10)
    ap.add_argument("--days", type=int, default=365, help="days of hourly history for greedy")
    ap.add_argument("--server-args", default="", help="more flags for `storepulse up`, e.g. \"--api-concurrency 2\"")
    ap.add_argument("--skip-ws", action="store_true", help="measure the read API only")
    args = ap.parse_args()
    procs: list = []
    try:
        with tempfile.TemporaryDirectory(prefix="sp-gwlimits-") as tmp:
            pid, http_port, ws_port = start(Path(tmp), args.src.resolve(), procs, args.server_args.split())
            base = f"http://127.0.0.1:{http_port}"
            n = load_history(base, args.days)
            with httpx.Client() as c:
                bi.wait_until(lambda: get(c, base, "greedy", "figures", period="all").json().get("paid_orders") == n,
                              300, f"{n} paid orders in greedy's figures")
            print(f"source {args.src}; greedy holds {n} paid orders, one an hour")
            fairness(base, args.flood_seconds)
            if not args.skip_ws:
                websocket_flood(base, ws_port, pid)
    finally:
        for p in procs:
            p.stop()


if __name__ == "__main__":
    main()
