"""Real processes and real clients for the tests: storepulse itself, redis-server, signed webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hmac
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from hashlib import sha256
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
from websockets.sync.client import ClientConnection, connect

from core.changes import Record
from core.config import parse_config
from core.events import Event, Kind, event_from_json
from ingest.app import Ingest, ingest_routes
from ingest.monitor import ConnectionMonitor
from state.sqlite_connections import SqliteConnectionStats
from state.sqlite_log import SqliteEventLog, SqliteLogReader
from state.sqlite_rejected import SqliteRejectedStore
from storepulse import STOREPULSE
from storepulse.servers import http_server
from web.app import build_app

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
STRIPE_FIXTURES = SHARED / "fixtures" / "webhooks" / "stripe"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def today_clear_of_midnight(tz: str = "Europe/Berlin", seconds: float = 120) -> dt.date:
    """Today in `tz`, for a test that reads "today" from a server's wall clock and must end on the day
    it started: if the local midnight is less than `seconds` away, this first waits until it has passed."""
    zone = ZoneInfo(tz)
    now = dt.datetime.now(zone)
    midnight = dt.datetime.combine(now.date() + dt.timedelta(days=1), dt.time(), zone).timestamp()
    left = midnight - time.time()
    if left < seconds:
        time.sleep(max(0.0, left) + 1)
    return dt.datetime.now(zone).date()


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed: `apt-get install redis-server` (CI's .ci/run does)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.logfile = workdir / "redis.log"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._cmd = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                     "--appendfsync", "always", "--dir", str(workdir)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(self._cmd, stdout=out, stderr=subprocess.STDOUT)
        wait_for(self._up, 10, f"redis-server on port {self.port}")

    def _up(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"redis-server exited with {self.proc.returncode}:\n{self.logfile.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


ORGS_TOML = """
rates_file = "rates.csv"

[orgs.acme]
timezone = "Europe/Berlin"
currency = "EUR"
token = "acme-token-0123456789"

[orgs.acme.stores.acme-stripe]
provider = "stripe"
secret = "whsec_acme_secret"

[orgs.acme.stores.acme-eu2]
provider = "stripe"
secret = "env:ACME_EU2_SECRET"

[orgs.acme.stores.acme-site]
provider = "events"
secret = "acme-site-key-0123456789"

[orgs.tokyo]
timezone = "Asia/Tokyo"
currency = "JPY"
token = "tokyo-token-0123456789"

