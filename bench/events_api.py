"""Batch events API throughput: `POST /v1/events` with 1,000 events a request, through the real server
with durable append (Redis with appendfsync always, and embedded SQLite), side by side with a bare
handler on the same stack that only reads and parses the body.

    .venv/bin/python bench/events_api.py [--batches 60] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

import httpx
import orjson

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
_spec = importlib.util.spec_from_file_location("bench_ingest", REPO / "bench" / "ingest.py")
bi = importlib.util.module_from_spec(_spec)
sys.modules["bench_ingest"] = bi
_spec.loader.exec_module(bi)  # type: ignore[union-attr]

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


def serve_bare(port: int) -> None:
    import uvloop
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from storepulse.servers import build_app, http_server

    async def events(request: Request) -> Response:
        doc = orjson.loads(await request.body())
        return JSONResponse({"status": "accepted", "new": len(doc["events"]), "duplicates": 0})

    uvloop.run(http_server(build_app([Route("/v1/events", events, methods=["POST"])]), "127.0.0.1", port).serve())


def batches(n: int, tag: str) -> list[bytes]:
    t = int(time.time() * 1000)
    return [orjson.dumps({"events": [
        {"type": "page_view", "id": f"{tag}-{b}-{i}", "time": t + i, "visitor": f"v{i % 977}", "url": f"/p/{i % 50}"}
        for i in range(1000)]}) for b in range(n)]


async def drive(port: int, bodies: list[bytes], concurrency: int) -> tuple[float, int]:
    queue = list(bodies)
    accepted = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal accepted
        while queue:
            body = queue.pop()
            r = await client.post(f"http://127.0.0.1:{port}/v1/events", content=body,
                                  headers={"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"})
            assert r.status_code == 200, r.text
            accepted += r.json()["new"]

    async with httpx.AsyncClient(timeout=60) as client:
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        return time.perf_counter() - started, accepted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--serve-bare", type=int)
    args = ap.parse_args()
    if args.serve_bare:
        serve_bare(args.serve_bare)
        return
    work = Path(tempfile.mkdtemp(prefix="sp-bench-events-"))
    procs: list = []
    try:
        _, redis_url = bi.start_redis(work / "redis", procs)
        rows = []
        bare_port = free_port()
        procs.append(bi.Proc("bare", [sys.executable, __file__, "--serve-bare", str(bare_port)], work / "bare.log", cwd=REPO))
        bi.wait_until(lambda: bi.http_ok(bare_port), 30, "bare server")
        for name, extra, command in (("storepulse ingest (Redis, fsync always)", ["--redis", redis_url], "ingest"),
                                     ("storepulse up (embedded SQLite, fsync)", ["--ws-port", str(free_port())], "up")):
            d = work / command
            d.mkdir()
            (d / "storepulse.toml").write_text(CONFIG)
            port = free_port()
            procs.append(bi.Proc(name, [sys.executable, "-m", "storepulse", command, "--config", str(d / "storepulse.toml"),
                                        "--data-dir", str(d / "data"), "--http-port", str(port), *extra], d / "sp.log", cwd=REPO))
            bi.wait_until(lambda: bi.http_ok(port), 60, name)
            rows.append((name, port))
        print(f"batch events API: {args.batches} batches of 1,000 page views, {args.concurrency} concurrent clients")
        results = {}
        for rnd in range(2):  # alternate, so a noisy neighbour hits both
            for name, port in [("bare Starlette+uvicorn handler (parse only)", bare_port), *rows]:
                secs, accepted = asyncio.run(drive(port, batches(args.batches, f"r{rnd}{port}"), args.concurrency))
                assert accepted == args.batches * 1000 or name.startswith("bare"), (name, accepted)
                results.setdefault(name, []).append(args.batches * 1000 / secs)
        bare = max(results["bare Starlette+uvicorn handler (parse only)"])
        for name, rates in results.items():
            print(f"  {name:45s} {max(rates):>10,.0f} events/s  (ratio to bare {max(rates) / bare:.2f})")
    finally:
        for p in procs:
            p.stop()


if __name__ == "__main__":
    main()
