"""Notifier throughput: signed webhook deliveries per second to a local receiver, beside a bare loop.

A receiver (uvicorn + a raw ASGI app answering 204, in its own process, so it does not share the
notifier's interpreter) listens on 127.0.0.1. In one run, side by side:
- baseline: a bare aiohttp loop (the notifier's HTTP client) POSTing the same bodies with the same headers and the same
  concurrency (no outbox, no signing, no bookkeeping): what the HTTP client alone can do here;
- storepulse: N actions put into the outbox (SQLite file, and a real redis-server), then one Notifier
  delivering them all (claim, sign with standardwebhooks, POST, record every attempt durably),
  timed from its start until the outbox has nothing pending.
(and a bare httpx.AsyncClient loop over 1,000 of them: the reason the notifier uses aiohttp.)
Everything runs on uvloop, as `storepulse` does. Each is run `--rounds` times, alternating; the medians are printed with every round.

    .venv/bin/python bench/notifier.py [--actions 5000] [--rounds 3] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# The E402 noqa below: these imports need the repository on sys.path (run as a script).
import aiohttp  # noqa: E402
import httpx  # noqa: E402
import redis  # noqa: E402
import uvloop  # noqa: E402

from core.config import parse_config  # noqa: E402
from notifier import webhook  # noqa: E402
from notifier.actions import Action, Message, action_key, delivery_id  # noqa: E402
from notifier.outbox import Delivery, Outbox, Result, Status  # noqa: E402
from notifier.redis_outbox import RedisOutbox  # noqa: E402
from notifier.sqlite_outbox import SqliteOutbox  # noqa: E402
from notifier.worker import Notifier, Tuning, wall_ms  # noqa: E402
from tests.helpers import RedisServer, free_port, wait_for  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _receive(port: int) -> None:
    import uvicorn

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        more = True
        while more:
            more = (await receive()).get("more_body", False)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, loop="uvloop", http="httptools",
                lifespan="off", backlog=4096, limit_concurrency=10_000)


def actions(n: int, round_no: int) -> list[Action]:
    now = wall_ms()
    return [Action(action_key("big-order", f"c{i}", f"r{round_no}-e{i}"), "bench", "big-order", "crm", "order.paid", f"c{i}",
                   f"r{round_no}-e{i}", now, now, payload={"order": f"o{i}", "value": {"amount": 12_000 + i, "currency": "EUR"}},
                   message=Message(text=f"order o{i} paid")) for i in range(n)]


def signed(batch: list[Action]) -> list[tuple[bytes, dict[str, str]]]:
    now = wall_ms()
    out = []
    for a in batch:
        d = Delivery(delivery_id(a.key, a.channel), a, Status.PENDING, now, now)
        body = webhook.body(d)
        out.append((body, webhook.headers(SECRET, d.id, now // 1000, body)))
    return out


async def baseline(url: str, batch: list[Action], concurrency: int) -> float:
    """Deliveries/s of a bare aiohttp loop (the notifier's client) posting the same signed bodies (signed untimed)."""
    requests = signed(batch)
    slots = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as client:
        async def one(body: bytes, headers: dict[str, str]) -> None:
            async with slots, client.post(url, data=body, headers=headers) as r:
                assert r.status == 200

        start = time.perf_counter()
        await asyncio.gather(*(one(b, h) for b, h in requests))
        return len(batch) / (time.perf_counter() - start)


async def httpx_loop(url: str, batch: list[Action], concurrency: int) -> float:
    """The same with httpx's AsyncClient: why the notifier uses aiohttp."""
    requests = signed(batch)
    slots = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency)) as client:
        async def one(body: bytes, headers: dict[str, str]) -> bool:
            async with slots:
                try:
                    return (await client.post(url, content=body, headers=headers)).status_code == 200
                except httpx.HTTPError:  # it sees ReadErrors from this receiver now and then: counted out
                    return False

        start = time.perf_counter()
        ok = sum(await asyncio.gather(*(one(b, h) for b, h in requests)))
        return ok / (time.perf_counter() - start)


def storepulse(config_text: str, outbox: Outbox, batch: list[Action], tuning: Tuning) -> tuple[float, float]:
    """(put actions/s, delivered/s) through the outbox and one notifier."""
    start = time.perf_counter()
    for i in range(0, len(batch), 500):  # the dataflow puts a batch per epoch
        outbox.put(batch[i:i + 500], wall_ms())
    put_rate = len(batch) / (time.perf_counter() - start)
    config = parse_config(config_text, {})

    async def run() -> float:
        notifier = Notifier(config, outbox, tuning=tuning)
        stop = asyncio.Event()
        start = time.perf_counter()
        running = asyncio.create_task(notifier.run(stop))
        while (await asyncio.to_thread(outbox.stats)).pending:
            await asyncio.sleep(0.01)
        took = time.perf_counter() - start
        stop.set()
        await running
        return took

    took = uvloop.run(run())
    assert outbox.stats().pending == 0
    delivered = outbox.list("bench", status=Status.DELIVERED, limit=len(batch))
    assert len(delivered) == len(batch), f"{len(delivered)} of {len(batch)} delivered"
    return put_rate, len(batch) / took