[orgs.tokyo.stores.tokyo-stripe]
provider = "stripe"
secret = "whsec_tokyo_secret"
"""
# The UCI Online Retail shop, for replays of ../shared/data/online_retail.csv.gz
RETAIL_TOML = """
[orgs.retail]
timezone = "Europe/London"
currency = "GBP"
token = "retail-token-0123456789"
[orgs.retail.stores.uk]
provider = "events"
secret = "retail-key-0123456789"
"""

# ECB format: units per euro. The last fixing carries forward to today.
RATES_CSV = "Date,USD,JPY,\n2026-01-05,1.0500,160.00,\n2026-01-02,1.0400,159.00,\n"

SECRETS = {"acme-stripe": "whsec_acme_secret", "acme-eu2": "whsec_acme_eu2", "tokyo-stripe": "whsec_tokyo_secret",
           "acme-site": "acme-site-key-0123456789"}
TOKENS = {"acme": "acme-token-0123456789", "tokyo": "tokyo-token-0123456789"}


class Storepulse:
    """`storepulse up` as a user runs it, in its own process group."""

    def __init__(self, workdir: Path, redis_url: str | None = None, config: str = ORGS_TOML) -> None:
        self.workdir = workdir
        self.config = workdir / "storepulse.toml"
        self.config.write_text(config)
        (workdir / "rates.csv").write_text(RATES_CSV)
        self.data_dir = workdir / "data"
        self.redis_url = redis_url
        self.http_port = free_port()
        self.ws_port = free_port()
        self.base = f"http://127.0.0.1:{self.http_port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.logfile = workdir / "storepulse.log"
        self.extra_args: list[str] = []

    def start(self) -> Storepulse:
        cmd = [*STOREPULSE, "up", "--config", str(self.config), "--data-dir", str(self.data_dir),
               "--http-port", str(self.http_port), "--ws-port", str(self.ws_port)]
        if self.redis_url:
            cmd += ["--redis", self.redis_url]
        cmd += self.extra_args
        env = {**os.environ, "ACME_EU2_SECRET": SECRETS["acme-eu2"]}
        with open(self.logfile, "ab") as out:
            self.proc = subprocess.Popen(cmd, cwd=self.workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._ready, 30, f"storepulse up to answer (log: {self.logfile})")
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"storepulse up exited with {self.proc.returncode}:\n{self.logfile.read_text()[-3000:]}")
        try:
            return httpx.get(f"{self.base}/metrics", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> int:
        """Ctrl-C, as a terminal sends it: SIGINT to the whole process group."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGINT)
        code = self.proc.wait(30)
        return code

    def kill(self) -> None:
        """kill -9 of every process of the group: nothing gets to clean up."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.logfile.read_text(errors="replace")[-chars:]
        except OSError as e:
            return f"(no log: {e})"

    def ensure_stopped(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()

    # --- clients -------------------------------------------------------------------------------

    def post_stripe(self, store: str, body: bytes, secret: str | None = None, timestamp: int | None = None,
                    headers: dict[str, str] | None = None) -> httpx.Response:
        hdrs = {"Content-Type": "application/json",
                "Stripe-Signature": stripe_signature(body, secret or SECRETS[store], timestamp)}
        hdrs.update(headers or {})
        return httpx.post(f"{self.base}/webhooks/stripe/{store}", content=body, headers=hdrs, timeout=10)

    def get(self, path: str, org: str = "acme", **params: object) -> httpx.Response:
        return httpx.get(f"{self.base}{path}", params=params, headers={"Authorization": f"Bearer {TOKENS[org]}"}, timeout=10)

    def post_events(self, events: object, key: str | None = None) -> httpx.Response:
        """POST /v1/events of `events`, or of the body itself when given bytes (orjson writes no
        integer beyond 64 bits and nothing nested 255 levels deep: json.dumps those)."""
        body = events if isinstance(events, bytes) else orjson.dumps(events)
        return httpx.post(f"{self.base}/v1/events", content=body, timeout=30,
                          headers={"Authorization": f"Bearer {key or SECRETS['acme-site']}", "Content-Type": "application/json"})

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Another storepulse command against the same config and data."""
        cmd = [*STOREPULSE, *args, "--config", str(self.config), "--data-dir", str(self.data_dir)]
        if self.redis_url:
            cmd += ["--redis", self.redis_url]
        env = {**os.environ, "ACME_EU2_SECRET": SECRETS["acme-eu2"]}
        return subprocess.run(cmd, cwd=self.workdir, env=env, capture_output=True, text=True, timeout=60)

    def figures(self, org: str, period: str = "all", store: str | None = None, token: str | None = None) -> httpx.Response:
        params = {"period": period} | ({"store": store} if store else {})
        return httpx.get(f"{self.base}/api/v1/orgs/{org}/figures", params=params,
                         headers={"Authorization": f"Bearer {token or TOKENS[org]}"}, timeout=10)

    @contextlib.contextmanager
    def ws(self, token: str) -> Iterator[ClientConnection]:
        with connect(f"ws://127.0.0.1:{self.ws_port}/v1/live", open_timeout=10) as conn:
            conn.send(orjson.dumps({"type": "auth", "token": token}).decode())
            yield conn


