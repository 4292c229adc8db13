"""Ingest benchmark: signed Stripe webhooks/s through the real server, against a bare handler on the
same stack, and webhook-to-WebSocket latency through the whole pipeline.

    .venv/bin/python bench/ingest.py [--requests N] [--concurrency C] [--src TREE] [--profile FILE]

Everything runs on this machine in one go and is printed side by side, because on a small, noisy
machine only ratios measured together mean something. Both HTTP servers run at the same time and
are driven in alternating rounds (bare, storepulse, storepulse, bare, ...), so drift in what the
rest of the machine does hits both alike; the table shows the CPU each side and the whole machine used.

1. `storepulse ingest --redis` (real HTTP server, Stripe signature check, normalise, Lua
   "dedupe + XADD" on a real redis-server with `appendfsync always`), driven by a raw asyncio
   HTTP/1.1 keep-alive client with pre-built signed requests (each a distinct
   `payment_intent.succeeded`). Every response must be 200 {"status": "accepted"}, and afterwards
   the XLEN of the log streams must equal the number of accepted requests.
2. A bare handler on the same stack (Starlette + uvicorn, uvloop, httptools, built with
   web.app.build_app, storepulse.servers.http_server) that reads the body and answers 200 JSON, driven by
   the same client with the same requests.
3. `storepulse up` (ingest -> log -> Bytewax -> read model -> WebSocket), with Redis and embedded:
   a WebSocket dashboard client and payments sent at a fixed rate; latency from each POST to the
   first pushed message whose paid_orders count includes it.

`--src TREE` runs the servers from another source tree (e.g. `git archive <commit> | tar -x -C TREE`),
to measure a commit while the working tree is being edited, or to compare two trees. `--profile FILE`
samples the ingest server with py-spy (`pip install py-spy`) and prints where its CPU time goes.

Every process started here is started in its own session and killed by its process group at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# This file's directory is sys.path[0] when run as a script; the repo must come first, or `ingest`
# would name this file instead of the ingest package.
sys.path.insert(0, str(REPO))
SRC = REPO  # the storepulse source tree whose servers are measured (--src)

# The E402 noqa below: these imports need what is set up above (the repository on sys.path, run as a script).
import orjson  # noqa: E402

from storepulse import STOREPULSE  # noqa: E402
from tests.helpers import free_port, payment_intent_succeeded, stripe_signature  # noqa: E402

ORG = "bench"
TOKEN = "bench-token-0123456789abcdef"
STORE = "bench-stripe"
SECRET = "whsec_bench_secret_0123456789"
CONFIG_TOML = f"""
[orgs.{ORG}]
timezone = "Europe/Berlin"
currency = "EUR"
token = "{TOKEN}"

