"""Many dashboards: one change reaches every connected client. storepulse's gateway (real SQLite read
model -> change feed -> Hub -> WebSocket server, ws_gateway/) against a bare `websockets` server that
broadcasts the same message to the same clients, in the same run.

    .venv/bin/python bench/broadcast.py [--clients 5000] [--changes 10] [--client-procs 2]

For each change: latency from the moment it is handed over (storepulse: written to the read model; bare:
`websockets.broadcast` called) to its arrival at each client, p50 / p99 / max over all clients and
changes; and the server process's CPU time per change. Clients run in separate processes (on the same
two cores as the server: both modes pay that alike). The ratio is bare p99 / storepulse p99 (>= 0.5 is
the target: storepulse at least half as fast as the bare broadcast).
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import re
import statistics
import sys
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.changes import Bucket
from core.config import parse_config
from state.sqlite_readmodel import SqliteReadModel
from ws_gateway.hub import Hub
from ws_gateway.limits import WsLimits
from ws_gateway.live import start_ws_server

TOKEN = "bench-token-0123456789abcdef"
CONFIG = f"""
[orgs.acme]
timezone = "Europe/Berlin"
currency = "EUR"
token = "{TOKEN}"
[orgs.acme.stores.s1]
provider = "events"
secret = "k"
[orgs.acme.stores.s2]
provider = "events"
secret = "k"
"""
VERSION = re.compile(rb'"version":(\d+)')
BASE_VERSION = 1_000_000


# --- clients (their own processes) ------------------------------------------------------------------

def _clients(url: str, n: int, header: bool, pipe: Connection) -> None:
    asyncio.run(_run_clients(url, n, header, pipe))


async def _run_clients(url: str, n: int, header: bool, pipe: Connection) -> None:
    from websockets.asyncio.client import connect

    received: dict[int, list[float]] = {}
    ready = 0
    all_ready = asyncio.Event()

    async def one() -> None:
        nonlocal ready
        headers = {"Authorization": f"Bearer {TOKEN}"} if header else {}
        async with connect(url, additional_headers=headers, max_size=None, open_timeout=120,
                           ping_interval=None) as conn:
            await conn.recv(decode=False)  # the snapshot (bare: a hello)
            ready += 1
            if ready == n:
                all_ready.set()
            async for raw in conn:
                t = time.time()
                m = VERSION.search(raw if isinstance(raw, bytes) else raw.encode())
                if m is not None:
                    received.setdefault(int(m.group(1)), []).append(t)

    tasks = []
    for i in range(n):
        tasks.append(asyncio.create_task(one()))
        if i % 200 == 199:
            await asyncio.sleep(0.05)  # do not stampede the accept queue
    await all_ready.wait()
    pipe.send("ready")
    loop = asyncio.get_running_loop()
    while True:
        command = await loop.run_in_executor(None, pipe.recv)
        if command == "report":
            pipe.send(received)
            break
        version = int(command)
        while len(received.get(version, ())) < n:
            await asyncio.sleep(0.001)
        pipe.send(("done", version))
    for t in tasks:
        t.cancel()


def _start_clients(url: str, total: int, procs: int, header: bool) -> list[tuple[mp.Process, Connection]]:
    out = []
    ctx = mp.get_context("spawn")
    for i in range(procs):
        n = total // procs + (1 if i < total % procs else 0)
        parent, child = ctx.Pipe()
        p = ctx.Process(target=_clients, args=(url, n, header, child), daemon=True)
        p.start()
        out.append((p, parent))
    for _, pipe in out:
        if pipe.recv() != "ready":
            raise RuntimeError("clients did not connect")
    return out


async def _round(clients: list[tuple[mp.Process, Connection]], version: int, send: object) -> tuple[float, float]:
    """Hands the change over (`send()`), waits until every client has it; (t0, server CPU seconds)."""
    loop = asyncio.get_running_loop()
    for _, pipe in clients:
        pipe.send(str(version))
    cpu0, t0 = time.process_time(), time.time()
    result = send()  # type: ignore[operator]
    if asyncio.iscoroutine(result):
        await result
    for _, pipe in clients:
        await loop.run_in_executor(None, pipe.recv)
    return t0, time.process_time() - cpu0


def _latencies(clients: list[tuple[mp.Process, Connection]], sent: dict[int, float]) -> list[float]:
    out: list[float] = []
    for p, pipe in clients:
        pipe.send("report")
        received: dict[int, list[float]] = pipe.recv()
        p.join(timeout=30)
        for version, t0 in sent.items():
            out += [t - t0 for t in received.get(version, [])]
    return out


# --- the two servers --------------------------------------------------------------------------------

def _bucket(version: int) -> Bucket:
    return Bucket("acme", version, "day", "2026-12-06", "s1", "EUR", 100 * version, 0, version, version, version)


async def bench_storepulse(clients_n: int, changes: int, procs: int, port: int) -> tuple[list[float], list[float], int]:
    config = parse_config(CONFIG, {})
    with tempfile.TemporaryDirectory() as tmp:
        model = SqliteReadModel(Path(tmp) / "readmodel.sqlite3")
        model.write([_bucket(BASE_VERSION)])
        hub = Hub(config, model)
        await hub.start()
        server = await start_ws_server(config, hub, "127.0.0.1", port,
                                       WsLimits(per_org=clients_n + 10, total=clients_n + 10))
        clients = await asyncio.to_thread(_start_clients, f"ws://127.0.0.1:{port}", clients_n, procs, True)
        size = len(orjson.dumps(hub.payload("acme", "figures")))
        sent, cpu = {}, []
        for k in range(1, changes + 1):
            version = BASE_VERSION + k
            t0, used = await _round(clients, version, lambda v=version: asyncio.to_thread(model.write, [_bucket(v)]))
            sent[version] = t0
            cpu.append(used)
        lat = await asyncio.to_thread(_latencies, clients, sent)
        server.close()
        await hub.stop()
        model.close()
        return lat, cpu, size


async def bench_bare(clients_n: int, changes: int, procs: int, port: int, size_like: bytes) -> tuple[list[float], list[float]]:
    from websockets.asyncio.server import ServerConnection, broadcast, serve

    conns: set[ServerConnection] = set()

    async def handler(conn: ServerConnection) -> None:
        conns.add(conn)
        await conn.send('{"type":"hello"}')
        try:
            await conn.wait_closed()
        finally:
            conns.discard(conn)

    server = await serve(handler, "127.0.0.1", port, max_size=4096)
    clients = await asyncio.to_thread(_start_clients, f"ws://127.0.0.1:{port}", clients_n, procs, False)
    sent, cpu = {}, []
    for k in range(1, changes + 1):
        version = BASE_VERSION + k
        message = size_like.replace(b'"version":0', f'"version":{version}'.encode()).decode()
        t0, used = await _round(clients, version, lambda m=message: broadcast(conns, m))
        sent[version] = t0
        cpu.append(used)
    lat = await asyncio.to_thread(_latencies, clients, sent)
    server.close()
    return lat, cpu


def _summary(name: str, lat: list[float], cpu: list[float]) -> tuple[float, str]:
    lat.sort()
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    line = (f"{name:<11} deliveries {len(lat):>7}  p50 {statistics.median(lat) * 1000:8.1f} ms  p99 {p99 * 1000:8.1f} ms  "
            f"max {lat[-1] * 1000:8.1f} ms  server CPU per change {statistics.median(cpu) * 1000:7.1f} ms")
    return p99, line


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=5000)
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--client-procs", type=int, default=2)
    ap.add_argument("--port", type=int, default=18765)
    args = ap.parse_args()
    lat, cpu, size = asyncio.run(bench_storepulse(args.clients, args.changes, args.client_procs, args.port))
    sp_p99, sp_line = _summary("storepulse", lat, cpu)
    # the bare server sends a message of the same size as storepulse's payload
    filler = b'{"type":"figures","version":0,"pad":"' + b"x" * max(0, size - 40) + b'"}'
    lat_b, cpu_b = asyncio.run(bench_bare(args.clients, args.changes, args.client_procs, args.port + 1, filler))
    bare_p99, bare_line = _summary("bare", lat_b, cpu_b)
    print(f"{args.clients} clients in {args.client_procs} processes, {args.changes} changes, payload {size} bytes")
    print(sp_line)
    print(bare_line)
    print(f"ratio (bare p99 / storepulse p99): {bare_p99 / sp_p99:.2f}  (target >= 0.5)")


if __name__ == "__main__":
    main()