class IngestServer:
    """The real ingest app of `config` (TOML) on a real uvicorn in a thread, with a clock the test
    controls, a real SQLite log and rejected store under `tmp`."""

    def __init__(self, tmp: Path, config: str, now: float) -> None:
        self.now = now
        self.log_path = tmp / "log.sqlite3"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.log = SqliteEventLog(self.log_path)
        self.rejected = SqliteRejectedStore(tmp / "rejected.sqlite3")
        self.ingest = Ingest(parse_config(config, {}), self.log, self.rejected,
                             ConnectionMonitor(SqliteConnectionStats(tmp / "connections.sqlite3")), clock=lambda: self.now)
        self.server = http_server(build_app(ingest_routes(self.ingest)), "127.0.0.1", self.port)
        self.server.config.loop = "asyncio"
        self._serving = asyncio.run_coroutine_threadsafe(self.server.serve(), self._loop)
        wait_for(lambda: self.server.started, 10, "in-process ingest server")
        self.client = httpx.Client(base_url=self.url, timeout=10)

    def deliver(self, path: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
        return self.client.post(path, content=body, headers=headers)

    def run(self, coro: Any) -> Any:
        """Runs a coroutine on the server's loop (e.g. ingest.redrive) and returns its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)

    def logged(self) -> list[Event]:
        reader = SqliteLogReader(self.log_path)
        try:
            return [event_from_json(b) for p in range(reader.partitions) for _, b in reader.read(p, None, 100_000)]
        finally:
            reader.close()

    def close(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self._serving.result(10)
        self.run(self.log.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def stripe_signature(body: bytes, secret: str, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, sha256).hexdigest()
    return f"t={t},v1={mac}"


def recv_json(conn: ClientConnection, timeout: float = 10) -> dict[str, Any]:
    return json.loads(conn.recv(timeout=timeout))


def wait_ws(conn: ClientConnection, check: Callable[[dict[str, Any]], bool], timeout: float = 15,
            types: tuple[str, ...] = ("snapshot", "figures")) -> dict[str, Any]:
    """Reads pushed messages of these types (others, such as segment changes, are passed over) until one
    satisfies `check`; fails with the last one seen."""
    deadline = time.monotonic() + timeout
    last: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        try:
            last = recv_json(conn, timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            break
        if last.get("type") in types and check(last):
            return last
    raise AssertionError(f"no WebSocket message matched within {timeout} s; last: {json.dumps(last)[:2000]}")


def wait_api(sp: Storepulse, org: str, check: Callable[[dict[str, Any]], bool], period: str = "all",
             store: str | None = None, timeout: float = 15) -> dict[str, Any]:
    """Polls GET /figures until `check` holds."""
    return wait_json(sp, lambda: sp.figures(org, period, store).json(), check, timeout, "GET /figures")


def wait_json(sp: Storepulse, fetch: Callable[[], dict[str, Any]], check: Callable[[dict[str, Any]], bool],
              timeout: float = 15, what: str = "the read API") -> dict[str, Any]:
    """Polls `fetch` until `check` holds; else fails with the last answer and the tail of storepulse's log."""
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = fetch()
        if check(body):
            return body
        time.sleep(0.05)
    raise AssertionError(f"{what} never matched within {timeout} s; last: {body}\n"
                         f"--- tail of {sp.logfile}:\n{sp.log_tail()}")


_event_ids = itertools.count()


def event(kind: Kind, t: int, **kw: Any) -> Event:
    """An event of organisation "o", store "s" in EUR unless told otherwise, with a fresh id."""
    kw.setdefault("id", f"e{next(_event_ids)}")
    kw.setdefault("store", "s")
    kw.setdefault("currency", "EUR")
    return Event(kind=kind, org="o", time=t, **kw)


def latest_values(records: Iterable[Record]) -> dict[tuple[str, str], Any]:
    """The value each (kind, key) ends with: the record of the highest version."""
    best: dict[tuple[str, str], Record] = {}
    for r in records:
        k = (r.kind, r.key)
        if k not in best or r.version > best[k].version:
            best[k] = r
    return {k: r.value for k, r in best.items()}


# --- Stripe event bodies, shaped like real deliveries (see ../shared/fixtures/webhooks/stripe) ---

def payment_intent_succeeded(evt: str, pi: str, amount: int, currency: str = "eur", created: int | None = None) -> bytes:
    return orjson.dumps({
        "id": evt, "object": "event", "api_version": "2020-08-27", "created": created or int(time.time()),
        "type": "payment_intent.succeeded", "livemode": False, "pending_webhooks": 1,
        "data": {"object": {"id": pi, "object": "payment_intent", "amount": amount, "amount_received": amount,
                            "currency": currency, "customer": "cus_1", "status": "succeeded"}},
    })


def checkout_session_completed(evt: str, cs: str, pi: str, amount: int, currency: str = "eur", created: int | None = None) -> bytes:
    return orjson.dumps({
        "id": evt, "object": "event", "created": created or int(time.time()), "type": "checkout.session.completed",
        "data": {"object": {"id": cs, "object": "checkout.session", "amount_total": amount, "currency": currency,
                            "customer": "cus_1", "payment_intent": pi, "payment_status": "paid", "mode": "payment"}},
    })


def charge_refunded(evt: str, ch: str, pi: str, amount: int, refunded: int, currency: str = "eur", created: int | None = None) -> bytes:
    return orjson.dumps({
        "id": evt, "object": "event", "created": created or int(time.time()), "type": "charge.refunded",
        "data": {"object": {"id": ch, "object": "charge", "amount": amount, "amount_refunded": refunded,
                            "currency": currency, "payment_intent": pi, "refunded": refunded == amount}},
    })


def post_list_orders(sp: Storepulse, t: int) -> None:
    """The lists' and profiles' shop: four Stripe checkouts of old shape (display_items), two by
    cus_a, one by cus_b, one by a guest, paid at t, t+60, t+120, t+180 (Unix seconds)."""
    orders = [  # (event, pi, customer, amount, created, items (name, qty, unit))
        ("e1", "pi_1", "cus_a", 3000, t, [("shirt", 2, 1500)]),
        ("e2", "pi_2", "cus_a", 4500, t + 60, [("shirt", 1, 1500), ("hat", 2, 1500)]),
        ("e3", "pi_3", "cus_b", 1500, t + 120, [("hat", 1, 1500)]),
        ("e4", "pi_4", None, 9900, t + 180, [("coat", 1, 9900)]),
    ]
    for evt, pi, cus, amount, created, items in orders:
        body = json.loads(checkout_session_completed(evt, f"cs_{pi}", pi, amount, created=created))
        obj = body["data"]["object"]
        obj["customer"] = cus
        del obj["amount_total"]
        obj["display_items"] = [{"amount": u, "currency": "eur", "quantity": q, "custom": {"name": n}} for n, q, u in items]
        r = sp.post_stripe("acme-stripe", json.dumps(body).encode())
        assert r.status_code == 200, r.text