[orgs.{ORG}.stores.{STORE}]
provider = "stripe"
secret = "{SECRET}"
"""
PARTITIONS = 4  # state.log.DEFAULT_PARTITIONS: keys sp:{p0}:log .. sp:{p3}:log


# --- the bare server (run as a subprocess of this file: `bench/ingest.py --serve-bare PORT`) ------

def serve_bare(host: str, port: int, reuse_port: bool = False) -> None:
    import uvloop
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from storepulse.gc_policy import SERVERS, settle
    from storepulse.servers import http_server, reuse_port_socket
    from web.app import build_app
    from web.responses import json_response

    async def webhook(request: Request) -> Response:
        body = await request.body()
        # The same response shape and renderer as storepulse's, so both servers send the same bytes back.
        return json_response({"status": "accepted", "events": [f"stripe:{request.path_params['store_id']}:{len(body)}"]})

    server = http_server(build_app([Route("/webhooks/stripe/{store_id}", webhook, methods=["POST"])]), host, port)
    settle(SERVERS)  # the same runtime settings as storepulse's servers: only the handler differs
    uvloop.run(server.serve(sockets=[reuse_port_socket(host, port)] if reuse_port else None))


# --- processes -----------------------------------------------------------------------------------

class Proc:
    """A child in its own session (process group), stopped by its group id and nothing broader."""

    def __init__(self, name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
        self.name, self.log = name, log
        self.stopped = False
        with open(log, "ab") as out:
            self.popen = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                          env=env, cwd=cwd)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; log {self.log}:\n"
                               f"{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self, graceful: float = 10.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGINT)
            try:
                self.popen.wait(graceful)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (e.g. a dataflow child), and the leader if it ignored SIGINT.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(10)


def wait_until(check, timeout: float, what: str, proc: Proc | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None:
            proc.check_alive()
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out after {timeout} s waiting for {what}")


def http_ok(port: int, path: str = "/metrics") -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
            return s.recv(16).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def start_redis(workdir: Path, procs: list[Proc]) -> tuple[Proc, str]:
    exe = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    p = Proc("redis-server", [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                              "--appendfsync", "always", "--dir", str(workdir)], workdir / "redis.log")
    procs.append(p)

    def up() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    wait_until(up, 10, f"redis-server on port {port}", p)
    return p, f"redis://127.0.0.1:{port}/0"


def start_storepulse(command: str, workdir: Path, procs: list[Proc], redis_url: str | None,
                     server_procs: int = 1) -> tuple[Proc, int, int]:
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "storepulse.toml"
    config.write_text(CONFIG_TOML)
    http_port = free_port()
    cmd = [*STOREPULSE, command, "--config", str(config), "--data-dir", str(workdir / "data"),
           "--http-port", str(http_port)]
    ws_port = 0
    if command == "up":
        ws_port = free_port()
        cmd += ["--ws-port", str(ws_port)]
    if redis_url:
        cmd += ["--redis", redis_url]
    if server_procs > 1:
        cmd += ["--processes", str(server_procs)]
    env = {**os.environ, "PYTHONPATH": str(SRC)}  # `-m storepulse` and its dataflow child load SRC's code
    p = Proc(f"storepulse {command}", cmd, workdir / f"storepulse-{command}.log", env=env, cwd=SRC)
    procs.append(p)
    wait_until(lambda: http_ok(http_port), 60, f"storepulse {command} /metrics on port {http_port}", p)
    return p, http_port, ws_port


def start_bare(workdir: Path, procs: list[Proc], server_procs: int = 1) -> tuple[Proc, int]:
    """The bare server; with server_procs > 1, that many processes on one port (SO_REUSEPORT) in one
    session, as `storepulse ingest --processes N` runs."""
    port = free_port()
    cmd = [sys.executable, str(Path(__file__).resolve()), "--serve-bare", str(port), "--src", str(SRC)]
    if server_procs > 1:
        script = " ".join(f"{subprocess.list2cmdline([*cmd, '--reuse-port'])} &" for _ in range(server_procs)) + " wait"
        cmd = ["/bin/sh", "-c", script]
    p = Proc("bare server", cmd, workdir / "bare.log", cwd=SRC)
    procs.append(p)
    wait_until(lambda: http_ok(port), 30, f"bare server /metrics on port {port}", p)
    return p, port


# --- requests ------------------------------------------------------------------------------------

def signed_request(n: int, tag: str, amount: int | None = None) -> bytes:
    """A complete HTTP/1.1 request for one distinct, correctly signed payment_intent.succeeded."""
    body = payment_intent_succeeded(f"evt_{tag}_{n}", f"pi_{tag}_{n}", amount if amount is not None else 1000 + n % 9000)
    sig = stripe_signature(body, SECRET)
    head = (f"POST /webhooks/stripe/{STORE} HTTP/1.1\r\nHost: bench\r\nUser-Agent: Stripe/1.0\r\n"
            f"Content-Type: application/json; charset=utf-8\r\nStripe-Signature: {sig}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    lower = head.lower()
    i = lower.find(b"\r\ncontent-length:")
    if i < 0:
        raise RuntimeError(f"response without Content-Length: {head[:200]!r}")
    j = lower.index(b"\r\n", i + 2)
    length = int(lower[i + 17:j])
    return status, await reader.readexactly(length)


def response_ok(status: int, body: bytes) -> bool:
    if status != 200:
        return False
    try:
        return orjson.loads(body).get("status") == "accepted"
    except orjson.JSONDecodeError:
        return False


# --- throughput load generator -------------------------------------------------------------------

@dataclass
class LoadResult:
    sent: int = 0
    ok: int = 0
    bad: list[str] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0
    latencies: list[float] = field(default_factory=list)
    cpu: float = 0.0  # the client's own CPU seconds during the run

    def merge(self, other: LoadResult) -> None:
        self.sent += other.sent
        self.ok += other.ok
        self.bad += other.bad[: max(0, 5 - len(self.bad))]
        self.started = min(self.started, other.started)
        self.finished = max(self.finished, other.finished)
        self.latencies += other.latencies
        self.cpu += other.cpu


async def _drive(port: int, requests: list[bytes], concurrency: int, duration: float) -> LoadResult:
    res = LoadResult()
    next_index = 0
    connections = []
    for _ in range(concurrency):
        connections.append(await asyncio.open_connection("127.0.0.1", port))
    cpu0 = time.process_time()
    res.started = time.perf_counter()
    deadline = res.started + duration

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal next_index
        lat = res.latencies
        while next_index < len(requests):
            now = time.perf_counter()
            if now >= deadline:
                return
            req = requests[next_index]
            next_index += 1
            res.sent += 1
            writer.write(req)
            try:
                status, body = await read_response(reader)
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                res.bad.append(f"connection lost: {exc!r}")
                return
            lat.append(time.perf_counter() - now)
            if response_ok(status, body):
                res.ok += 1
            elif len(res.bad) < 5:
                res.bad.append(f"{status} {body[:200]!r}")

    await asyncio.gather(*(worker(r, w) for r, w in connections))
    res.finished = time.perf_counter()
    res.cpu = time.process_time() - cpu0
    for _, w in connections:
        w.close()
    return res


def _drive_in_child(conn, port: int, requests: list[bytes], concurrency: int, duration: float, go) -> None:
    import uvloop

    async def main() -> LoadResult:
        go.wait()
        return await _drive(port, requests, concurrency, duration)

    conn.send(uvloop.run(main()))
    conn.close()


def run_load(port: int, requests: list[bytes], concurrency: int, duration: float, procs: int) -> LoadResult:
    """Drives `requests` at the server with `concurrency` keep-alive connections split over `procs` processes."""
    if procs <= 1:
        import uvloop

        return uvloop.run(_drive(port, requests, concurrency, duration))
    ctx = mp.get_context("fork")
    go = ctx.Event()
    children = []
    for k in range(procs):
        parent_end, child_end = ctx.Pipe(duplex=False)
        part = requests[k::procs]
        c = max(1, concurrency // procs + (1 if k < concurrency % procs else 0))
        p = ctx.Process(target=_drive_in_child, args=(child_end, port, part, c, duration, go), daemon=True)
        p.start()
        children.append((p, parent_end))
    time.sleep(0.3)  # let every child connect before the start signal
    go.set()
    total: LoadResult | None = None
    try:
        for p, end in children:
            r = end.recv()
            p.join(10)
            if total is None:
                total = r
            else:
                total.merge(r)
    finally:
        for p, _ in children:
            if p.is_alive():
                p.kill()
    assert total is not None
    return total


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


def xlen_total(redis_url: str) -> int:
    import redis

    r = redis.Redis.from_url(redis_url)
    try:
        return sum(r.xlen(f"sp:{{p{p}}}:log") for p in range(PARTITIONS))
    finally:
        r.close()


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent not idle (all cores), from /proc/stat."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return float("nan")
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    busy = sum(fields[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy / os.sysconf("SC_CLK_TCK")


def proc_cpu_seconds(pid: int) -> float:
    """user+system CPU time of every live process in the session `pid` leads (a server and its
    worker processes; every Proc starts a session), from /proc."""
    total = 0
    found = False
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == pid:
            found = True
            total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK") if found else float("nan")


# --- webhook -> WebSocket latency ----------------------------------------------------------------

@dataclass
class LatencyResult:
    mode: str
    sent: int
    rate: float
    e2e_ms: list[float]
    ack_ms: list[float]
    bad: list[str]
    missing: int
    startup_s: float


def _paid_orders(msg: dict) -> int | None:
    try:
        return int(msg["figures"]["total"]["all"]["paid_orders"])
    except (KeyError, TypeError, ValueError):
        return None


# C901 (both here): one benchmark scenario each, top to bottom; its nested closures share its state.
async def _latency(http_port: int, ws_port: int, n: int, rate: float, warmup: int,  # noqa: C901
                   conns: int) -> tuple[list[float], list[float], list[str], int]:
    from websockets.asyncio.client import connect

    ws = await connect(f"ws://127.0.0.1:{ws_port}/v1/live", open_timeout=10, max_size=None)
    try:
        await ws.send(orjson.dumps({"type": "auth", "token": TOKEN}).decode())
        snap = orjson.loads(await asyncio.wait_for(ws.recv(), 10))
        if snap.get("type") != "snapshot" or _paid_orders(snap) is None:
            raise RuntimeError(f"unexpected first WebSocket message: {str(snap)[:500]}")
        seen = _paid_orders(snap)
        last_version = snap.get("version", 0)
        arrivals: list[tuple[float, int]] = []  # (arrival time, paid_orders), in arrival order
        changed = asyncio.Event()
        problems: list[str] = []

        async def follow() -> None:
            nonlocal seen, last_version
            async for raw in ws:
                t = time.perf_counter()
                msg = orjson.loads(raw)
                count = _paid_orders(msg)
                if msg.get("type") != "figures" or count is None:
                    problems.append(f"unexpected WebSocket message: {str(msg)[:300]}")
                    continue
                if msg.get("version", 0) <= last_version:
                    problems.append(f"version did not increase: {last_version} -> {msg.get('version')}")
                last_version = msg.get("version", 0)
                seen = max(seen, count)
                arrivals.append((t, count))
                changed.set()

        follower = asyncio.create_task(follow())

        async def wait_count(target: int, timeout: float) -> bool:
            deadline = time.monotonic() + timeout
            while seen < target:
                changed.clear()
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), left)
            return True

        pool: asyncio.Queue = asyncio.Queue()
        for _ in range(conns):
            pool.put_nowait(await asyncio.open_connection("127.0.0.1", http_port))
        bad: list[str] = []

        async def post(req: bytes, ack: list[float] | None, sent_at: list[float] | None) -> None:
            if sent_at is not None:
                sent_at.append(time.perf_counter())  # when it was due: waiting for a free connection counts
            reader, writer = await pool.get()
            t0 = time.perf_counter()
            writer.write(req)
            status, body = await read_response(reader)
            if ack is not None:
                ack.append((time.perf_counter() - t0) * 1000)
            pool.put_nowait((reader, writer))
            if not response_ok(status, body):
                bad.append(f"{status} {body[:200]!r}")

        # Warm-up: the dataflow child starts after the HTTP server; wait until it has folded these in.
        tag = f"lat{os.getpid()}{int(time.time() * 1000)}"
        warm = [signed_request(i, tag + "w") for i in range(warmup)]
        await asyncio.gather(*(post(r, None, None) for r in warm))
        base_target = _paid_orders(snap) + warmup
        if not await wait_count(base_target, 90):
            raise RuntimeError(f"warm-up payments never showed on the WebSocket (seen {seen}, want {base_target})")
        await asyncio.sleep(0.5)
        base = seen

        requests = [signed_request(i, tag) for i in range(n)]
        sent_at: list[float] = []
        ack: list[float] = []
        tasks = []
        start = time.perf_counter() + 0.05
        for i, req in enumerate(requests):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(req, ack, sent_at)))
            await asyncio.sleep(0)  # let the POST write its bytes now, so sent_at is on schedule
        await asyncio.gather(*tasks)
        await wait_count(base + n, 30)
        await asyncio.sleep(0.2)
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower

        # sent_at is in send order; the k-th payment sent (1-based) is in every message with paid_orders >= base + k.
        e2e: list[float] = []
        j = 0
        missing = 0
        arrivals_after = [a for a in arrivals if a[0] >= start - 1]
        for k, t_sent in enumerate(sent_at, start=1):
            while j < len(arrivals_after) and arrivals_after[j][1] < base + k:
                j += 1
            if j == len(arrivals_after):
                missing += 1
                continue
            e2e.append((arrivals_after[j][0] - t_sent) * 1000)
        while not pool.empty():
            _, w = pool.get_nowait()
            w.close()
        return e2e, ack, bad + problems[:5], missing
    finally:
        await ws.close()


def run_latency(mode: str, workdir: Path, procs: list[Proc], n: int, rate: float) -> LatencyResult:
    import uvloop

    redis_url = None
    if mode == "redis":
        _, redis_url = start_redis(workdir / "redis", procs)
    t0 = time.monotonic()
    sp, http_port, ws_port = start_storepulse("up", workdir, procs, redis_url)
    try:
        # Enough keep-alive connections that a payment never waits for a free one (a POST takes a few
        # ms under load): the latency measured is the pipeline's, not the load generator's queue.
        conns = max(8, int(rate // 25))
        e2e, ack, bad, missing = uvloop.run(_latency(http_port, ws_port, n, rate, warmup=20, conns=conns))
    finally:
        startup = time.monotonic() - t0
        sp.stop()
    return LatencyResult(mode, n, rate, e2e, ack, bad, missing, startup)


def print_profile(path: Path) -> None:
    """A summary of py-spy's collapsed stacks: self time by package, and samples by part of the work."""
    import collections
    import re

    if not path.exists():
        print(f"  (no py-spy output in {path})")
        return
    # Each sample goes to the first category one of its frames falls in. Coroutines resumed by the
    # event loop show short stacks, so this is by where the code lives, not by who called it.
    categories = (
        ("Redis append: redis-py client + state/redis_log", ("(redis/", "(state/redis_log")),
        ("Stripe-Signature verify (ingest/stripe, hmac)", ("verify (ingest/stripe.py", "(stripe/", "(hmac.py")),
        ("normalise to canonical Event (ingest/stripe, core)", ("normalise (ingest/stripe.py", "(core/")),
        ("JSON response render (web/responses, starlette)", ("(web/responses.py", "(starlette/responses.py")),
        ("read_body (ingest/app.py)", ("read_body (ingest/app.py",)),
        ("Prometheus counters/histogram", ("(prometheus_client",)),
        ("handler's own lines (ingest/app.py)", ("(ingest/",)),
    )
    total = 0
    own: collections.Counter[str] = collections.Counter()
    by_cat: collections.Counter[str] = collections.Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        total += count
        last = stack.rsplit(";", 1)[-1]
        m = re.search(r"\(([^/:)]+)", last)
        own[m.group(1) if m else last] += count
        by_cat[next((name for name, patterns in categories if any(p in stack for p in patterns)),
                    "HTTP server stack + event loop (uvicorn, starlette, asyncio)")] += count
    if not total:
        return
    print(f"  py-spy: {total} samples of the ingest server (idle excluded); self time by package:")
    print("   " + ", ".join(f"{k} {v / total * 100:.0f}%" for k, v in own.most_common(8)))
    for name, count in by_cat.most_common():
        print(f"   {count / total * 100:5.1f}%  {name}")