class Measured:
    """An outbox whose record() notes, per result, the ms from the receiver's answer to the commit."""

    def __init__(self, inner: Outbox) -> None:
        self.inner = inner
        self.windows: list[float] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def record(self, results: Sequence[Result], now: int) -> None:
        self.inner.record(results, now)
        done = wall_ms()
        self.windows += [done - r.attempt.at - r.attempt.latency_ms for r in results]


def slack_window(url: str, outbox: Outbox, channels: int) -> list[float]:
    """One message to each of `channels` Slack channels (the local receiver as Slack): the duplicate
    window of each, answer to durable record, in ms."""
    config = parse_config('[orgs.bench]\ncurrency = "EUR"\ntoken = "bench-token-0123456789"\n' + "".join(
        f'[orgs.bench.channels.s{i}]\nkind = "slack"\nurl = "{url}"\nallow_private = true\n' for i in range(channels)), {})
    now = wall_ms()
    outbox.put([Action(action_key("big-order", "", f"s{i}"), "bench", "big-order", f"s{i}", "order.paid", "", f"s{i}", now, now,
                       message=Message(slack_text=f"order {i}")) for i in range(channels)], now)
    measured = Measured(outbox)

    async def run() -> None:
        notifier = Notifier(config, measured, tuning=Tuning())  # type: ignore[arg-type]  # Measured passes every call on
        stop = asyncio.Event()
        running = asyncio.create_task(notifier.run(stop))
        while (await asyncio.to_thread(outbox.stats)).pending:
            await asyncio.sleep(0.01)
        stop.set()
        await running

    uvloop.run(run())
    return measured.windows


def _quantiles(ms: list[float]) -> str:
    q = statistics.quantiles(ms, n=100)
    return f"p50 {q[49]:.1f} ms, p99 {q[98]:.1f} ms, max {max(ms):.1f} ms over {len(ms)} messages"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--actions", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=100)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--slack-channels", type=int, default=200, help="Slack channels, one message each, for the duplicate window")
    args = ap.parse_args()
    port = free_port()
    receiver = multiprocessing.get_context("spawn").Process(target=_receive, args=(port,), daemon=True)
    receiver.start()
    url = f"http://127.0.0.1:{port}/hook"
    wait_for(lambda: _up(url), 20, "the receiver")
    config_text = (f'[orgs.bench]\ncurrency = "EUR"\ntoken = "bench-token-0123456789"\n[orgs.bench.channels.crm]\n'
                   f'kind = "webhook"\nurl = "{url}"\nsecret = "{SECRET}"\nallow_private = true\n')
    tuning = Tuning(batch=args.batch, concurrency=args.concurrency)
    results: dict[str, list[float]] = {"baseline": [], "httpx": [], "sqlite": [], "redis": [], "put sqlite": [], "put redis": []}
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp) / "redis")
        try:
            for r in range(args.rounds):
                batch = actions(args.actions, r)
                results["baseline"].append(uvloop.run(baseline(url, batch, args.concurrency)))
                results["httpx"].append(uvloop.run(httpx_loop(url, batch[:1000], args.concurrency)))
                sqlite = SqliteOutbox(Path(tmp) / f"outbox-{r}.sqlite3")
                put, rate = storepulse(config_text, sqlite, batch, tuning)
                sqlite.close()
                results["put sqlite"].append(put)
                results["sqlite"].append(rate)
                redis.Redis.from_url(server.url).flushdb()
                red = RedisOutbox(server.url)
                put, rate = storepulse(config_text, red, batch, tuning)
                red.close()
                results["put redis"].append(put)
                results["redis"].append(rate)
                print(f"round {r + 1}: baseline {results['baseline'][-1]:,.0f}/s  sqlite {results['sqlite'][-1]:,.0f}/s  "
                      f"redis {results['redis'][-1]:,.0f}/s", flush=True)
            windows = {"sqlite": slack_window(url, SqliteOutbox(Path(tmp) / "slack.sqlite3"), args.slack_channels)}
            redis.Redis.from_url(server.url).flushdb()
            windows["redis"] = slack_window(url, RedisOutbox(server.url), args.slack_channels)
        finally:
            server.stop()
            receiver.terminate()
    print(f"\n{args.actions} signed webhooks per round, concurrency {args.concurrency}, claim batch {args.batch}, "
          f"{args.rounds} rounds; medians:")
    base = statistics.median(results["baseline"])
    print(f"  baseline: bare aiohttp loop             {base:8,.0f} deliveries/s")
    print(f"  (bare httpx loop, 1,000 of them         {statistics.median(results['httpx']):8,.0f} deliveries/s)")
    for name in ("sqlite", "redis"):
        rate = statistics.median(results[name])
        print(f"  storepulse notifier, {name:<6} outbox    {rate:8,.0f} deliveries/s  ({rate / base:.2f} of the baseline); "
              f"put {statistics.median(results['put ' + name]):,.0f} actions/s")
    print("Slack duplicate window (Slack's answer to the durable record of the delivery):")
    for name, ms in windows.items():
        print(f"  {name:<6} outbox: {_quantiles(ms)}")


def _up(url: str) -> bool:
    try:
        return httpx.post(url, content=b"{}", timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
