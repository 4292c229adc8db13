"""Backfill sync against real HTTP servers that keep Stripe's and WooCommerce's contracts.

The fake vendors (Starlette on uvicorn in a thread, on a free port) paginate like the real APIs
(Stripe: newest first, `starting_after`, `has_more`, `created[gte]`, `expand[]`; WooCommerce:
`page`/`per_page`, `X-WP-Total(Pages)`, `after`, OAuth 1.0a checked as WC_REST_Authentication
checks it), answer errors in their formats, and count every request, so the tests can check what
a resumed sync fetches again. Events land in the real SQLite log.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import io
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.config import Store, parse_config
from core.events import Event, Kind, event_from_json
from ingest import sync_stripe, sync_woo
from ingest.app import Ingest, ingest_routes
from ingest.monitor import ConnectionMonitor
from ingest.sync import FetchFailed, Progress, RetryPolicy, parse_since, retry_after_seconds, run_sync
from state.sqlite_connections import SqliteConnectionStats
from state.sqlite_log import SqliteEventLog, SqliteLogReader
from state.sqlite_rejected import SqliteRejectedStore
from storepulse import STOREPULSE
from tests.helpers import REPO, free_port, stripe_signature, wait_for
from web.app import build_app

T0 = 1_700_000_000  # 2023-11-14T22:13:20Z
STRIPE_KEY = "sk_test_sync_0123456789"
WOO_KEY, WOO_SECRET = "ck_0123456789abcdef", "cs_fedcba9876543210"


# --- a real HTTP server in a thread -------------------------------------------------------------

class ServerThread:
    def __init__(self, app: Starlette) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    lifespan="off", timeout_graceful_shutdown=1))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        wait_for(lambda: self.server.started, 10, "fake vendor server to start")
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


Fault = Callable[[str, dict[str, Any], int], Response | None]


@dataclass
class Recorder:
    """Requests seen per path, and faults: fault(path, params, n-th request of that path) -> a response, or None."""

    requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    hang: threading.Event | None = None  # set while a request is held open

    def record(self, path: str, params: dict[str, Any]) -> Response | None:
        self.requests.append((path, params))
        n = sum(1 for p, _ in self.requests if p == path)
        for fault in self.faults:
            answer = fault(path, params, n)
            if answer is not None:
                return answer
        return None

    def of(self, path: str) -> list[dict[str, Any]]:
        return [q for p, q in self.requests if p == path]


def once(path: str, n: int, answer: Callable[[], Response]) -> Fault:
    return lambda p, q, k: answer() if p == path and k == n else None


# --- fake Stripe --------------------------------------------------------------------------------

def stripe_error(status: int, etype: str, message: str, retry_after: str | None = None) -> Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return JSONResponse({"error": {"type": etype, "message": message}}, status_code=status, headers=headers)


class FakeStripe(Recorder):
    """GET /v1/<list>: newest first, `limit` (capped at max_page), `starting_after`, `created[gte]`, `status`,
    and `expand[]` of data.charge(.refunds) on refunds."""

    def __init__(self, objects: dict[str, list[dict[str, Any]]], max_page: int = 100) -> None:
        super().__init__()
        self.objects = objects
        self.max_page = max_page
        self.app = Starlette(routes=[Route("/v1/{path:path}", self.handle, methods=["GET"])])

    async def handle(self, request: Request) -> Response:
        path = request.path_params["path"]
        q = request.query_params
        params = {k: v for k, v in q.multi_items()}
        params["expand"] = [v for k, v in q.multi_items() if k.startswith("expand[")]
        if request.headers.get("authorization") != f"Bearer {STRIPE_KEY}":
            return stripe_error(401, "invalid_request_error", "Invalid API Key provided: sk_test_****")
        fault = self.record(path, params)
        if fault is not None:
            return fault
        if self.hang is not None and path == "charges" and "starting_after" in params:
            self.hang.set()
            while not await request.is_disconnected():  # held until the client is killed
                await asyncio.sleep(0.05)
            return Response(status_code=499)
        if path not in self.objects:
            return stripe_error(404, "invalid_request_error", f"Unrecognized request URL (GET: /v1/{path})")
        objs = [o for o in self.objects[path] if o["created"] >= int(params.get("created[gte]", 0))]
        if "status" in params:
            objs = [o for o in objs if o.get("status") == params["status"]]
        objs.sort(key=lambda o: (o["created"], o["id"]), reverse=True)
        if "starting_after" in params:
            ids = [o["id"] for o in objs]
            if params["starting_after"] not in ids:
                return stripe_error(400, "invalid_request_error", f"No such object: '{params['starting_after']}'")
            objs = objs[ids.index(params["starting_after"]) + 1:]
        limit = min(int(params.get("limit", 10)), self.max_page)
        page = [self._expand(path, dict(o), params["expand"]) for o in objs[:limit]]
        return JSONResponse({"object": "list", "data": page, "has_more": len(objs) > limit, "url": f"/v1/{path}"})

    def _expand(self, path: str, obj: dict[str, Any], expand: list[str]) -> dict[str, Any]:
        if path == "refunds" and any(e.startswith("data.charge") for e in expand) and obj.get("charge"):
            charge = dict(next(c for c in self.objects["charges"] if c["id"] == obj["charge"]))
            if "data.charge.refunds" in expand:
                mine = sorted((r for r in self.objects["refunds"] if r["charge"] == charge["id"]),
                              key=lambda r: r["created"], reverse=True)
                charge["refunds"] = {"object": "list", "data": mine, "has_more": False,
                                     "url": f"/v1/charges/{charge['id']}/refunds"}
            obj["charge"] = charge
        return obj


def customer(cid: str, created: int, email: str) -> dict[str, Any]:
    return {"id": cid, "object": "customer", "created": created, "email": email, "name": None, "currency": None,
            "livemode": False, "metadata": {}}


def session(sid: str, created: int, pi: str | None, amount: int, mode: str = "payment", status: str = "complete",
            cus: str | None = None) -> dict[str, Any]:
    return {"id": sid, "object": "checkout.session", "created": created, "mode": mode, "status": status,
            "payment_status": "paid" if status == "complete" else "unpaid", "amount_total": amount, "currency": "usd",
            "payment_intent": pi, "customer": cus, "customer_details": {"email": "buyer@example.com"}}


def intent(pid: str, created: int, amount: int, status: str = "succeeded", currency: str = "usd",
           cus: str | None = None) -> dict[str, Any]:
    return {"id": pid, "object": "payment_intent", "created": created, "amount": amount,
            "amount_received": amount if status == "succeeded" else 0, "currency": currency, "status": status,
            "customer": cus, "latest_charge": None}


def charge(cid: str, created: int, amount: int, pi: str | None, refunded: int = 0, status: str = "succeeded",
           currency: str = "usd") -> dict[str, Any]:
    return {"id": cid, "object": "charge", "created": created, "amount": amount, "amount_captured": amount,
            "amount_refunded": refunded, "captured": status == "succeeded", "paid": status == "succeeded",
            "refunded": refunded == amount, "status": status, "currency": currency, "payment_intent": pi,
            "customer": None}


def refund(rid: str, created: int, ch: str, amount: int, status: str = "succeeded") -> dict[str, Any]:
    return {"id": rid, "object": "refund", "created": created, "amount": amount, "charge": ch, "currency": "usd",
            "status": status, "payment_intent": None, "reason": None}


def stripe_history() -> dict[str, list[dict[str, Any]]]:
    return {
        "customers": [customer("cus_A", T0, "a@example.com"), customer("cus_B", T0 + 10, "b@example.com"),
                      customer("cus_C", T0 + 20, "c@example.com")],
        "checkout/sessions": [
            session("cs_1", T0 + 100, "pi_1", 5000, cus="cus_A"),
            session("cs_2", T0 + 150, None, 900, mode="subscription"),  # counted from invoices, not here
            session("cs_3", T0 + 160, None, 800, status="open"),  # the server filters it out
        ],
        "payment_intents": [
            intent("pi_1", T0 + 101, 5000, cus="cus_A"),  # also stated by cs_1 and ch_1
            intent("pi_2", T0 + 200, 2500, cus="cus_B"),
            intent("pi_3", T0 + 300, 4000, status="requires_payment_method"),
            intent("pi_4", T0 + 400, 1200, currency="jpy"),
        ],
        "charges": [
            charge("ch_1", T0 + 101, 5000, "pi_1"),
            charge("ch_2", T0 + 200, 2500, "pi_2", refunded=1500),
            charge("ch_3", T0 + 500, 700, None, refunded=700, currency="eur"),  # a charge without an intent
            charge("ch_4", T0 + 600, 900, None, status="failed"),
            charge("ch_5", T0 + 400, 1200, "pi_4", currency="jpy"),
        ],
        "refunds": [
            refund("re_1", T0 + 1000, "ch_2", 1000),
            refund("re_2", T0 + 2000, "ch_2", 500),
            refund("re_4", T0 + 2500, "ch_2", 300, status="failed"),
            refund("re_3", T0 + 3000, "ch_3", 700),
        ],
    }


# (id, kind, amount, currency, time, order, customer)
STRIPE_EXPECTED = {
    ("stripe:s1:customer:cus_A:created", Kind.CUSTOMER_CREATED, 0, "", T0 * 1000, None, "cus_A"),
    ("stripe:s1:customer:cus_B:created", Kind.CUSTOMER_CREATED, 0, "", (T0 + 10) * 1000, None, "cus_B"),
    ("stripe:s1:customer:cus_C:created", Kind.CUSTOMER_CREATED, 0, "", (T0 + 20) * 1000, None, "cus_C"),
    # the checkout session comes first and names the intent: its time and customer win
    ("stripe:s1:paid:pi_1", Kind.ORDER_PAID, 5000, "USD", (T0 + 100) * 1000, "pi_1", "cus_A"),
    ("stripe:s1:paid:pi_2", Kind.ORDER_PAID, 2500, "USD", (T0 + 200) * 1000, "pi_2", "cus_B"),
    ("stripe:s1:paid:pi_4", Kind.ORDER_PAID, 1200, "JPY", (T0 + 400) * 1000, "pi_4", None),
    ("stripe:s1:paid:ch_3", Kind.ORDER_PAID, 700, "EUR", (T0 + 500) * 1000, "ch_3", None),
    # two partial refunds of ch_2, each at its own time with the running total its webhook carried
    ("stripe:s1:refunded:ch_2:1000", Kind.ORDER_REFUNDED, 1000, "USD", (T0 + 1000) * 1000, "pi_2", None),
    ("stripe:s1:refunded:ch_2:1500", Kind.ORDER_REFUNDED, 1500, "USD", (T0 + 2000) * 1000, "pi_2", None),
    ("stripe:s1:refunded:ch_3:700", Kind.ORDER_REFUNDED, 700, "EUR", (T0 + 3000) * 1000, "ch_3", None),
}


def config_toml(stripe_url: str = "http://127.0.0.1:1", woo_url: str = "http://127.0.0.1:1") -> str:
    return f"""
