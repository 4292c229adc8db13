"""Batch events API throughput: `POST /v1/events` with 1,000 page views a request, through the real
server with durable append (Redis with appendfsync always, one and N ingest processes on one port;
embedded SQLite `storepulse up`), side by side in the same run with a bare handler on the same stack
that only reads and parses the body (one and N processes).

Beside each rate it prints where the machine's CPU went while that server was measured (the server's
processes, the dataflow child of `up`, redis-server, this client, the whole machine), and before the
runs, what the server's own per-event work costs in this process on one core: parse+validate
(`parse_batch`), the pre-fast-path checked reader, `Event.to_json`, the monitor's count.

    .venv/bin/python bench/events_api.py [--batches 200] [--concurrency 8] [--processes 1,2] [--rounds 2]
                                          [--baseline-src DIR --baseline-name NAME]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from bench import ingest as bi  # noqa: E402  (the repository is on sys.path: bench/ is a namespace package)

# The E402 noqa below: these imports need what is set up above (the repository on sys.path, run as a script).
from storepulse import STOREPULSE  # noqa: E402
from tests.helpers import free_port  # noqa: E402

KEY = "bench-site-key-0123456789"
CONFIG = f"""
[orgs.bench]
timezone = "Europe/Berlin"
currency = "EUR"
token = "bench-token-0123456789"
[orgs.bench.stores.site]
provider = "events"
secret = "{KEY}"
"""
BARE = "bare handler (parse only)"
TARGET = 200_000  # events/s, the target


def serve_bare(port: int, reuse_port: bool) -> None:
    import uvloop
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from storepulse.gc_policy import SERVERS, settle
    from storepulse.servers import http_server, reuse_port_socket
    from web.app import build_app
    from web.responses import json_response

    async def events(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        return json_response({"status": "accepted", "new": len(doc["events"]), "duplicates": 0})

    server = http_server(build_app([Route("/v1/events", events, methods=["POST"])]), "127.0.0.1", port)
    settle(SERVERS)  # the same runtime settings as storepulse's servers
    uvloop.run(server.serve(sockets=[reuse_port_socket("127.0.0.1", port)] if reuse_port else None))


def batches(n: int, tag: str, size: int = 1000) -> list[bytes]:
    t = int(time.time() * 1000)
    return [orjson.dumps({"events": [
        {"type": "page_view", "id": f"{tag}-{b}-{i}", "time": t + i, "visitor": f"v{i % 977}", "url": f"/p/{i % 50}"}
        for i in range(size)]}) for b in range(n)]


# --- CPU accounting from /proc -------------------------------------------------------------------

def _stat(pid: int) -> tuple[int, float] | None:
    """(session id, user+system CPU seconds) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def session_cpu(session: int) -> dict[str, float]:
    """CPU seconds of every process in a session (a Proc's group), split into the dataflow child of
    `storepulse up` ('dataflow') and everything else ('server')."""
    out = {"server": 0.0, "dataflow": 0.0}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st is None or st[0] != session:
            continue
        try:
            cmd = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        out["dataflow" if b"flows" in cmd else "server"] += st[1]
    return out


@dataclass
class Sample:
    wall: float = 0.0
    server: float = 0.0
    dataflow: float = 0.0
    redis: float = 0.0
    client: float = 0.0
    machine: float = 0.0

    def cores(self, what: str) -> float:
        return getattr(self, what) / self.wall if self.wall else float("nan")


@dataclass
class Row:
    name: str
    port: int
    session: int
    rates: list[float] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)


def cpu_now(row: Row, redis_pid: int) -> Sample:
    s = session_cpu(row.session)
    redis = _stat(redis_pid)
    return Sample(time.perf_counter(), s["server"], s["dataflow"], redis[1] if redis else float("nan"),
                  time.process_time(), bi.machine_busy_seconds())


def minus(a: Sample, b: Sample) -> Sample:
    return Sample(*(getattr(a, f) - getattr(b, f) for f in ("wall", "server", "dataflow", "redis", "client", "machine")))


# --- load ----------------------------------------------------------------------------------------

