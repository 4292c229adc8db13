"""Accepted event -> automation webhook received, and -> segment change on a WebSocket client, at a steady
rate (issue 10's and issue 9's speed targets: p99 < 1 s at 2,000 events/s, one event in ten firing).

`storepulse up` (embedded SQLite) with one automation (order.paid, order_value >= 100.00, to a signed
webhook channel), a local webhook receiver and a WebSocket client, each in its own process, noting when
each webhook and each segment change arrives. The driver posts events-API batches (20 events every
10 ms = 2,000/s; every tenth order over 100.00; customers c0..c4999 buy again and again, so the
predefined segments' entries and exits follow). First a warm-up (`--warmup`, by default 5,000 events: each
customer's first order, which enters it into about twelve segments at once) is sent and folded, so the
measured orders are repeat orders; `--warmup 0` measures the cold start instead. Each measured event is
stamped with the time it was sent.

Where the time goes, per firing event, read from outside the server (no production code is timed for
this): a poller thread notes every 2 ms the newest row of the event log (`events.seq`) and of the read
model's change feed (`changes.seq`); after the run, each fired event is found in those rows, and in the
outbox (its delivery's `created_at`, stamped by the dataflow's put, and its first attempt's start,
stamped by the notifier). Stages, each as time since the event was sent:

    accepted  the events API answered (durable in the log)             [the same-run baseline]
    log       its log row was visible to a reader
    model     the read-model write holding its order record was visible (dataflow read + fold + write)
    outbox    its delivery was put into the outbox (dataflow's outbox sink)
    attempt   the notifier began the POST (claim, after the outbox's poll)
    webhook   the receiver had the signed POST
    ws        the WebSocket client had the segment change the event caused (first one per event)

The dataflow's own Prometheus counters (its busy time per part) and both processes' CPU are printed
beside them: a stage whose busy time nears the wall time is the one that cannot keep up.

    .venv/bin/python bench/automation_latency.py [--rate 2000] [--seconds 20] [--every 10] \
        [--epoch-ms 2000] [--notifier-poll MS] [--load-trace]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import multiprocessing
import os
import queue
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import orjson  # noqa: E402

from bench import ingest  # noqa: E402  (the repository is on sys.path: bench/ is a namespace package)
from tests.helpers import free_port, wait_for  # noqa: E402

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
KEY = "bench-site-key"
TOKEN = "bench-token-0123456789abcdef"
CUSTOMERS = 5000


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


def _watch(port: int, ready: Any, done: Any, results: Any) -> None:
    """A WebSocket client of the organisation: notes when the first segment change caused by each event
    arrived; hands the whole {event id: arrival} over when `done` is set (one message, not one per change)."""
    from websockets.asyncio.client import connect

    async def run() -> None:
        first: dict[str, float] = {}
        count = 0
        async with connect(f"ws://127.0.0.1:{port}", max_size=None) as ws:
            await ws.send(json.dumps({"type": "auth", "token": TOKEN}))
            await ws.recv()  # the snapshot
            ready.set()
            while not done.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.2)
                except TimeoutError:
                    continue
                arrived = time.time()
                msg = orjson.loads(raw)
                if msg.get("type") == "segment":
                    count += 1
                    first.setdefault(str(msg.get("cause")).rsplit(":", 1)[-1], arrived)  # events:<store>:<id>
        results.put((first, count))

    asyncio.run(run())


class Poller(threading.Thread):
    """Every 2 ms, the newest seq of the event log and of the read model's change feed, with the time seen."""

    def __init__(self, data: Path) -> None:
        super().__init__(daemon=True)
        self.data = data
        self.stop = threading.Event()
        self.seen: dict[str, tuple[list[int], list[float]]] = {"events": ([], []), "changes": ([], [])}

    def run(self) -> None:
        conns = {"events": self._open("log.sqlite3"), "changes": self._open("readmodel.sqlite3")}
        while not self.stop.is_set():
            for table, conn in conns.items():
                try:
                    (top,) = conn.execute(f"SELECT coalesce(max(seq), 0) FROM {table}").fetchone()
                except sqlite3.OperationalError:  # not created yet
                    continue
                seqs, times = self.seen[table]
                if not seqs or top > seqs[-1]:
                    seqs.append(top)
                    times.append(time.time())
            time.sleep(0.002)

    def _open(self, name: str) -> sqlite3.Connection:
        path = self.data / name
        while not path.exists():
            time.sleep(0.01)
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)

    def when(self, table: str, seq: int) -> float | None:
        """When a row with this seq was first seen (the first poll whose max(seq) reached it)."""
        seqs, times = self.seen[table]
        i = bisect.bisect_left(seqs, seq)
        return times[i] if i < len(seqs) else None


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def config(receiver_port: int) -> str:
    return f"""
[orgs.acme]
timezone = "Europe/Berlin"
currency = "EUR"
token = "{TOKEN}"

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


async def drive(port: int, rate: int, seconds: float, every: int, prefix: str = "",
                count: int | None = None) -> tuple[dict[str, float], dict[str, float], list[float]]:
    """Posts the events; (event id -> time sent) of every event, (event id -> accepted) and each batch's accept latency.
    `prefix`: put before event and order ids; a prefixed run (the warm-up) fires nothing. `count`: send exactly
    that many, however long it takes (a starved driver falls behind its rate), instead of for `seconds`."""
    per_batch = max(1, rate // 100)  # a batch every 10 ms
    sent: dict[str, float] = {}
    accepted_at: dict[str, float] = {}
    accepted: list[float] = []
    n = 0
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30,
                                 headers={"Authorization": f"Bearer {KEY}"}) as client:
        start = time.monotonic()
        tick = 0
        pending: set[asyncio.Task[None]] = set()

        async def post(events: list[dict[str, object]]) -> None:
            t0 = time.time()
            for e in events:
                sent[str(e["id"])] = t0
            r = await client.post("/v1/events", json={"events": events})
            r.raise_for_status()
            t1 = time.time()
            for e in events:
                accepted_at[str(e["id"])] = t1
            accepted.append(t1 - t0)

        while n < count if count is not None else time.monotonic() - start < seconds:
            events = []
            now_ms = int(time.time() * 1000)
            for _ in range(per_batch if count is None else min(per_batch, count - n)):
                big = n % every == 0 and not prefix
                events.append({"type": "order_paid", "id": f"{prefix}e{n}", "time": now_ms, "order": f"{prefix}o{n}",
                               "customer": f"c{n % CUSTOMERS}", "amount": "150.00" if big else "20.00", "currency": "EUR",
                               "items": [{"product": "mug", "qty": 1, "price": "150.00" if big else "20.00"}]})
                n += 1
            task = asyncio.create_task(post(events))
            pending.add(task)
            task.add_done_callback(pending.discard)
            tick += 1
            await asyncio.sleep(max(0.0, start + tick * 0.01 - time.monotonic()))
        await asyncio.gather(*pending)
    return sent, accepted_at, accepted


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))] * 1000


def line(name: str, values: list[float], expected: int) -> str:
    if not values:
        return f"  {name:<9} (none seen)"
    return (f"  {name:<9} p50 {statistics.median(values) * 1000:7.1f} ms  p99 {pct(values, 0.99):7.1f} ms  "
            f"max {max(values) * 1000:7.1f} ms  ({len(values):,} of {expected:,})")


_ORDER_KEY = re.compile(rb'"kind":"order","key":"([^"]*)"')


_KIND = re.compile(rb'"version":\d+,"(?:kind":"([a-z_]+)|grain":"([a-z]+))')


def model_times(data: Path, poller: Poller, wanted: set[str], kinds: Counter[str]) -> dict[str, float]:
    """Per order in `wanted`: when the first read-model write holding its order record was visible.
    Counts the changes written per kind (bucket grains as "bucket <grain>") into `kinds`."""
    out: dict[str, float] = {}
    conn = sqlite3.connect(f"file:{data / 'readmodel.sqlite3'}?mode=ro", uri=True)
    for seq, body in conn.execute("SELECT seq, body FROM changes ORDER BY seq"):
        kinds["writes"] += 1
        for k in _KIND.finditer(body):
            kinds[(k.group(1) or b"bucket " + k.group(2)).decode()] += 1
        for m in _ORDER_KEY.finditer(body):
            order = m.group(1).decode().rsplit(":", 1)[-1]  # <store>:<order>
            if order in wanted and order not in out:
                seen = poller.when("changes", seq)
                if seen is not None:
                    out[order] = seen
    conn.close()
    return out


def flows_metrics(port: int) -> dict[str, float]:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    out: dict[str, float] = {}
    for row in text.splitlines():
        if row.startswith("storepulse_flow_") and "{" not in row:
            name, value = row.rsplit(" ", 1)
            out[name.removeprefix("storepulse_flow_")] = float(value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=2000, help="events per second")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--every", type=int, default=10, help="one event in this many fires the automation")
    ap.add_argument("--epoch-ms", type=int, default=None, help="the dataflow's epoch (default: storepulse's)")
    ap.add_argument("--py-spy", metavar="PATH", help="profile the dataflow process while driving (py-spy on PATH): "
                    "collapsed stacks into PATH")
    ap.add_argument("--up-args", default="", help="more arguments for `storepulse up`, space-separated")
    ap.add_argument("--baseline-tree", metavar="DIR", type=Path,
                    help="also run the same load on storepulse's source in DIR (e.g. `git archive main | tar -x -C DIR`), "
                         "alternating with this tree: the same-run old-vs-new comparison")
    ap.add_argument("--rounds", type=int, default=1, help="runs of each tree")
    ap.add_argument("--warmup", type=int, default=CUSTOMERS,
                    help="events sent (at the same rate, firing nothing) and folded before the measured ones: by default one "
                         "first order per customer, so the measured orders are repeat orders; 0: a cold start")
    args = ap.parse_args()
    trees: list[tuple[str, Path | None]] = [("this tree", None)]
    if args.baseline_tree is not None:
        trees.insert(0, (f"baseline {args.baseline_tree}", args.baseline_tree.resolve()))
    for r in range(args.rounds):
        for label, tree in trees:
            print(f"--- {label}, round {r + 1} of {args.rounds}", flush=True)
            run(args, tree)


def run(args: argparse.Namespace, tree: Path | None) -> None:
    results: Any = multiprocessing.Queue()
    ws_results: Any = multiprocessing.Queue()
    ws_ready, ws_done = multiprocessing.Event(), multiprocessing.Event()
    receiver_port = free_port()
    receiver = multiprocessing.Process(target=_receive, args=(receiver_port, results), daemon=True)
    receiver.start()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        (work / "storepulse.toml").write_text(config(receiver_port))
        http_port, ws_port, metrics_port = free_port(), free_port(), free_port()
        extra = ["--epoch-ms", str(args.epoch_ms)] if args.epoch_ms else []
        env = None if tree is None else {**os.environ, "PYTHONPATH": str(tree)}  # ahead of this tree's editable install
        proc = ingest.Proc("up", [*ingest.STOREPULSE, "up", "--config", str(work / "storepulse.toml"), "--data-dir",
                                  str(data), "--http-port", str(http_port), "--ws-port", str(ws_port),
                                  "--flows-metrics-port", str(metrics_port), *extra, *args.up_args.split()],
                           work / "up.log", env=env, cwd=work)
        watcher = multiprocessing.Process(target=_watch, args=(ws_port, ws_ready, ws_done, ws_results), daemon=True)
        poller = Poller(data)
        try:
            wait_for(lambda: ingest.http_ok(http_port), 60, "storepulse up")
            wait_for(lambda: bool(flows_metrics(metrics_port)), 60, "the dataflow's metrics")
            watcher.start()
            wait_for(ws_ready.is_set, 30, "the WebSocket client")
            if args.warmup:  # every customer's first order: the measured orders are repeat orders
                asyncio.run(drive(http_port, args.rate, 0, args.every, prefix="w", count=args.warmup))
                wait_for(lambda: flows_metrics(metrics_port).get("events_total", 0) >= args.warmup, 300,
                         "the dataflow to fold the warm-up")
            poller.start()
            flows_pid = children(proc.pid)[0]
            writers = children(flows_pid)  # the read-model writer process (flows/write_behind.py), when there is one
            cpu0 = {"up": cpu_seconds(proc.pid), "flows": cpu_seconds(flows_pid), "writer": sum(map(cpu_seconds, writers))}
            m0, t0 = flows_metrics(metrics_port), time.monotonic()
            spy = None if not args.py_spy else subprocess.Popen(
                ["py-spy", "record", "--pid", str(flows_pid), "--duration", str(int(args.seconds)), "--rate", "200",
                 "--format", "raw", "--output", args.py_spy, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            sent, accepted_at, accepted = asyncio.run(drive(http_port, args.rate, args.seconds, args.every))
            fired = {f"e{n}" for n in range(0, len(sent), args.every)}
            arrived: dict[str, float] = {}
            deadline = time.monotonic() + 60
            while len(arrived) < len(fired) and time.monotonic() < deadline:
                try:
                    order, t = results.get(timeout=1)
                    arrived.setdefault("e" + order[1:], t)
                except queue.Empty:  # keep waiting until the deadline
                    continue
            wall = time.monotonic() - t0
            if spy is not None:
                spy.wait()
            cpu = {"up": cpu_seconds(proc.pid) - cpu0["up"], "flows": cpu_seconds(flows_pid) - cpu0["flows"],
                   "writer": sum(map(cpu_seconds, writers)) - cpu0["writer"]}
            m1 = flows_metrics(metrics_port)
            time.sleep(1)  # the last segment changes' pushes
            ws_done.set()
            ws_first, ws_count = ws_results.get(timeout=30)
            poller.stop.set()
            poller.join()
            log = sqlite3.connect(f"file:{data / 'log.sqlite3'}?mode=ro", uri=True)
            log_seq = {i.rsplit(":", 1)[-1]: s for s, i in log.execute("SELECT seq, id FROM events")}
            log.close()
            outbox = sqlite3.connect(f"file:{data / 'outbox.sqlite3'}?mode=ro", uri=True)
            deliveries = outbox.execute("SELECT action, created_at, attempts FROM deliveries").fetchall()
            outbox.close()
            kinds: Counter[str] = Counter()
            model = model_times(data, poller, {"o" + e[1:] for e in fired}, kinds)
        finally:
            ws_done.set()
            proc.stop()
            receiver.terminate()
            watcher.terminate()
    load_after = os.getloadavg()
    put_at: dict[str, float] = {}
    attempt_at: dict[str, float] = {}
    for action, created, attempts in deliveries:
        cause = orjson.loads(action)["payload"]["event"].rsplit(":", 1)[-1]  # events:<store>:<id>
        put_at[cause] = created / 1000
        tries = orjson.loads(attempts)
        if tries:
            attempt_at[cause] = tries[0]["at"] / 1000

    def since_sent(times: dict[str, float], ids: set[str]) -> list[float]:
        return [times[i] - sent[i] for i in ids if i in times]

    log_at = {i: t for i in fired if (t := poller.when("events", log_seq.get(i, 1 << 62))) is not None}
    model_at = {e: model["o" + e[1:]] for e in fired if "o" + e[1:] in model}
    n_events = len(sent)
    print(f"{n_events:,} events at {args.rate:,}/s for {args.seconds:g} s after {args.warmup:,} warm-up events, "
          f"one in {args.every} firing: "
          f"{len(fired):,} webhooks expected, {len(arrived):,} received "
          f"({len([e for e in arrived if e not in fired])} unexpected); load average {load_before[0]:.2f} before, "
          f"{load_after[0]:.2f} after ({os.cpu_count()} cores)")
    print(f"  baseline: sent -> accepted, every batch (events API, durable)  p50 {statistics.median(accepted) * 1000:.1f} ms  "
          f"p99 {pct(accepted, 0.99):.1f} ms")
    print("  per firing event, time since sent:")
    print(line("accepted", since_sent(accepted_at, fired), len(fired)))
    print(line("log", since_sent(log_at, fired), len(fired)))
    print(line("model", since_sent(model_at, fired), len(fired)))
    print(line("outbox", since_sent(put_at, fired), len(fired)))
    print(line("attempt", since_sent(attempt_at, fired), len(fired)))
    print(line("webhook", since_sent(arrived, fired), len(fired)) + "  (target p99 < 1000 ms)")
    ws_lat = since_sent(ws_first, set(sent))
    print(line("ws", ws_lat, len(ws_lat)) + f"  (segment changes received: {ws_count:,}; "
          "per event causing one; target p99 < 1000 ms)")
    events = m1.get("events_total", 0) - m0.get("events_total", 0)
    busy = {k: m1.get(k, 0) - m0.get(k, 0) for k in ("read_seconds_total", "write_seconds_total", "outbox_seconds_total",
                                                     "snapshot_seconds_total", "snapshot_ahead_seconds_total",
                                                     "segment_evaluation_seconds_total", "gc_seconds_total")}
    print(f"  dataflow: {events:,.0f} events folded in {wall:.1f} s wall; busy: " +
          ", ".join(f"{k.removesuffix('_seconds_total')} {v:.2f} s" for k, v in busy.items()) +
          f"; changes {m1.get('changes_total', 0) - m0.get('changes_total', 0):,.0f}; "
          f"gc pauses {m1.get('gc_pauses_total', 0) - m0.get('gc_pauses_total', 0):.0f} (longest since start "
          f"{m1.get('gc_longest_pause_seconds', 0) * 1e3:.0f} ms); "
          f"snapshots {m1.get('snapshots_total', 0) - m0.get('snapshots_total', 0):.0f} "
          f"({(m1.get('snapshot_bytes_total', 0) - m0.get('snapshot_bytes_total', 0)) / 1e6:.1f} MB)")
    print(f"  read-model writes {kinds.pop('writes', 0):,}; changes written per kind: " +
          ", ".join(f"{k} {n:,}" for k, n in kinds.most_common()))
    print(f"  CPU over the same {wall:.1f} s: up (ingest, gateway, notifier) {cpu['up']:.1f} s "
          f"({cpu['up'] / wall:.0%}), flows {cpu['flows']:.1f} s ({cpu['flows'] / wall:.0%}), its read-model writer "
          f"{cpu['writer']:.1f} s ({cpu['writer'] / wall:.0%}); flows + writer {(cpu['flows'] + cpu['writer']) / max(events, 1) * 1e6:.0f} us "
          f"per event, flows alone {cpu['flows'] / max(events, 1) * 1e6:.0f} us")


if __name__ == "__main__":
    main()
