"""`storepulse ingest --processes N`: N ingest servers on one port, one set of metrics, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from pathlib import Path

import httpx
import redis

from storepulse import STOREPULSE
from tests.helpers import (
    ORGS_TOML,
    RATES_CSV,
    SECRETS,
    RedisServer,
    free_port,
    payment_intent_succeeded,
    stripe_signature,
    wait_for,
)


def _children(pid: int) -> set[int]:
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.add(int(entry.name))
            except (OSError, IndexError, ValueError):
                continue
    return out


def _metric(text: str, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def test_processes_share_the_port_and_sum_their_metrics(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    (tmp_path / "storepulse.toml").write_text(ORGS_TOML)
    (tmp_path / "rates.csv").write_text(RATES_CSV)
    port = free_port()
    env = {**os.environ, "ACME_EU2_SECRET": SECRETS["acme-eu2"]}
    log = open(tmp_path / "ingest.log", "ab")  # closed below
    proc = subprocess.Popen([*STOREPULSE, "ingest", "--config", "storepulse.toml", "--redis", server.url,
                             "--http-port", str(port), "--processes", "2"], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            try:
                return httpx.get(f"{base}/metrics", timeout=0.5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(lambda: up() and len(_children(proc.pid)) == 2, 30, "two ingest workers on one port")
        workers = _children(proc.pid)
        tag = uuid.uuid4().hex[:8]

        async def send_all() -> list[int]:
            # 16 connections at once, so the kernel spreads them over both workers.
            limits = httpx.Limits(max_connections=16, max_keepalive_connections=0)
            async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:  # a busy machine is slow, not wrong
                async def post(i: int) -> int:
                    body = payment_intent_succeeded(f"evt_{tag}_{i}", f"pi_{tag}_{i}", 100 + i)
                    r = await client.post("/webhooks/stripe/acme-stripe", content=body,
                                          headers={"Stripe-Signature": stripe_signature(body, SECRETS["acme-stripe"])})
                    return r.status_code
                return await asyncio.gather(*(post(i) for i in range(300)))

        assert asyncio.run(send_all()) == [200] * 300
        r = redis.Redis.from_url(server.url)
        assert sum(r.xlen(f"sp:{{p{p}}}:log") for p in range(4)) == 300
        # both workers took connections: each has a metrics file with deliveries in it
        files = list((tmp_path / ".storepulse" / "ingest-metrics").glob("counter_*.db"))
        assert {int(f.stem.split("_")[1]) for f in files} == workers
        # whichever worker answers, /metrics reports the sum over both
        for _ in range(6):
            text = httpx.get(f"{base}/metrics", headers={"Connection": "close"}).text
            assert _metric(text, 'storepulse_ingest_deliveries_total{outcome="accepted",provider="stripe"}') == 300
            assert _metric(text, 'storepulse_ingest_events_total{provider="stripe"}') == 300
        # a worker that dies is replaced; the port keeps answering
        os.kill(next(iter(workers)), signal.SIGKILL)
        wait_for(lambda: len(_children(proc.pid)) == 2 and _children(proc.pid) != workers, 30, "a new worker")
        wait_for(up, 10, "the port after a restart")
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
        log.close()
        server.stop()
    assert code == 0
    assert _children(proc.pid) == set()