async def drive(port: int, bodies: list[bytes], concurrency: int) -> int:
    queue = list(bodies)
    accepted = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while queue:
            body = queue.pop()
            r = await client.post(f"http://127.0.0.1:{port}/v1/events", content=body,
                                  headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
            assert r.status_code == 200, r.text
            accepted += orjson.loads(r.content)["new"]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return accepted


def measure(row: Row, bodies: list[bytes], concurrency: int, redis_pid: int) -> None:
    before = cpu_now(row, redis_pid)
    accepted = asyncio.run(drive(row.port, bodies, concurrency))
    used = minus(cpu_now(row, redis_pid), before)
    events = len(bodies) * 1000
    assert accepted == events, (row.name, accepted, events)
    row.rates.append(events / used.wall)
    row.samples.append(used)


# --- the server's own per-event work, in this process -------------------------------------------

def per_event_costs(body: bytes) -> list[tuple[str, float]]:
    """Events per second on one core of each step a storepulse server takes per event (best of 7)."""
    from core.config import Store
    from ingest import events_api
    from ingest.monitor import ConnectionMonitor

    store = Store("site", "bench", "events", KEY, "EUR")
    docs = orjson.loads(body)["events"]
    n = len(docs)
    events = events_api.parse_batch(body, store).events
    monitor = ConnectionMonitor(stats=None)  # type: ignore[arg-type]  # never flushed here
    flags = [True] * n

    def best(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(7):
            started = time.process_time()
            for _ in range(5):
                fn()
            times.append((time.process_time() - started) / 5)
        return n / min(times)

    return [
        ("orjson.loads of the body (the bare handler's work)", best(lambda: orjson.loads(body))),
        ("parse_batch: loads + checks + Event (fast reader)", best(lambda: events_api.parse_batch(body, store))),
        ("  the checked reader alone (every event before)", best(lambda: [events_api._checked_event(d, store) for d in docs])),
        # Each result dropped at once: kept in a list, glibc hands the heap top back to the OS between
        # rounds here and every call page-faults (10x slower); the server showed < 0.02 faults/event.
        ("Event.to_json (each log append serialises)", best(lambda: [e.to_json() and None for e in events])),
        ("monitor.appended (per-store counts)", best(lambda: monitor.appended(events, flags, 0.0))),
    ]


# --- main ----------------------------------------------------------------------------------------

def start(name: str, command: list[str], workdir: Path, procs: list, port: int, src: Path = REPO) -> Row:
    env = {**os.environ, "PYTHONPATH": str(src)}  # `-m storepulse` and its dataflow child load src's code
    p = bi.Proc(name, command, workdir / "server.log", env=env, cwd=src)
    procs.append(p)
    bi.wait_until(lambda: bi.http_ok(port), 60, name, p)
    return Row(name, port, p.pid)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=200, help="requests of 1,000 events per measured round")
    ap.add_argument("--concurrency", type=int, default=8, help="client connections (spread over the processes)")
    ap.add_argument("--processes", default="1,2", help="ingest (and bare) process counts to measure")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--baseline-src", type=Path,
                    help="another storepulse source tree (e.g. `git archive <commit> | tar -x -C DIR`): its ingest and"
                         " up are measured in the same run, for a before/after")
    ap.add_argument("--baseline-name", default="baseline", help="what to call the --baseline-src rows")
    ap.add_argument("--serve-bare", type=int)
    ap.add_argument("--reuse-port", action="store_true")
    args = ap.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare, args.reuse_port)
        return
    counts = [int(x) for x in args.processes.split(",")]
    body = batches(1, "micro")[0]
    print(f"batch events API: {args.batches} batches of 1,000 page views a round, {args.concurrency} client "
          f"connections, best of {args.rounds} rounds; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print("\nthe server's per-event work, in this process on one core (best of 7):")
    costs = per_event_costs(body)
    for what, rate in costs:
        print(f"  {what:52s} {rate:>10,.0f} events/s  {1e6 / rate:6.2f} us/event")
    rates = dict(costs)
    parse_us = 1e6 / rates["parse_batch: loads + checks + Event (fast reader)"]
    json_us = 1e6 / rates["Event.to_json (each log append serialises)"]
    print(f"  => parse+validate+to_json alone is {parse_us + json_us:.2f} us/event: one process doing only that "
          f"tops out at {1e6 / (parse_us + json_us):,.0f} events/s")

    work = Path(tempfile.mkdtemp(prefix="sp-bench-events-"))
    procs: list = []
    try:
        redis_proc, redis_url = bi.start_redis(work / "redis", procs)
        rows: list[Row] = []
        for n in counts:
            d = work / f"bare{n}"
            d.mkdir()
            port = free_port()
            cmd = [sys.executable, __file__, "--serve-bare", str(port)]
            if n > 1:
                one = subprocess.list2cmdline([*cmd, "--reuse-port"])
                cmd = ["/bin/sh", "-c", " ".join(f"{one} &" for _ in range(n)) + " wait"]
            rows.append(start(f"{BARE} x{n}", cmd, d, procs, port))
        for n in counts:
            d = work / f"ingest{n}"
            d.mkdir()
            (d / "storepulse.toml").write_text(CONFIG)
            port = free_port()
            cmd = [*STOREPULSE, "ingest", "--config", str(d / "storepulse.toml"),
                   "--data-dir", str(d / "data"), "--http-port", str(port), "--redis", redis_url]
            if n > 1:
                cmd += ["--processes", str(n)]
            rows.append(start(f"ingest, Redis fsync always x{n}", cmd, d, procs, port))
        trees = [("", REPO)] + ([(f" [{args.baseline_name}]", args.baseline_src.resolve())] if args.baseline_src else [])
        for label, src in trees:
            if label:  # the same Redis server, another source tree: before/after in one run
                d = work / "ingest-baseline"
                d.mkdir()
                (d / "storepulse.toml").write_text(CONFIG)
                port = free_port()
                rows.append(start(f"ingest, Redis fsync always x1{label}", [
                    *STOREPULSE, "ingest", "--config", str(d / "storepulse.toml"), "--data-dir",
                    str(d / "data"), "--http-port", str(port), "--redis", redis_url], d, procs, port, src))
            d = work / f"up{'-baseline' if label else ''}"
            d.mkdir()
            (d / "storepulse.toml").write_text(CONFIG)
            port = free_port()
            rows.append(start(f"up, embedded SQLite fsync x1{label}", [
                *STOREPULSE, "up", "--config", str(d / "storepulse.toml"), "--data-dir",
                str(d / "data"), "--http-port", str(port), "--ws-port", str(free_port())], d, procs, port, src))

        for row in rows:  # warm up: imports, Lua script load, SQLite pages, connections
            asyncio.run(drive(row.port, batches(4, f"warm{row.port}"), args.concurrency))
        for rnd in range(args.rounds):  # alternate, so a noisy neighbour hits every server alike
            for row in rows:
                measure(row, batches(args.batches, f"r{rnd}-{row.port}"), args.concurrency, redis_proc.pid)

        bare = max(max(r.rates) for r in rows if r.name.startswith(BARE))
        print(f"\nthroughput (best of {args.rounds} rounds) and, in that round, CPU time per event accepted (us) of each"
              " part, the\ncores they kept busy, the whole machine's busy cores, and the cores that CPU per event"
              f" would need at {TARGET:,} events/s:")
        print(f"  {'server':56s} {'events/s':>9s} {'vs bare':>7s} | {'server':>6s} {'dataflw':>7s} {'redis':>6s} "
              f"{'client':>6s} {'total':>6s} | {'ours':>5s} {'machine':>7s} | {'cores@' + format(TARGET, ','):>13s}")
        for r in rows:
            i = max(range(len(r.rates)), key=r.rates.__getitem__)
            smp, rate = r.samples[i], r.rates[i]
            n = rate * smp.wall / 1e6  # millions of events in the round
            redis = smp.redis / n if "Redis" in r.name else 0.0  # redis-server serves the Redis rows only
            parts = [smp.server / n, smp.dataflow / n, redis, smp.client / n]
            total = sum(parts)
            ours = (smp.server + smp.dataflow + (smp.redis if "Redis" in r.name else 0.0) + smp.client) / smp.wall
            print(f"  {r.name:56s} {rate:>9,.0f} {rate / bare:7.2f} | " + " ".join(f"{x:6.2f}" for x in parts[:1])
                  + f" {parts[1]:7.2f} {parts[2]:6.2f} {parts[3]:6.2f} {total:6.2f} | {ours:5.2f} "
                  f"{smp.cores('machine'):7.2f} | {total * TARGET / 1e6:13.2f}")
        print(f"  (server: the row's storepulse or bare processes but the dataflow child of `up`; client: this process;"
              f" machine: all {os.cpu_count()} cores, other work on the box included)")
    finally:
        for p in procs:
            p.stop()


if __name__ == "__main__":
    main()
