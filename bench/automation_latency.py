"""Accepted event -> automation webhook received, at a steady rate (issue 10's speed target: p99 < 1 s at
2,000 events/s with one event in ten firing).

`storepulse up` (embedded SQLite) with one automation (order.paid, order_value >= 100.00, to a signed
webhook channel) and a local receiver in its own process that notes when each webhook arrives. The
driver posts events-API batches (20 events every 10 ms = 2,000/s; every tenth order over 100.00),
each event stamped with the time it was sent. Printed side by side, from the same run:
- baseline: sent -> accepted (the events API answered: the event is durably in the log);
- sent -> webhook received (log -> dataflow -> automation -> outbox -> notifier -> signed POST).

    .venv/bin/python bench/automation_latency.py [--rate 2000] [--seconds 20] [--every 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import queue
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from bench import ingest  # noqa: E402  (the repository is on sys.path: bench/ is a namespace package)
from tests.helpers import free_port, wait_for  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = "bench-site-key"


def _receive(port: int, results: Any) -> None:
    """A webhook receiver: notes (order, arrival time) of every delivery."""
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        arrived = time.time()
        if scope["method"] == "POST":
            data = json.loads(body)["data"]["data"]
            results.put((str(data.get("order")), arrived))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", loop="uvloop", http="httptools")


def config(receiver_port: int) -> str:
    return f"""
[orgs.acme]
timezone = "Europe/Berlin"
currency = "EUR"
token = "bench-token-0123456789abcdef"

[orgs.acme.stores.site]
provider = "events"
secret = "{KEY}"

[orgs.acme.channels.crm]
kind = "webhook"
url = "http://127.0.0.1:{receiver_port}/hook"
secret = "{SECRET}"
allow_private = true

[orgs.acme.automations.big-order]
trigger = "order.paid"
if = {{ order_value = {{ gte = "100.00" }} }}
send = ["crm"]
"""


async def drive(port: int, rate: int, seconds: float, every: int) -> tuple[dict[str, float], list[float]]:
    """Posts the events; (order -> time sent) of the orders that should fire, and each batch's accept latency."""
    per_batch = max(1, rate // 100)  # a batch every 10 ms
    sent: dict[str, float] = {}
    accepted: list[float] = []
    n = 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                 headers={"Authorization": f"Bearer {KEY}"}) as client:
        start = time.monotonic()
        tick = 0
        pending: set[asyncio.Task[None]] = set()

        async def post(events: list[dict[str, object]], fires: list[str]) -> None:
            t0 = time.time()
            for order in fires:
                sent[order] = t0
            r = await client.post("/v1/events", json={"events": events})
            r.raise_for_status()
            accepted.append(time.time() - t0)

        while time.monotonic() - start < seconds:
            events, fires = [], []
            now_ms = int(time.time() * 1000)
            for _ in range(per_batch):
                order = f"o{n}"
                big = n % every == 0
                events.append({"type": "order_paid", "id": f"e{n}", "time": now_ms, "order": order, "customer": f"c{n % 5000}",
                               "amount": "150.00" if big else "20.00", "currency": "EUR",
                               "items": [{"product": "mug", "qty": 1, "price": "150.00" if big else "20.00"}]})
                if big:
                    fires.append(order)
                n += 1
            task = asyncio.create_task(post(events, fires))
            pending.add(task)
            task.add_done_callback(pending.discard)
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.01 - time.monotonic()))
        await asyncio.gather(*pending)
    return sent, accepted


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=2000, help="events per second")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--every", type=int, default=10, help="one event in this many fires the automation")
    args = ap.parse_args()
    results: Any = multiprocessing.Queue()
    receiver_port = free_port()
    receiver = multiprocessing.Process(target=_receive, args=(receiver_port, results), daemon=True)
    receiver.start()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "storepulse.toml").write_text(config(receiver_port))
        http_port, ws_port = free_port(), free_port()
        proc = ingest.Proc("up", [*ingest.STOREPULSE, "up", "--config", str(work / "storepulse.toml"), "--data-dir",
                                  str(work / "data"), "--http-port", str(http_port), "--ws-port", str(ws_port)],
                           work / "up.log", cwd=work)
        try:
            wait_for(lambda: ingest.http_ok(http_port), 60, "storepulse up")
            sent, accepted = asyncio.run(drive(http_port, args.rate, args.seconds, args.every))
            arrived: dict[str, float] = {}
            deadline = time.monotonic() + 60
            while len(arrived) < len(sent) and time.monotonic() < deadline:
                try:
                    order, t = results.get(timeout=1)
                    arrived.setdefault(order, t)
                except queue.Empty:  # keep waiting until the deadline
                    continue
        finally:
            proc.stop()
            receiver.terminate()
    latencies = [arrived[o] - sent[o] for o in sent if o in arrived]
    events = int(args.rate * args.seconds)
    print(f"{events:,} events at {args.rate:,}/s, one in {args.every} firing: {len(sent):,} webhooks expected, "
          f"{len(arrived):,} received ({len([o for o in arrived if o not in sent])} unexpected)")
    print(f"  baseline: sent -> accepted (events API, durable)  p50 {statistics.median(accepted) * 1000:7.1f} ms  "
          f"p99 {pct(accepted, 0.99):7.1f} ms")
    if latencies:
        print(f"  sent -> signed webhook received                  p50 {statistics.median(latencies) * 1000:7.1f} ms  "
              f"p99 {pct(latencies, 0.99):7.1f} ms  max {max(latencies) * 1000:7.1f} ms  (target p99 < 1000 ms)")


if __name__ == "__main__":
    main()