def describe_source(src: Path) -> str:
    try:
        head = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"{src} (not a git checkout)"
    return f"{src} at {head}" + (" plus uncommitted changes" if dirty else "")


# --- main ----------------------------------------------------------------------------------------

@dataclass
class Totals:
    """One server's timed rounds, added up."""
    label: str
    sent: int = 0
    ok: int = 0
    secs: float = 0.0
    server_cpu: float = 0.0
    client_cpu: float = 0.0
    machine_busy: float = 0.0
    machine_wall: float = 0.0  # the wall time machine_busy was measured over
    bad: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)

    def add(self, r: LoadResult, server_cpu: float) -> float:
        secs = r.finished - r.started
        self.sent += r.sent
        self.ok += r.ok
        self.secs += secs
        self.server_cpu += server_cpu
        self.client_cpu += r.cpu
        self.bad += r.bad[: max(0, 5 - len(self.bad))]
        self.latencies += r.latencies
        rate = r.ok / secs if secs > 0 else 0.0
        self.rates.append(rate)
        return rate

    @property
    def rate(self) -> float:
        return self.ok / self.secs if self.secs > 0 else 0.0


def timed_round(port: int, requests: list[bytes], args: argparse.Namespace, duration: float, server_pid: int,
                totals: Totals) -> float:
    cpu0, busy0, wall0 = proc_cpu_seconds(server_pid), machine_busy_seconds(), time.perf_counter()
    res = run_load(port, requests, args.concurrency, duration, args.procs)
    totals.machine_busy += machine_busy_seconds() - busy0
    totals.machine_wall += time.perf_counter() - wall0
    return totals.add(res, proc_cpu_seconds(server_pid) - cpu0)


