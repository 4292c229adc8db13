"""The parts run alone against Redis, as docker-compose.yml runs them: ingest, a dataflow cluster, gateway."""

from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from storepulse import STOREPULSE
from tests.helpers import (
    ORGS_TOML,
    RATES_CSV,
    SECRETS,
    TOKENS,
    RedisServer,
    free_port,
    payment_intent_succeeded,
    recv_json,
    stripe_signature,
    wait_for,
    wait_ws,
)


def _spawn(args: list[str], tmp: Path, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "ACME_EU2_SECRET": SECRETS["acme-eu2"]}
    out = open(tmp / f"{name}.log", "ab")  # closed with the process
    return subprocess.Popen([*STOREPULSE, *args], cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)


def _http_up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=0.5).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("topology", ["one process, two workers", "two-process cluster"])
def test_parts_alone_on_redis(topology: str, tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis")
    (tmp_path / "storepulse.toml").write_text(ORGS_TOML)
    (tmp_path / "rates.csv").write_text(RATES_CSV)
    common = ["--config", "storepulse.toml", "--redis", redis.url]
    ingest_ports = [free_port(), free_port()]
    gw_http, gw_ws = free_port(), free_port()
    procs = [_spawn(["ingest", *common, "--http-port", str(p)], tmp_path, f"ingest-{i}") for i, p in enumerate(ingest_ports)]
    if topology == "one process, two workers":
        procs.append(_spawn(["flows", *common, "--data-dir", "flows", "-w", "2"], tmp_path, "flows"))
    else:
        addresses = f"127.0.0.1:{free_port()};127.0.0.1:{free_port()}"
        for i in range(2):
            procs.append(_spawn(["flows", *common, "--data-dir", "flows", "-i", str(i), "-a", addresses], tmp_path, f"flows-{i}"))
    procs.append(_spawn(["gateway", *common, "--http-port", str(gw_http), "--ws-port", str(gw_ws)], tmp_path, "gateway"))
    try:
        for port in [*ingest_ports, gw_http]:
            wait_for(lambda: _http_up(f"http://127.0.0.1:{port}/metrics"), 30, f"port {port}")
        with connect(f"ws://127.0.0.1:{gw_ws}/v1/live", additional_headers={"Authorization": f"Bearer {TOKENS['acme']}"}) as ws:
            snap = recv_json(ws)
            assert snap["figures"]["total"]["all"]["paid_orders"] == 0
            tag = uuid.uuid4().hex[:8]
            # Both orgs, through both ingest processes: the cluster splits organisations between workers.
            for i in range(20):
                org_store, cur = ("acme-stripe", "eur") if i % 2 else ("tokyo-stripe", "jpy")
                body = payment_intent_succeeded(f"evt_{tag}_{i}", f"pi_{tag}_{i}", 100 + i, cur)
                r = httpx.post(f"http://127.0.0.1:{ingest_ports[i % 2]}/webhooks/stripe/{org_store}", content=body,
                               headers={"Stripe-Signature": stripe_signature(body, SECRETS[org_store])})
                assert r.status_code == 200, r.text
            msg = wait_ws(ws, lambda m: m["figures"]["total"]["all"]["paid_orders"] == 10, timeout=30)
            assert msg["figures"]["total"]["all"]["gross_revenue"] == {"amount": sum(100 + i for i in range(1, 20, 2)), "currency": "EUR", "exponent": 2}
        tokyo = httpx.get(f"http://127.0.0.1:{gw_http}/api/v1/orgs/tokyo/figures?period=all",
                          headers={"Authorization": f"Bearer {TOKENS['tokyo']}"}).json()
        assert (tokyo["paid_orders"], tokyo["gross_revenue"]["amount"]) == (10, sum(100 + i for i in range(0, 20, 2)))
    finally:
        for p in procs:
            p.terminate()
        try:
            for p in procs:
                assert p.wait(20) == 0, f"{p.args} exited with {p.returncode} on SIGTERM"
        finally:
            for p in procs:  # none is left running, whatever failed above
                if p.poll() is None:
                    p.kill()
                    p.wait()
            redis.stop()