[orgs.acme]
timezone = "Europe/Berlin"
currency = "USD"
token = "acme-token-0123456789"

[orgs.acme.stores.s1]
provider = "stripe"
secret = "whsec_sync_test"
api_key = "{STRIPE_KEY}"
api_url = "{stripe_url}"

[orgs.acme.stores.w1]
provider = "woocommerce"
secret = "woo_webhook_secret"
api_key = "{WOO_KEY}"
api_secret = "{WOO_SECRET}"
api_url = "{woo_url}"
"""


def store(sid: str, url: str) -> Store:
    s = parse_config(config_toml(url, url), {}).store(sid)
    assert s is not None
    return s


def logged(data_dir: Path) -> list[Event]:
    reader = SqliteLogReader(data_dir / "log.sqlite3")
    try:
        return [event_from_json(body) for p in range(reader.partitions) for _, body in reader.read(p, None, 100_000)]
    finally:
        reader.close()


def summary(events: list[Event]) -> set[tuple[Any, ...]]:
    return {(e.id, e.kind, e.amount, e.currency, e.time, e.order, e.customer) for e in events}


class Sleeps(list[float]):
    async def __call__(self, seconds: float) -> None:
        self.append(seconds)


def sync_into(data_dir: Path, st: Store, resources: list[Any], sleeps: Sleeps | None = None,
              log_wrapper: Callable[[SqliteEventLog], Any] | None = None, **kw: Any) -> dict[str, Any]:
    data_dir.mkdir(parents=True, exist_ok=True)
    stats = SqliteConnectionStats(data_dir / "connections.sqlite3")

    async def go() -> dict[str, Any]:
        log = SqliteEventLog(data_dir / "log.sqlite3")
        try:
            target = log_wrapper(log) if log_wrapper else log
            return await run_sync(st, st.provider, resources, target, stats, sleep=sleeps if sleeps is not None else Sleeps(),
                                  progress=Progress(io.StringIO()), **kw)
        finally:
            await log.close()

    try:
        return asyncio.run(go())
    finally:
        stats.close()


def load_sync(data_dir: Path, sid: str) -> dict[str, Any] | None:
    stats = SqliteConnectionStats(data_dir / "connections.sqlite3")
    try:
        return stats.load_sync(sid)
    finally:
        stats.close()


@pytest.fixture
def fake_stripe() -> Iterator[tuple[FakeStripe, ServerThread]]:
    fake = FakeStripe(stripe_history())
    with ServerThread(fake.app) as server:
        yield fake, server


# --- pure parts -----------------------------------------------------------------------------------

def test_retry_policy_decisions() -> None:
    policy = RetryPolicy(attempts=5, base=1, cap=4, max_retry_after=60)
    server = FetchFailed("500", retryable=True, status=500)
    assert [policy.delay(server, a) for a in range(1, 6)] == [1, 2, 4, 4, None]  # capped, then bounded
    assert policy.delay(FetchFailed("429", retryable=True, retry_after=7, status=429), 1) == 7
    assert policy.delay(FetchFailed("429", retryable=True, retry_after=7, status=429), 5) is None
    assert policy.delay(FetchFailed("429", retryable=True, retry_after=3600, status=429), 1) is None
    assert policy.delay(FetchFailed("429 without Retry-After", retryable=True, status=429), 2) == 2
    assert policy.delay(FetchFailed("401", retryable=False, status=401), 1) is None


def test_retry_after_forms() -> None:
    assert retry_after_seconds("7", 0) == 7
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470) == 10
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490) == 0  # already past
    assert retry_after_seconds("soon", 0) is None and retry_after_seconds(None, 0) is None


def test_since_is_midnight_in_the_org_zone_or_an_iso_instant() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    assert parse_since("2024-01-31", berlin) == datetime(2024, 1, 30, 23, 0, tzinfo=UTC)
    assert parse_since("2024-07-01T12:00:00+00:00", berlin) == datetime(2024, 7, 1, 12, tzinfo=UTC)
    assert parse_since("2024-07-01T12:00:00", berlin) == datetime(2024, 7, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="--since"):
        parse_since("last tuesday", berlin)


def test_progress_redraws_on_a_terminal_and_writes_sparse_lines_otherwise() -> None:
    from ingest.sync import Page, after_page, start_state

    state = start_state(None, "woocommerce", None, T0)
    state = after_page(state, "orders", Page(50, [], 2, total=200), 0, T0)

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    tty = Tty()
    bar = Progress(tty, clock=lambda: now[0])
    now[0] = 2.0
    bar.update(state, "orders")
    bar.note("orders: retrying")
    bar.update(state, "orders", final=True)
    assert tty.getvalue().startswith("\r\x1b[K" + "orders             [######..................]  25% 50/200")
    assert "25 /s" not in tty.getvalue() and "25/s" in tty.getvalue()
    assert "\norders: retrying\n" in tty.getvalue() and tty.getvalue().endswith("\n")

    plain = io.StringIO()
    lines = Progress(plain, clock=lambda: now[0], every=5)
    for t in (3.0, 4.0, 9.0):
        now[0] = t
        lines.update(state, "orders")
    lines.update(state, "orders", final=True)
    assert len(plain.getvalue().splitlines()) == 3 and "\r" not in plain.getvalue()  # at 3 s, 9 s, and the end


def test_stripe_page_to_events_and_cursor() -> None:
    st = store("s1", "http://127.0.0.1:1")
    spec = next(s for s in sync_stripe.LISTS if s.name == "payment_intents")
    page = sync_stripe.page_from_list(spec, {"object": "list", "has_more": True, "data": [
        intent("pi_9", T0, 100), intent("pi_8", T0 - 1, 100, status="canceled"), {"id": "pi_bad", "created": T0}]}, st)
    assert [e.id for e in page.events] == ["stripe:s1:paid:pi_9"]
    assert page.next_cursor == "pi_bad" and page.fetched == 3 and len(page.skipped) == 1
    assert "currency" in page.skipped[0]
    last = sync_stripe.page_from_list(spec, {"object": "list", "has_more": False, "data": [intent("pi_7", T0, 1)]}, st)
    assert last.next_cursor is None
    assert sync_stripe.list_params(spec, "pi_9", datetime.fromtimestamp(T0, UTC), 10) == {
        "limit": 10, "created": {"gte": T0}, "starting_after": "pi_9"}


def test_stripe_error_classification() -> None:
    import stripe

    st = store("s1", "http://127.0.0.1:1")
    limited = sync_stripe.classify(stripe.RateLimitError("slow down", http_status=429, headers={"Retry-After": "3"}), st, 0)
    assert limited.retryable and limited.retry_after == 3
    assert sync_stripe.classify(stripe.APIError("boom", http_status=502), st, 0).retryable
    assert sync_stripe.classify(stripe.APIConnectionError("refused"), st, 0).retryable
    auth = sync_stripe.classify(stripe.AuthenticationError("Invalid API Key", http_status=401), st, 0)
    assert not auth.retryable and "api_key of store s1" in auth.message
    assert not sync_stripe.classify(stripe.InvalidRequestError("No such object", None, http_status=400), st, 0).retryable


def test_woo_authentication_basic_over_https_oauth_over_http() -> None:
    params = {"page": "1", "per_page": "100"}
    q, headers = sync_woo.authenticate("https://shop.example/wp-json/wc/v3/orders", params, WOO_KEY, WOO_SECRET, T0, "n")
    assert q == params and headers == {"Authorization": "Basic " + base64.b64encode(f"{WOO_KEY}:{WOO_SECRET}".encode()).decode()}
    q, headers = sync_woo.authenticate("http://shop.example/wp-json/wc/v3/orders", params, WOO_KEY, WOO_SECRET, T0, "n")
    assert headers == {} and WOO_SECRET not in str(q)
    assert q["oauth_consumer_key"] == WOO_KEY and q["oauth_timestamp"] == str(T0) and q["oauth_nonce"] == "n"
    assert wc_signature_ok("GET", "http://shop.example/wp-json/wc/v3/orders", q, WOO_SECRET)


def test_woo_page_follows_total_pages_or_full_pages() -> None:
    st = store("w1", "http://127.0.0.1:1")
    spec = next(s for s in sync_woo.LISTS if s.name == "orders")
    body = orjson.dumps([order(101, "processing"), order(102, "pending")])
    page = sync_woo.page_from_response(spec, 1, {"x-wp-totalpages": "3", "x-wp-total": "5"}, body, st, per_page=2)
    assert page.next_cursor == 2 and page.total == 5 and page.fetched == 2
    assert [e.id for e in page.events] == ["woocommerce:w1:order:101:paid", "woocommerce:w1:order:102:placed"]
    assert sync_woo.page_from_response(spec, 3, {"x-wp-totalpages": "3"}, body, st, per_page=2).next_cursor is None
    assert sync_woo.page_from_response(spec, 3, {}, body, st, per_page=2).next_cursor == 4  # no header: full page
    assert sync_woo.page_from_response(spec, 4, {}, b"[]", st, per_page=2).next_cursor is None
    with pytest.raises(FetchFailed, match="not JSON"):
        sync_woo.page_from_response(spec, 1, {}, b"<html>maintenance</html>", st)


def test_woo_error_answers() -> None:
    url = "http://shop/wp-json/wc/v3/orders"
    with pytest.raises(FetchFailed) as e:
        sync_woo.check_response(429, {"retry-after": "4"}, b"", url, 0)
    assert e.value.retryable and e.value.retry_after == 4
    with pytest.raises(FetchFailed) as e:
        sync_woo.check_response(502, {}, b"<html>bad gateway</html>", url, 0)
    assert e.value.retryable and e.value.retry_after is None
    with pytest.raises(FetchFailed) as e:
        sync_woo.check_response(401, {}, b'{"code":"woocommerce_rest_authentication_error","message":"Invalid signature"}', url, 0)
    assert not e.value.retryable and "Invalid signature" in e.value.message and "api_secret" in e.value.message
    with pytest.raises(FetchFailed, match="permalinks"):
        sync_woo.check_response(404, {}, b'{"code":"rest_no_route","message":"No route"}', url, 0)
    with pytest.raises(FetchFailed, match="redirects"):
        sync_woo.check_response(301, {"location": "https://shop/wp-json/wc/v3/orders"}, b"", url, 0)


# --- Stripe over HTTP -----------------------------------------------------------------------------

def test_stripe_sync_appends_exactly_the_canonical_events(tmp_path: Path, fake_stripe: tuple[FakeStripe, ServerThread]) -> None:
    fake, server = fake_stripe
    fake.max_page = 2
    fake.faults = [
        once("checkout/sessions", 1, lambda: stripe_error(429, "rate_limit_error", "Too many requests", retry_after="7")),
        once("charges", 2, lambda: stripe_error(500, "api_error", "Something went wrong on Stripe's end")),
        once("charges", 3, lambda: Response("<html>502 Bad Gateway</html>", status_code=502)),
    ]
    st = store("s1", server.url)
    sleeps = Sleeps()
    state = sync_into(tmp_path, st, sync_stripe.resources(st), sleeps)
    assert state["status"] == "done", state["error"]
    assert summary(logged(tmp_path)) == STRIPE_EXPECTED
    assert sleeps == [7, 1, 2]  # Retry-After honoured; then backoff 1 s, 2 s for the consecutive 5xx
    assert state["done"] == ["customers", "checkout_sessions", "payment_intents", "charges", "refunds"]
    assert state["appended"] == len(STRIPE_EXPECTED) and state["fetched"] == 3 + 2 + 4 + 5 + 4
    assert state["resources"]["charges"] == {"fetched": 5, "events": 4, "appended": 1, "total": None}
    assert load_sync(tmp_path, "s1") == state
    # every list request asks for the most the server gives, and refunds bring their charge and its refunds
    assert all(q["limit"] == "100" for _, q in fake.requests)
    assert all(q["expand"] == ["data.charge.refunds"] for q in fake.of("refunds"))
    assert all(q["status"] == "complete" for q in fake.of("checkout/sessions"))

    # A second run finds nothing new: same facts, same ids, and the log keeps one of each.
    again = sync_into(tmp_path, st, sync_stripe.resources(st))
    assert again["status"] == "done" and again["appended"] == 0 and again["events"] == state["events"]
    assert summary(logged(tmp_path)) == STRIPE_EXPECTED


def test_stripe_since_asks_for_created_gte(tmp_path: Path, fake_stripe: tuple[FakeStripe, ServerThread]) -> None:
    fake, server = fake_stripe
    st = store("s1", server.url)
    since = datetime.fromtimestamp(T0 + 400, UTC)
    state = sync_into(tmp_path, st, sync_stripe.resources(st, since), since=since)
    assert state["status"] == "done" and state["since"] == since.isoformat()
    assert all(q["created[gte]"] == str(T0 + 400) for _, q in fake.requests)
    assert {e.id for e in logged(tmp_path)} == {
        "stripe:s1:paid:pi_4", "stripe:s1:paid:ch_3", "stripe:s1:refunded:ch_2:1000", "stripe:s1:refunded:ch_2:1500",
        "stripe:s1:refunded:ch_3:700"}  # refunds made since then of payments made before it are still found


def test_stripe_gives_up_after_bounded_attempts_and_says_why(tmp_path: Path, fake_stripe: tuple[FakeStripe, ServerThread]) -> None:
    fake, server = fake_stripe
    fake.faults = [lambda p, q, n: stripe_error(503, "api_error", "Stripe is down") if p == "payment_intents" else None]
    st = store("s1", server.url)
    sleeps = Sleeps()
    state = sync_into(tmp_path, st, sync_stripe.resources(st), sleeps, policy=RetryPolicy(attempts=4, base=0.5, cap=1))
    assert state["status"] == "failed"
    assert sleeps == [0.5, 1, 1] and len(fake.of("payment_intents")) == 4
    assert "payment_intents" in state["error"] and "503" in state["error"] and "4 attempts" in state["error"]
    assert "resume" in state["error"]
    assert load_sync(tmp_path, "s1")["status"] == "failed"
    assert state["done"] == ["customers", "checkout_sessions"]


def test_stripe_bad_key_fails_at_once(tmp_path: Path, fake_stripe: tuple[FakeStripe, ServerThread]) -> None:
    _, server = fake_stripe
    st = store("s1", server.url)
    wrong = Store(st.id, st.org, st.provider, st.secret, st.currency, "sk_test_wrong", None, st.api_url)
    sleeps = Sleeps()
    state = sync_into(tmp_path, wrong, sync_stripe.resources(wrong), sleeps)
    assert state["status"] == "failed" and sleeps == []
    assert "401" in state["error"] and "api_key of store s1" in state["error"]


def test_stripe_resumes_from_the_checkpoint_after_a_failure(tmp_path: Path, fake_stripe: tuple[FakeStripe, ServerThread]) -> None:
    fake, server = fake_stripe
    fake.max_page = 2
    st = store("s1", server.url)
    # the key is revoked while the charges are listed: page 2 of charges is refused for good
    fake.faults = [once("charges", 2, lambda: stripe_error(401, "invalid_request_error", "Expired API Key provided"))]
    first = sync_into(tmp_path / "a", st, sync_stripe.resources(st))
    assert first["status"] == "failed" and "401" in first["error"]
    assert first["resource"] == "charges" and first["cursor"] == "ch_3"  # the last id of charges page 1 (ch_4, ch_3)
    assert first["done"] == ["customers", "checkout_sessions", "payment_intents"]
    before = len(fake.requests)

    fake.faults = []
    second = sync_into(tmp_path / "a", st, sync_stripe.resources(st))
    assert second["status"] == "done" and second["runs"] == 2
    rerun = fake.requests[before:]
    assert [p for p, _ in rerun][0] == "charges" and rerun[0][1]["starting_after"] == "ch_3"
    assert {p for p, _ in rerun} == {"charges", "refunds"}  # no resource before the checkpoint again
    assert not any(p == "charges" and "starting_after" not in q for p, q in rerun)  # nor charges page 1

    whole = sync_into(tmp_path / "b", st, sync_stripe.resources(st))
    assert whole["status"] == "done"
    assert sorted(e.to_json() for e in logged(tmp_path / "a")) == sorted(e.to_json() for e in logged(tmp_path / "b"))
    assert summary(logged(tmp_path / "a")) == STRIPE_EXPECTED
    assert second["fetched"] == whole["fetched"] and second["appended"] == whole["appended"]


def test_stripe_resumes_after_a_crash_between_pages(tmp_path: Path, fake_stripe: tuple[FakeStripe, ServerThread]) -> None:
    fake, server = fake_stripe
    fake.max_page = 2
    st = store("s1", server.url)

    class CrashingLog:
        """The real log, until the process dies on the 6th append (before it happens)."""

        def __init__(self, log: SqliteEventLog) -> None:
            self.log, self.partitions, self.calls = log, log.partitions, 0

        async def append(self, events: list[Event]) -> list[bool]:
            self.calls += 1
            if self.calls == 6:
                raise RuntimeError("power cut")
            return await self.log.append(events)

    with pytest.raises(RuntimeError, match="power cut"):
        sync_into(tmp_path, st, sync_stripe.resources(st), log_wrapper=CrashingLog)
    saved = load_sync(tmp_path, "s1")
    assert saved["status"] == "failed" and "power cut" in saved["error"]
    # customers 2 pages, checkout sessions 1, payment intents 2: the 6th page (charges page 1) was lost
    assert saved["resource"] == "charges" and saved["cursor"] is None
    assert saved["done"] == ["customers", "checkout_sessions", "payment_intents"]
    before = len(fake.requests)
    state = sync_into(tmp_path, st, sync_stripe.resources(st))
    assert state["status"] == "done"
    rerun = fake.requests[before:]
    assert rerun[0] == ("charges", rerun[0][1]) and "starting_after" not in rerun[0][1]
    assert {p for p, _ in rerun} == {"charges", "refunds"}
    assert summary(logged(tmp_path)) == STRIPE_EXPECTED


def test_a_webhook_and_the_sync_of_one_payment_make_one_event(tmp_path: Path, fake_stripe: tuple[FakeStripe, ServerThread]) -> None:
    """The real ingest app and the sync append to one real log; whichever comes first, pi_2 is paid once."""
    _, server = fake_stripe
    config = parse_config(config_toml(server.url), {})
    st = config.store("s1")
    assert st is not None
    payload = {"id": "evt_pi2", "object": "event", "type": "payment_intent.succeeded", "created": T0 + 205,
               "data": {"object": intent("pi_2", T0 + 200, 2500, cus="cus_B")}}
    body = orjson.dumps(payload)
    stats = SqliteConnectionStats(tmp_path / "connections.sqlite3")

    async def scenario() -> tuple[list[dict[str, Any]], dict[str, Any]]:
        log = SqliteEventLog(tmp_path / "log.sqlite3")
        monitor = ConnectionMonitor(stats)
        ingest = Ingest(config, log, SqliteRejectedStore(tmp_path / "rejected.sqlite3"), monitor, clock=lambda: T0 + 206)
        app = build_app(ingest_routes(ingest))
        answers = []
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client:
            async def post() -> None:
                r = await client.post("/webhooks/stripe/s1", content=body, headers={
                    "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, st.secret, T0 + 205)})
                assert r.status_code == 200, r.text
                answers.append(r.json())

            await post()  # the webhook first ...
            state = await run_sync(st, "stripe", sync_stripe.resources(st), log, stats, sleep=Sleeps(),
                                   progress=Progress(io.StringIO()))
            await post()  # ... and a redelivery after the sync
        await monitor.stop()
        await log.close()
        return answers, state

    answers, state = asyncio.run(scenario())
    stats.close()
    assert [a["status"] for a in answers] == ["accepted", "duplicate"]
    assert state["status"] == "done"
    events = logged(tmp_path)
    paid_pi2 = [e for e in events if e.id == "stripe:s1:paid:pi_2"]
    assert len(paid_pi2) == 1 and paid_pi2[0].time == (T0 + 205) * 1000  # the webhook's, kept
    assert {e.id for e in events} == {x[0] for x in STRIPE_EXPECTED}
    assert state["appended"] == len(STRIPE_EXPECTED) - 1
    # the payment intent, the charge of pi_2 and the webhook state one fact: the log holds it once
    assert state["resources"]["payment_intents"]["appended"] == 1  # pi_4 only (pi_1 came with cs_1)


# --- WooCommerce over HTTP ------------------------------------------------------------------------

def _rawurlencode(s: str) -> str:
    return quote(s, safe="-_.~")  # PHP's rawurlencode


def wc_signature_ok(method: str, url: str, params: dict[str, str], secret: str) -> bool:
    """WC_REST_Authentication::check_oauth_signature, line by line."""
    params = dict(params)
    consumer_signature = params.pop("oauth_signature")
    ordered = sorted(params.items(), key=lambda kv: kv[0].encode())  # uksort($params, 'strcmp')
    normalized = [(_rawurlencode(k), _rawurlencode(v)) for k, v in ordered]  # normalize_parameters
    joined = [_rawurlencode(f"{k}={v}") for k, v in normalized]  # join_with_equals_sign
    string_to_sign = f"{method}&{_rawurlencode(url)}&{'%26'.join(joined)}"
    algo = params["oauth_signature_method"]
    if algo not in ("HMAC-SHA1", "HMAC-SHA256"):
        return False
    digest = hmac.new(f"{secret}&".encode(), string_to_sign.encode(), algo[5:].lower()).digest()
    return hmac.compare_digest(base64.b64encode(digest).decode(), consumer_signature)


def woo_error(status: int, code: str, message: str, retry_after: str | None = None) -> Response:
    headers = {"Retry-After": retry_after} if retry_after else {}
    return JSONResponse({"code": code, "message": message, "data": {"status": status}}, status_code=status, headers=headers)


class FakeWoo(Recorder):
    """GET /wp-json/wc/v3/{orders,customers}: page/per_page, orderby id|date, order, after + dates_are_gmt,
    X-WP-Total and X-WP-TotalPages; OAuth 1.0a over http with the 15-minute window and one-time nonces."""

    def __init__(self, orders: list[dict[str, Any]], customers: list[dict[str, Any]]) -> None:
        super().__init__()
        self.data = {"orders": orders, "customers": customers}
        self.nonces: set[str] = set()
        self.app = Starlette(routes=[Route("/wp-json/wc/v3/{resource}", self.handle, methods=["GET"])])

    async def handle(self, request: Request) -> Response:
        resource = request.path_params["resource"]
        params = dict(request.query_params)
        if "oauth_signature" not in params:
            return woo_error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        url = f"{request.url.scheme}://{request.url.netloc}{request.url.path}"
        if params.get("oauth_consumer_key") != WOO_KEY:
            return woo_error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid.")
        if not wc_signature_ok("GET", url, params, WOO_SECRET):
            return woo_error(401, "woocommerce_rest_authentication_error", "Invalid signature - provided signature does not match.")
        if abs(int(params["oauth_timestamp"]) - time.time()) > 15 * 60:
            return woo_error(401, "woocommerce_rest_authentication_error", "Invalid timestamp.")
        if params["oauth_nonce"] in self.nonces:
            return woo_error(401, "woocommerce_rest_authentication_error", "Invalid nonce - nonce has already been used.")
        self.nonces.add(params["oauth_nonce"])
        fault = self.record(resource, params)
        if fault is not None:
            return fault
        if resource not in self.data:
            return woo_error(404, "rest_no_route", "No route was found matching the URL and request method.")
        objs = list(self.data[resource])
        if "after" in params:
            assert params.get("dates_are_gmt") == "true"
            objs = [o for o in objs if o["date_created_gmt"] > params["after"]]
        key = "id" if params.get("orderby") == "id" else "date_created_gmt"
        objs.sort(key=lambda o: o[key], reverse=params.get("order") == "desc")
        per_page, page = int(params.get("per_page", 10)), int(params.get("page", 1))
        total_pages = -(-len(objs) // per_page)
        if page > max(total_pages, 1):
            return woo_error(400, "rest_post_invalid_page_number", "The page number requested is larger than the number of pages available.")
        chunk = objs[(page - 1) * per_page: page * per_page]
        return Response(orjson.dumps(chunk), media_type="application/json",
                        headers={"X-WP-Total": str(len(objs)), "X-WP-TotalPages": str(total_pages)})


def order(oid: int, status: str, total: str = "29.35", created: str = "2024-03-01T10:00:00", paid: str | None = None,
          refunds: list[dict[str, Any]] | None = None, customer_id: int = 0) -> dict[str, Any]:
    return {
        "id": oid, "parent_id": 0, "status": status, "currency": "EUR", "total": total, "customer_id": customer_id,
        "date_created_gmt": created, "date_modified_gmt": created, "date_paid_gmt": paid,
        "billing": {"email": f"guest{oid}@example.com", "country": "DE"},
        "line_items": [{"id": oid * 10, "name": "T-Shirt", "product_id": 93, "variation_id": 0, "quantity": 1,
                        "subtotal": total, "total": total, "price": float(total)}],
        "refunds": refunds or [],
    }


def woo_customer(cid: int, created: str) -> dict[str, Any]:
    return {"id": cid, "date_created_gmt": created, "date_modified_gmt": created, "email": f"c{cid}@example.com",
            "first_name": "C", "last_name": str(cid), "role": "customer", "username": f"c{cid}",
            "billing": {"country": "DE"}, "is_paying_customer": False}


def woo_history() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    orders = [
        order(101, "completed", "50.00", "2024-01-05T09:00:00", paid="2024-01-05T09:01:00",
              refunds=[{"id": 201, "reason": "damaged", "total": "-5.00"}], customer_id=25),
        order(102, "pending", "12.00", "2024-02-10T12:00:00"),
        order(103, "processing", "8.50", "2024-03-15T18:30:00", paid="2024-03-15T18:31:00"),
        order(104, "cancelled", "99.99", "2024-04-01T08:00:00"),
        order(105, "checkout-draft", "5.00", "2024-04-02T08:00:00"),
    ]
    customers = [woo_customer(25, "2023-12-30T10:00:00"), woo_customer(26, "2024-03-10T10:00:00"),
                 woo_customer(27, "2024-04-11T10:00:00")]
    return orders, customers


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


WOO_EXPECTED = {
    ("woocommerce:w1:customer:25:created", Kind.CUSTOMER_CREATED, 0, "", ms("2023-12-30T10:00:00"), None, "25"),
    ("woocommerce:w1:customer:26:created", Kind.CUSTOMER_CREATED, 0, "", ms("2024-03-10T10:00:00"), None, "26"),
    ("woocommerce:w1:customer:27:created", Kind.CUSTOMER_CREATED, 0, "", ms("2024-04-11T10:00:00"), None, "27"),
    ("woocommerce:w1:order:101:paid", Kind.ORDER_PAID, 5000, "EUR", ms("2024-01-05T09:01:00"), "101", "25"),
    ("woocommerce:w1:refund:201", Kind.ORDER_REFUNDED, 500, "EUR", ms("2024-01-05T09:00:00"), "101", "25"),
    ("woocommerce:w1:order:102:placed", Kind.ORDER_PLACED, 1200, "EUR", ms("2024-02-10T12:00:00"), "102", "guest102@example.com"),
    ("woocommerce:w1:order:103:paid", Kind.ORDER_PAID, 850, "EUR", ms("2024-03-15T18:31:00"), "103", "guest103@example.com"),
    ("woocommerce:w1:order:104:cancelled", Kind.ORDER_CANCELLED, 9999, "EUR", ms("2024-04-01T08:00:00"), "104", "guest104@example.com"),
}


@pytest.fixture
def fake_woo() -> Iterator[tuple[FakeWoo, ServerThread]]:
    fake = FakeWoo(*woo_history())
    with ServerThread(fake.app) as server:
        yield fake, server


def test_woo_sync_appends_exactly_the_canonical_events(tmp_path: Path, fake_woo: tuple[FakeWoo, ServerThread]) -> None:
    fake, server = fake_woo
    fake.faults = [
        once("customers", 1, lambda: Response("upstream timed out", status_code=504)),
        once("orders", 2, lambda: woo_error(429, "too_many_requests", "Slow down", retry_after="2")),
    ]
    st = store("w1", server.url)
    sleeps = Sleeps()
    with sync_woo.client() as http:
        state = sync_into(tmp_path, st, sync_woo.resources(st, http, per_page=2), sleeps)
    assert state["status"] == "done", state["error"]
    assert summary(logged(tmp_path)) == WOO_EXPECTED
    assert sleeps == [1, 2]
    assert [q["page"] for q in fake.of("orders")] == ["1", "2", "2", "3"]  # page 2 again after the 429 only
    assert all(q["orderby"] == "id" and q["order"] == "asc" and q["per_page"] == "2" for _, q in fake.requests)
    assert state["resources"]["orders"] == {"fetched": 5, "events": 5, "appended": 5, "total": 5}
    assert state["resources"]["customers"]["total"] == 3


def test_woo_resumes_from_the_checkpoint_page(tmp_path: Path, fake_woo: tuple[FakeWoo, ServerThread]) -> None:
    fake, server = fake_woo
    st = store("w1", server.url)
    fake.faults = [once("orders", 2, lambda: woo_error(401, "woocommerce_rest_authentication_error", "Consumer key is invalid."))]
    with sync_woo.client() as http:
        first = sync_into(tmp_path / "a", st, sync_woo.resources(st, http, per_page=2))
        assert first["status"] == "failed" and "Consumer key is invalid" in first["error"]
        assert (first["resource"], first["cursor"], first["done"]) == ("orders", 2, ["customers"])
        before = len(fake.requests)
        fake.faults = []
        second = sync_into(tmp_path / "a", st, sync_woo.resources(st, http, per_page=2))
        assert second["status"] == "done"
        assert [(p, q["page"]) for p, q in fake.requests[before:]] == [("orders", "2"), ("orders", "3")]
        whole = sync_into(tmp_path / "b", st, sync_woo.resources(st, http, per_page=2))
    assert whole["status"] == "done"
    assert sorted(e.to_json() for e in logged(tmp_path / "a")) == sorted(e.to_json() for e in logged(tmp_path / "b"))
    assert summary(logged(tmp_path / "a")) == WOO_EXPECTED


def test_woo_since_filters_orders_on_the_server_and_customers_here(tmp_path: Path, fake_woo: tuple[FakeWoo, ServerThread]) -> None:
    fake, server = fake_woo
    st = store("w1", server.url)
    since = datetime(2024, 3, 10, 10, 0, tzinfo=UTC)
    with sync_woo.client() as http:
        state = sync_into(tmp_path, st, sync_woo.resources(st, http, since), since=since)
    assert state["status"] == "done"
    assert all(q["after"] == "2024-03-10T09:59:59" for q in fake.of("orders"))
    assert {e.id for e in logged(tmp_path)} == {
        "woocommerce:w1:customer:26:created", "woocommerce:w1:customer:27:created",
        "woocommerce:w1:order:103:paid", "woocommerce:w1:order:104:cancelled"}


def test_a_woo_webhook_and_the_sync_of_one_order_make_one_event(tmp_path: Path, fake_woo: tuple[FakeWoo, ServerThread]) -> None:
    _, server = fake_woo
    config = parse_config(config_toml(woo_url=server.url), {})
    st = config.store("w1")
    assert st is not None
    body = orjson.dumps(order(103, "processing", "8.50", "2024-03-15T18:30:00", paid="2024-03-15T18:31:00"))
    signature = base64.b64encode(hmac.new(st.secret.encode(), body, sha256).digest()).decode()
    stats = SqliteConnectionStats(tmp_path / "connections.sqlite3")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        log = SqliteEventLog(tmp_path / "log.sqlite3")
        monitor = ConnectionMonitor(stats)
        ingest = Ingest(config, log, SqliteRejectedStore(tmp_path / "rejected.sqlite3"), monitor)
        with sync_woo.client() as http:
            state = await run_sync(st, "woocommerce", sync_woo.resources(st, http), log, stats, sleep=Sleeps(),
                                   progress=Progress(io.StringIO()))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=build_app(ingest_routes(ingest))),
                                     base_url="http://ingest") as client:
            r = await client.post("/webhooks/woocommerce/w1", content=body, headers={
                "Content-Type": "application/json", "X-WC-Webhook-Topic": "order.updated",
                "X-WC-Webhook-Signature": signature, "X-WC-Webhook-Delivery-ID": "d1"})
        assert r.status_code == 200, r.text
        await monitor.stop()
        await log.close()
        return r.json(), state

    answer, state = asyncio.run(scenario())
    stats.close()
    assert state["status"] == "done" and answer["status"] == "duplicate"  # the sync had it already
    assert summary(logged(tmp_path)) == WOO_EXPECTED


# --- through the command line ---------------------------------------------------------------------

def _cli(args: list[str]) -> list[str]:
    return [*STOREPULSE, "sync", *args]


def test_cli_sync_prints_a_summary_and_saves_the_state(tmp_path: Path, fake_stripe: tuple[FakeStripe, ServerThread]) -> None:
    fake, server = fake_stripe
    fake.faults = [once("charges", 1, lambda: stripe_error(429, "rate_limit_error", "Too many requests", retry_after="1"))]
    cfg = tmp_path / "storepulse.toml"
    cfg.write_text(config_toml(server.url))
    data = tmp_path / "data"
    proc = subprocess.run(_cli(["stripe", "--store", "s1", "--config", str(cfg), "--data-dir", str(data)]),
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sync stripe s1: done" in proc.stdout
    assert f"{len(STRIPE_EXPECTED)} new" in proc.stdout.splitlines()[-1]
    assert "charges: Stripe rate limit (429)" in proc.stderr and "retrying in 1 s" in proc.stderr
    assert "refunds" in proc.stderr  # the progress lines
    state = load_sync(data, "s1")
    assert state is not None and state["status"] == "done" and state["appended"] == len(STRIPE_EXPECTED)
    assert summary(logged(data)) == STRIPE_EXPECTED

    wrong = subprocess.run(_cli(["woocommerce", "--store", "s1", "--config", str(cfg), "--data-dir", str(data)]),
                           cwd=REPO, capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 2 and "is a stripe connection" in wrong.stderr


def test_cli_sync_skips_what_is_out_of_range_says_so_and_goes_on(tmp_path: Path) -> None:
    """Objects outside core.limits are skipped and counted, never appended, and the sync finishes: a
    negative payment and one no figure can hold (refused by the Stripe normaliser), and an old-shape
    checkout of 2,000,000 units of a line (refused by the check every path's events pass)."""
    history = stripe_history()
    history["payment_intents"] += [intent("pi_neg", T0 + 450, -500000), intent("pi_huge", T0 + 460, 2**63 - 1)]
    history["checkout/sessions"].append({**session("cs_bulk", T0 + 470, "pi_bulk", 0), "amount_total": None,
                                         "display_items": [{"amount": 100, "currency": "usd", "quantity": 2_000_000,
                                                            "custom": {"name": "x"}}]})
    with ServerThread(FakeStripe(history).app) as server:
        cfg = tmp_path / "storepulse.toml"
        cfg.write_text(config_toml(server.url))
        data = tmp_path / "data"
        proc = subprocess.run(_cli(["stripe", "--store", "s1", "--config", str(cfg), "--data-dir", str(data)]),
                              cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sync stripe s1: done" in proc.stdout
    assert ("  skipped 3 object(s) that could not be read or are out of range (docs/operations.md, Limits), none "
            "appended; last: pi_neg: payment_intent.amount must not be negative (a refund is a refund event), "
            "got -500000") in proc.stdout
    assert ("checkout_sessions: skipped: out of range: stripe:s1:paid:pi_bulk: items[0].qty must be an integer from 0 "
            "to 1000000, got 2000000") in proc.stderr
    assert ("payment_intents: skipped: pi_huge: payment_intent.amount_received is over the largest amount storepulse "
            "takes (1000000000000 minor units), got 9223372036854775807") in proc.stderr
    state = load_sync(data, "s1")
    assert state is not None and (state["status"], state["skipped"]) == ("done", 3)
    assert summary(logged(data)) == STRIPE_EXPECTED


def test_cli_sync_killed_mid_way_resumes_where_it_stopped(tmp_path: Path, fake_stripe: tuple[FakeStripe, ServerThread]) -> None:
    fake, server = fake_stripe
    fake.max_page = 2
    fake.hang = threading.Event()  # the request for charges page 2 never gets an answer
    cfg = tmp_path / "storepulse.toml"
    cfg.write_text(config_toml(server.url))
    data = tmp_path / "data"
    cmd = _cli(["stripe", "--store", "s1", "--config", str(cfg), "--data-dir", str(data)])
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert fake.hang.wait(60), "the sync never reached charges page 2"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # kill -9: nothing gets to clean up
        proc.wait(10)
    saved = load_sync(data, "s1")
    assert saved is not None and saved["status"] == "running"  # as the crash left it
    assert (saved["resource"], saved["cursor"]) == ("charges", "ch_3")
    before = len(fake.requests)
    fake.hang = None
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resumed (run 2)" in done.stdout
    rerun = fake.requests[before:]
    assert rerun[0][0] == "charges" and rerun[0][1]["starting_after"] == "ch_3"
    assert {p for p, _ in rerun} == {"charges", "refunds"}
    assert summary(logged(data)) == STRIPE_EXPECTED
    assert load_sync(data, "s1")["status"] == "done"
