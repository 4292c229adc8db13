"""The demo's start-up: how long `storepulse up` takes to take in the simulator's 90 days of history,
against a bare HTTP server taking the same requests from the same client, in the same run.

    .venv/bin/python bench/demo_history.py [--days 90]

1. generate: the pure simulator (storepulse/demo/shop.py + wire.py) making every request of the history.
2. bare: a bare handler on the same stack (web.app.build_app, storepulse.servers.http_server: Starlette,
   uvicorn, uvloop) answering 200 to every POST, in its own process, sent the same requests by the same
   sender (storepulse/demo/run.py Sender, 8 in flight) as the demo uses.
3. storepulse: `storepulse up --no-simulator` (embedded, fresh data dir), the same requests; then how
   long until the dataflow has folded them (GET /figures?period=90d shows every paid order).

Every process started here is in its own session and killed by its process group at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storepulse import STOREPULSE  # noqa: E402
from storepulse.configfile import demo_credentials, load_config  # noqa: E402
from storepulse.demo.run import Sender, Settings, _stores, posts  # noqa: E402
from storepulse.demo.shop import DAY_MS, HOUR_MS, Happenings, hour  # noqa: E402
from tests.helpers import free_port, wait_for  # noqa: E402

BARE = """
import sys
from starlette.responses import Response
from starlette.routing import Route
from storepulse.servers import http_server
from web.app import build_app
import uvloop

async def ok(request):
    await request.body()
    return Response(b'{"status":"accepted"}', media_type="application/json")

app = build_app([Route("/{path:path}", ok, methods=["POST"])])
uvloop.run(http_server(app, "127.0.0.1", int(sys.argv[1])).serve())
"""


def start(cmd: list[str], cwd: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def days_of(settings: Settings, anchor: int) -> list[Happenings]:
    out = []
    for day in range(anchor - settings.days * DAY_MS, anchor, DAY_MS):
        h = Happenings()
        for t in range(day, day + DAY_MS, HOUR_MS):
            one = hour(settings.seed, t)
            h.site += one.site
            h.orders += one.orders
            h.registrations += one.registrations
        out.append(h)
    return out


async def send(base: str, requests: list[tuple[list, list]]) -> tuple[float, int, int]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        sender = Sender(client)
        began = time.perf_counter()
        for batches, hooks in requests:
            await sender.send_all(batches, hooks)
        return time.perf_counter() - began, sender.sent, sender.refused


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=90)
    args = ap.parse_args()
    settings = Settings(days=args.days)
    tmp = Path(tempfile.mkdtemp(prefix="bench-demo-"))
    http_port, bare_port = free_port(), free_port()
    sp = start([*STOREPULSE, "up", "--no-simulator", "--data-dir", str(tmp / "data"), "--http-port", str(http_port),
                "--ws-port", str(free_port())], tmp, tmp / "up.log")
    bare = start([sys.executable, "-c", BARE, str(bare_port)], ROOT, tmp / "bare.log")
    try:
        wait_for(lambda: "storepulse up ready" in (tmp / "up.log").read_text(), 60, "storepulse up")
        wait_for(lambda: httpx.post(f"http://127.0.0.1:{bare_port}/x").status_code == 200, 30, "the bare server")
        config = load_config(tmp / "data" / "demo.toml")
        stores = _stores(config.orgs["demo"])
        now_ms = int(time.time() * 1000)
        anchor = now_ms - now_ms % HOUR_MS
        began = time.perf_counter()
        happened = days_of(settings, anchor)
        requests = [posts(h, stores, int(time.time()), anchor) for h in happened]
        generate = time.perf_counter() - began
        n_requests = sum(len(b) + len(w) for b, w in requests)
        n_events = sum(len(h.site) for h in happened)
        paid = sum(len(h.orders) for h in happened) + sum(1 for h in happened for e in h.site
                                                          if e.fields["type"] == "order_paid" and e.time < anchor)
        bare_s, _, _ = asyncio.run(send(f"http://127.0.0.1:{bare_port}", requests))
        # Stripe signatures are checked against the clock: sign again just before sending to storepulse
        requests = [posts(h, stores, int(time.time()), anchor) for h in happened]
        sp_began = time.perf_counter()
        sp_s, sent, refused = asyncio.run(send(f"http://127.0.0.1:{http_port}", requests))
        token, _ = demo_credentials(tmp / "data" / "demo.toml")

        def folded() -> bool:
            r = httpx.get(f"http://127.0.0.1:{http_port}/api/v1/orgs/demo/figures", params={"period": "all"},
                          headers={"Authorization": f"Bearer {token}"}, timeout=10)
            return bool(r.json()["paid_orders"] >= paid)

        wait_for(folded, 300, "the dataflow to fold the history")
        fold_s = time.perf_counter() - sp_began
        print(f"{settings.days} days of demo history: {n_requests} requests, {n_events} site events, {paid} paid orders "
              f"(load average {os.getloadavg()[0]:.1f})")
        print(f"| generate (pure) | {generate:.2f} s |")
        print(f"| bare HTTP server, same requests | {bare_s:.2f} s ({n_requests / bare_s:,.0f} req/s) |")
        print(f"| storepulse up, accepted and durable | {sp_s:.2f} s ({n_requests / sp_s:,.0f} req/s), "
              f"{sp_s / bare_s:.1f}x the bare server; {refused} of {sent} refused |")
        print(f"| storepulse up, folded by the dataflow (from the first request) | {fold_s:.2f} s |")
    finally:
        stop(sp)
        stop(bare)


if __name__ == "__main__":
    main()