def warm_up(name: str, port: int, warm: list[bytes], args: argparse.Namespace) -> None:
    w = run_load(port, warm, args.concurrency, 10, 1)
    if w.ok != w.sent:
        raise RuntimeError(f"{name}: warm-up had {w.sent - w.ok} bad responses, e.g. {w.bad[:3]}")


def main() -> int:  # noqa: C901 - one benchmark scenario, top to bottom (see _latency)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20000,
                    help="timed requests per server, split over the rounds (default 20000)")
    ap.add_argument("--concurrency", type=int, default=48, help="keep-alive connections (default 48)")
    ap.add_argument("--duration", type=float, default=15, help="time limit per server over all rounds, in s (default 15)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timed rounds per server (default 3)")
    ap.add_argument("--procs", type=int, default=1, help="load generator processes (default 1)")
    ap.add_argument("--server-procs", type=int, default=1,
                    help="server processes on one port for both servers (storepulse ingest --processes N; default 1)")
    ap.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--latency-requests", type=int, default=500, help="payments for the latency run (default 500)")
    ap.add_argument("--latency-rate", type=float, default=200, help="payments per second in the latency run (default 200)")
    ap.add_argument("--no-embedded", action="store_true", help="skip the embedded (SQLite) latency run")
    ap.add_argument("--no-latency", action="store_true", help="skip the webhook -> WebSocket latency runs")
    ap.add_argument("--profile", metavar="FILE",
                    help="record the ingest server with py-spy during its timed run (collapsed stacks to FILE); slows it down")
    ap.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, AOF)")
    ap.add_argument("--src", type=Path, default=REPO,
                    help="storepulse source tree to run the servers from, e.g. an exported commit (default: this repo)")
    ap.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = ap.parse_args()
    global SRC
    SRC = args.src.resolve()
    if args.serve_bare:
        sys.path.insert(0, str(SRC))
        serve_bare("127.0.0.1", args.serve_bare, args.reuse_port)
        return 0

    tmp = Path(tempfile.mkdtemp(prefix="storepulse-bench-"))
    procs: list[Proc] = []
    spy: subprocess.Popen | None = None
    print(f"storepulse ingest benchmark: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}, {platform.node()}, "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, work dir {tmp}", flush=True)
    print(f"storepulse source: {describe_source(SRC)}", flush=True)
    try:
        print(f"pre-generating {args.requests} + warm-up signed payment_intent.succeeded requests ...", flush=True)
        per_round = args.requests // args.rounds
        n_warm = min(1000, max(100, args.requests // 10))
        run_tag = f"r{int(time.time())}"
        requests = [signed_request(i, run_tag) for i in range(args.requests)]
        warm_sp = [signed_request(i, run_tag + "w") for i in range(n_warm)]
        print(f"  {len(requests)} requests, body {len(requests[0]) - requests[0].index(b'{')} bytes, "
              f"request {len(requests[0])} bytes", flush=True)

        # Both servers run side by side (an idle one costs nothing) and are driven in alternating
        # rounds, so that the machine's drift (shared CPUs) hits both alike.
        bare, bare_port = start_bare(tmp, procs, args.server_procs)
        redis_proc, redis_url = start_redis(tmp / "redis-ingest", procs)
        sp, sp_port, _ = start_storepulse("ingest", tmp / "ingest", procs, redis_url, args.server_procs)
        print(f"bare Starlette/uvicorn handler on :{bare_port}; storepulse ingest on :{sp_port} with {redis_url} "
              f"(appendonly, appendfsync always, AOF in {tmp / 'redis-ingest'})", flush=True)
        print(f"warm-up {n_warm} requests each, then {args.rounds} alternating rounds of up to "
              f"{per_round} requests or {args.duration / args.rounds:.1f} s per server, "
              f"{args.concurrency} connections, {args.procs} client process(es), {args.server_procs} server process(es) each ...", flush=True)
        warm_up("bare", bare_port, warm_sp, args)
        warm_up("storepulse", sp_port, warm_sp, args)
        if args.profile:
            spy_exe = Path(sys.executable).parent / "py-spy"
            spy = subprocess.Popen([str(spy_exe), "record", "--pid", str(sp.pid), "--format", "raw", "--rate", "200",
                                    "--nonblocking", "-o", args.profile, *(["--subprocesses"] if args.server_procs > 1 else [])], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.STDOUT, start_new_session=True)
            time.sleep(1)
        bare_t = Totals("bare Starlette+uvicorn handler")
        sp_t = Totals("storepulse ingest (Redis, fsync always)")
        redis_cpu = 0.0
        round_ratios = []
        for k in range(args.rounds):
            part = requests[k * per_round:(k + 1) * per_round]
            order = ("bare", "sp") if k % 2 == 0 else ("sp", "bare")
            rates = {}
            for which in order:
                if which == "bare":
                    rates["bare"] = timed_round(bare_port, part, args, args.duration / args.rounds, bare.pid, bare_t)
                else:
                    r0 = proc_cpu_seconds(redis_proc.pid)
                    rates["sp"] = timed_round(sp_port, part, args, args.duration / args.rounds, sp.pid, sp_t)
                    redis_cpu += proc_cpu_seconds(redis_proc.pid) - r0
            round_ratios.append(rates["sp"] / rates["bare"] if rates["bare"] else float("nan"))
            print(f"  round {k + 1}: bare {rates['bare']:.0f}/s, storepulse {rates['sp']:.0f}/s, "
                  f"ratio {round_ratios[-1]:.3f}", flush=True)
        if spy is not None:
            spy.send_signal(signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                spy.wait(30)
            print_profile(Path(args.profile))
        logged = xlen_total(redis_url)
        expected = n_warm + sp_t.ok
        for p in (sp, redis_proc, bare):
            p.stop()

        print()
        print("== signed Stripe webhooks/s: same machine, same client, same signed requests ==")
        print(f"{'server':<42}{'ok':>7}{'bad':>5}{'secs':>7}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}"
              f"{'srv CPU':>9}{'client CPU':>11}{'machine':>9}")
        for t in (bare_t, sp_t):
            pct = (lambda x: x / t.secs * 100) if t.secs else (lambda x: 0.0)
            print(f"{t.label:<42}{t.ok:>7}{t.sent - t.ok:>5}{t.secs:>7.2f}{t.rate:>8.0f}"
                  f"{percentile(t.latencies, 50) * 1000:>8.1f}{percentile(t.latencies, 99) * 1000:>8.1f}"
                  f"{pct(t.server_cpu):>8.0f}%{pct(t.client_cpu):>10.0f}%{t.machine_busy / t.machine_wall * 100 if t.machine_wall else 0:>8.0f}%")
        ratio = sp_t.rate / bare_t.rate if bare_t.rate else float("nan")
        print(f"ratio storepulse/bare: {ratio:.3f} overall; per round {', '.join(f'{r:.3f}' for r in round_ratios)} "
              f"(median {percentile(round_ratios, 50):.3f})")
        print(f"redis-server CPU during the storepulse rounds: {redis_cpu / sp_t.secs * 100 if sp_t.secs else 0:.0f}%  "
              f"(CPU % = CPU seconds / wall seconds of the timed rounds; 200% = both cores; 'machine' = all processes, kernel included)")
        print(f"Redis streams XLEN total: {logged}; accepted (warm-up {n_warm} + timed {sp_t.ok}): {expected} -> "
              f"{'OK' if logged == expected else 'MISMATCH'}")
        failures = []
        for t in (bare_t, sp_t):
            if t.ok != t.sent:
                failures.append(f"{t.label}: {t.sent - t.ok} of {t.sent} responses not 200 accepted, e.g. {t.bad[:3]}")
        if logged != expected:
            failures.append(f"storepulse: {logged} entries in the log for {expected} accepted requests")

        # 4. webhook -> WebSocket latency through `storepulse up`.
        lat_results: list[LatencyResult] = []
        if not args.no_latency:
            modes = ["redis"] + ([] if args.no_embedded else ["embedded"])
            for mode in modes:
                print(f"\nstorepulse up ({mode}): {args.latency_requests} payments at {args.latency_rate:g}/s, "
                      f"WebSocket client on /v1/live ...", flush=True)
                lr = run_latency(mode, tmp / f"up-{mode}", procs, args.latency_requests, args.latency_rate)
                lat_results.append(lr)
                if lr.bad or lr.missing:
                    failures.append(f"latency {mode}: {len(lr.bad)} problems {lr.bad[:3]}, {lr.missing} payments never seen on the WebSocket")
            print()
            print(f"== webhook -> WebSocket latency (storepulse up, {args.latency_requests} payments at {args.latency_rate:g}/s) ==")
            print(f"{'mode':<10}{'seen':>7}{'e2e p50':>9}{'p99':>8}{'max':>8}{'   POST ack p50':>15}{'p99':>8}   ms")
            for lr in lat_results:
                print(f"{lr.mode:<10}{len(lr.e2e_ms):>7}{percentile(lr.e2e_ms, 50):>9.1f}{percentile(lr.e2e_ms, 99):>8.1f}"
                      f"{max(lr.e2e_ms, default=float('nan')):>8.1f}{percentile(lr.ack_ms, 50):>15.1f}"
                      f"{percentile(lr.ack_ms, 99):>8.1f}")
        if failures:
            print("\nFAILURES:")
            for f in failures:
                print(f"  {f}")
            return 1
        return 0
    finally:
        if spy is not None and spy.poll() is None:
            spy.kill()
            spy.wait()
        for p in reversed(procs):
            p.stop(graceful=5)
        if args.keep or os.environ.get("BENCH_KEEP"):
            print(f"(kept {tmp})")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
