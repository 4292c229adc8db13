"""Segments through the real path: `storepulse up` (embedded SQLite, and on a real redis-server), a
segment defined over HTTP (a control event through the log), events through the events API, entries
and exits on a real WebSocket client and in the read API (docs/segments.md)."""

from __future__ import annotations

import csv
import io
import time
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from core.clock import local_day, ms_from_iso
from tests.helpers import ORGS_TOML, SECRETS, TOKENS, RedisServer, Storepulse, free_port, recv_json, wait_for, wait_json

# The demo organisation with a lateness of 5 s, so a window's end is decided seconds after it passes.
CONFIG = ORGS_TOML.replace('token = "acme-token-0123456789"\n',
                           'token = "acme-token-0123456789"\nallowed_lateness = "5s"\nproduct_segments = true\n', 1)


def segments_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, label: str) -> Storepulse:
    """`storepulse up` with CONFIG, embedded or (request.param "redis") on a real redis-server, started."""
    redis_url = None
    if request.param == "redis":
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        request.addfinalizer(server.stop)
        redis_url = server.url
    return Storepulse(tmp_path_factory.mktemp(f"{label}-{request.param}"), redis_url, CONFIG).start()


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def sp(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    running = segments_server(request, tmp_path_factory, "seg")
    yield running
    running.ensure_stopped()


def uid() -> str:
    return uuid.uuid4().hex[:10]


def call(sp: Storepulse, method: str, path: str, body: object = None, org: str = "acme") -> httpx.Response:
    return httpx.request(method, f"{sp.base}/api/v1/orgs/{org}{path}", content=None if body is None else orjson.dumps(body),
                         headers={"Authorization": f"Bearer {TOKENS[org]}"}, timeout=10)


def define(sp: Storepulse, segment: str, rule: dict[str, Any]) -> None:
    r = call(sp, "PUT", f"/segments/{segment}", {"name": segment.upper(), "rule": rule})
    assert r.status_code == 202, r.text
    wait_for(lambda: any(s["id"] == segment for s in call(sp, "GET", "/segments").json()["segments"]), 15,
             f"segment {segment} to be defined")


def paid(sp: Storepulse, customer: str, amount: str, t_ms: int, currency: str = "EUR") -> str:
    order = uid()
    r = sp.post_events({"type": "order_paid", "id": order, "order": order, "customer": customer, "amount": amount,
                        "currency": currency, "time": t_ms,
                        "items": [{"product": "mug", "qty": 1, "unit_price": amount, "category": "kitchen"}]},
                       key=SECRETS["acme-site"])
    assert r.status_code in (200, 202), r.text
    return f"events:acme-site:{order}"


def segment_message(ws: ClientConnection, segment: str, customer: str, timeout: float) -> tuple[dict[str, Any], float]:
    """The first segment message for (segment, customer), and when it arrived (time.monotonic)."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"no segment message for {segment}/{customer} within {timeout} s"
        msg = recv_json(ws, left)
        if msg.get("type") == "segment" and msg["segment"] == segment and msg["customer"] == customer:
            return msg, time.monotonic()


def no_segment_messages(ws: ClientConnection, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = recv_json(ws, left)
        except (TimeoutError, ConnectionClosed):
            return
        assert msg.get("type") != "segment", msg


@pytest.mark.alone  # a latency bound: run with the machine to itself (Makefile)
def test_a_customer_over_the_threshold_is_a_member_on_the_websocket_within_a_second(sp: Storepulse) -> None:
    segment, customer = f"big_{uid()}", f"c-{uid()}"
    define(sp, segment, {"spent": {"gte": "100.00"}})
    with sp.ws(TOKENS["acme"]) as ws, sp.ws(TOKENS["tokyo"]) as other:
        assert recv_json(ws)["type"] == "snapshot" and recv_json(other)["type"] == "snapshot"
        now = int(time.time() * 1000)
        paid(sp, customer, "60.00", now - 2000)  # not yet
        posted = time.monotonic()
        cause = paid(sp, customer, "50.00", now - 1000)  # this one crosses
        msg, arrived = segment_message(ws, segment, customer, 10)
        assert arrived - posted < 1.0, f"the entry took {arrived - posted:.2f} s"
        assert msg["change"] == "entered" and msg["cause"] == cause and ms_from_iso(msg["at"]) == now - 1000
        assert isinstance(msg["version"], int)
        no_segment_messages(other, 0.5)  # another organisation sees nothing
    listed = {s["id"]: s for s in call(sp, "GET", "/segments").json()["segments"]}
    assert listed[segment]["members"] == 1 and listed[segment]["rule"] == {"spent": {"gte": "100.00"}}
    assert listed["repeat_buyers"]["predefined"] is True and listed[segment]["predefined"] is False
    assert listed["best_sellers"]["subject"] == "product" and listed[segment]["subject"] == "customer"
    members = call(sp, "GET", f"/segments/{segment}/members").json()["members"]
    assert [(m["customer"], m["orders"], m["spent"]) for m in members] == [(customer, 2, {"amount": 11000, "currency": "EUR"})]
    assert ms_from_iso(members[0]["entered_at"]) == now - 1000
    exported = call(sp, "GET", f"/segments/{segment}/members?format=csv")
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert [(r["customer"], r["spent"], r["currency"]) for r in rows] == [(customer, "110.00", "EUR")]
    history = call(sp, "GET", f"/segments/{segment}/changes?customer={customer}").json()["changes"]
    assert [(c["change"], c["cause"]) for c in history] == [("entered", cause)]
    listed_customers = call(sp, "GET", f"/customers?period=all&segment={segment}").json()
    assert [c["customer"] for c in listed_customers["customers"]] == [customer] and listed_customers["total"] == 1
    orders = call(sp, "GET", f"/orders?period=all&segment={segment}&limit=100").json()["orders"]
    assert sorted(o["customer"] for o in orders) == [customer, customer]
    assert call(sp, "GET", "/customers?period=all&segment=nowhere").status_code == 404
    preview = call(sp, "POST", "/segments/preview", {"rule": {"spent": {"gte": "100.00"}}}).json()
    assert customer in preview["first"] or preview["members"] > 20


def test_orders_in_another_currency_count_converted_at_their_days_rate(sp: Storepulse) -> None:
    # the test config's rates file: the latest USD rate is 1.05 per euro, the rate of every day since
    segment, over, under = f"usd_{uid()}", f"c-{uid()}", f"c-{uid()}"
    define(sp, segment, {"spent": {"gte": "100.00"}})
    now = int(time.time() * 1000)
    paid(sp, over, "110.00", now - 2000, "USD")  # 104.76 EUR
    paid(sp, under, "100.00", now - 1000, "USD")  # 95.24 EUR
    wait_for(lambda: call(sp, "GET", f"/segments/{segment}/changes?customer={under}").status_code == 200
             and over in {m["customer"] for m in call(sp, "GET", f"/segments/{segment}/members").json()["members"]},
             15, f"{over} to enter {segment}")
    members = call(sp, "GET", f"/segments/{segment}/members?limit=1000").json()["members"]
    mine = [(m["customer"], m["spent"]) for m in members if m["customer"] in (over, under)]  # others' tests' too
    assert mine == [(over, {"amount": 10476, "currency": "EUR"})]
    r = call(sp, "POST", "/segments/preview", {"rule": {"spent": {"gte": "100.00"}}})
    found = r.json()
    assert (over in found["first"] or found["members"] > 20) and under not in found["first"], r.text


@pytest.mark.alone  # a latency bound: run with the machine to itself (Makefile)
def test_a_window_lets_the_customer_go_within_a_second_of_the_watermark_passing_its_end(sp: Storepulse) -> None:
    segment, customer = f"w2m_{uid()}", f"c-{uid()}"
    define(sp, segment, {"spent": {"gte": "100.00", "within": "2m"}})
    with sp.ws(TOKENS["acme"]) as ws:
        assert recv_json(ws)["type"] == "snapshot"
        # the window ends 4-5 s from now, on a whole UTC second: the watermark moves on whole seconds
        # (flows/organisation.py's grid), so it passes an end between two of them only at the next one, up to
        # 1 s after the wall clock does; on one, the two coincide and what is measured is the dataflow's own delay
        t = (int(time.time() * 1000) - 2 * 60_000 + 5000) // 1000 * 1000
        cause = paid(sp, customer, "120.00", t)
        entered, _ = segment_message(ws, segment, customer, 10)
        assert (entered["change"], entered["cause"], ms_from_iso(entered["at"])) == ("entered", cause, t)
        exited, arrived = segment_message(ws, segment, customer, 30)
        # the watermark is the wall clock minus the 5 s lateness: it passes the window's end then
        passes = (t + 2 * 60_000 + 5000) / 1000
        assert (exited["change"], exited["cause"], ms_from_iso(exited["at"])) == ("exited", "time", t + 2 * 60_000)
        late = time.time() - (time.monotonic() - arrived) - passes  # its arrival on the wall clock, after that
        assert late < 1.0, f"the exit came {late:.2f} s after the watermark passed the window's end"
        assert exited["version"] > entered["version"]
    history = call(sp, "GET", f"/segments/{segment}/changes?customer={customer}").json()["changes"]
    assert [(c["change"], c["cause"]) for c in history] == [("entered", cause), ("exited", "time")]
    members = call(sp, "GET", f"/segments/{segment}/members?limit=1000").json()["members"]
    assert customer not in {m["customer"] for m in members}


def test_a_rule_that_does_not_parse_gets_a_400_naming_its_json_path(sp: Storepulse) -> None:
    r = call(sp, "PUT", "/segments/bad", {"name": "Bad", "rule": {"all": [{"orders": {"gte": 1}}, {"spent": {"gte": "lots"}}]}})
    assert r.status_code == 400 and r.json()["error"].startswith("$.rule.all[1].spent.gte"), r.text
    r = call(sp, "PUT", "/segments/bad", {"name": "Bad", "rule": {"in_segment": {"eq": "nowhere"}}})
    assert r.status_code == 400 and "nowhere" in r.json()["error"], r.text
    r = call(sp, "PUT", "/segments/best_sellers", {"name": "Mine", "rule": {"orders": {"gte": 1}}})
    assert r.status_code == 400 and "product segment" in r.json()["error"], r.text
    r = call(sp, "PUT", "/segments/no%20spaces", {"name": "Bad", "rule": {"orders": {"gte": 1}}})
    assert r.status_code == 400, r.text
    assert call(sp, "GET", "/segments/nowhere/members").status_code == 404
    r = call(sp, "POST", "/segments/preview", {"rule": {"email_engaged": {"gte": 1, "within": "30d"}}})
    assert r.status_code == 400 and "PUT" in r.json()["error"], r.text


def test_a_deleted_segment_is_gone_and_its_members_with_it(sp: Storepulse) -> None:
    segment, customer = f"del_{uid()}", f"c-{uid()}"
    paid(sp, customer, "10.00", int(time.time() * 1000) - 1000)
    define(sp, segment, {"orders": {"gte": 1}})  # defined after the data: its members at once, cause "defined"
    wait_for(lambda: any(m["customer"] == customer for m in call(sp, "GET", f"/segments/{segment}/members?limit=1000")
                         .json()["members"]), 15, "the member defined from the existing data")
    history = call(sp, "GET", f"/segments/{segment}/changes?customer={customer}").json()["changes"]
    assert [(c["change"], c["cause"]) for c in history] == [("entered", "defined")]
    assert call(sp, "DELETE", f"/segments/{segment}").status_code == 202
    wait_for(lambda: all(s["id"] != segment for s in call(sp, "GET", "/segments").json()["segments"]), 15,
             "the segment to be deleted")
    assert call(sp, "GET", f"/segments/{segment}/members").status_code == 404


def test_kill_9_during_the_stream_stores_every_change_once_and_the_right_members(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Five kill -9 of `storepulse up` (dataflow included) while orders stream in: after the restarts the
    members and the whole history equal an independent simulation, each change stored once (its key
    is what it is: a replay after the crash writes the same keys again)."""
    sp = Storepulse(tmp_path_factory.mktemp("seg-kill"), None, CONFIG)
    sp.extra_args = ["--flows-metrics-port", str(flows_port := free_port())]
    sp.start()
    try:
        define(sp, "three", {"orders": {"gte": 3}})
        define(sp, "hundred", {"spent": {"gte": "100.00"}})
        start = int(time.time() * 1000) + 60_000  # ahead of the watermark all along: every event in order
        orders: list[tuple[str, int, int, str]] = []  # (customer, time, pence, cause)
        for round_ in range(6):
            batch = []
            for i in range(40):
                n = round_ * 40 + i
                customer, t, pence = f"k{n % 13}", start + n * 100, 1000 + (n * 37) % 4000
                order = f"kill-{n}"
                batch.append({"type": "order_paid", "id": order, "order": order, "customer": customer,
                              "amount": f"{pence // 100}.{pence % 100:02d}", "currency": "EUR", "time": t})
                orders.append((customer, t, pence, f"events:acme-site:{order}"))
            r = sp.post_events(batch, key=SECRETS["acme-site"])
            assert r.status_code in (200, 202), r.text
            if round_ < 5:
                sp.kill()
                sp.start()
        want: dict[str, list[tuple[str, str, int, str]]] = {"three": [], "hundred": []}
        for customer in sorted({c for c, *_ in orders}):
            mine = sorted(o for o in orders if o[0] == customer)
            counted = [sum(p for _, _, p, _ in mine[:k + 1]) for k in range(len(mine))]
            if len(mine) >= 3:
                want["three"].append((customer, "entered", mine[2][1], mine[2][3]))
            crossed = next((k for k, total in enumerate(counted) if total >= 10000), None)
            if crossed is not None:
                want["hundred"].append((customer, "entered", mine[crossed][1], mine[crossed][3]))
        for segment, expected in want.items():
            def stored(segment: str = segment) -> list[tuple[str, str, int, str]]:
                rows = call(sp, "GET", f"/segments/{segment}/changes?limit=10000").json()["changes"]
                return sorted((c["customer"], c["change"], ms_from_iso(c["at"]), c["cause"]) for c in rows)
            wait_for(lambda s=stored, e=expected: s() == sorted(e), 60, f"the history of {segment} after the kills")
            members = call(sp, "GET", f"/segments/{segment}/members?limit=1000").json()["members"]
            assert sorted(m["customer"] for m in members) == sorted(c for c, *_ in expected)
        metrics = httpx.get(f"http://127.0.0.1:{flows_port}/metrics", timeout=10).text  # the restarted dataflow's
        counted = {line.split(" ")[0]: float(line.split(" ")[1]) for line in metrics.splitlines()
                   if line.startswith("storepulse_flow_segment")}
        assert counted["storepulse_flow_segment_evaluations_total"] > 0
        assert counted["storepulse_flow_segment_evaluation_seconds_total"] > 0
        assert 'storepulse_flow_segment_timers_pending{org="acme"}' in counted
    finally:
        sp.ensure_stopped()


def test_a_segments_growth_counts_its_entries_and_exits_per_local_day(sp: Storepulse) -> None:
    """GET .../growth: a day-long window entered by two orders and left by one as time passed, counted on
    the organisation's days (Berlin) and listed newest first; a period without an end is a 400."""
    product = f"p-{uid()}"  # bought by this test's customers alone: nobody else enters the segment
    segment, a, b = f"grow_{uid()}", f"c-{uid()}", f"c-{uid()}"
    define(sp, segment, {"bought_product": {"gte": 1, "product": product, "within": "1d"}})
    now = int(time.time() * 1000)
    t_a, t_b = now - 50 * 3_600_000, now - 2 * 3_600_000  # a's window ended a day ago; b's is open
    causes = []
    for customer, t in ((a, t_a), (b, t_b)):
        order = uid()
        r = sp.post_events({"type": "order_paid", "id": order, "order": order, "customer": customer, "amount": "5.00",
                            "currency": "EUR", "time": t, "items": [{"product": product, "qty": 1, "unit_price": "5.00"}]},
                           key=SECRETS["acme-site"])
        assert r.status_code in (200, 202), r.text
        causes.append(f"events:acme-site:{order}")
    berlin = ZoneInfo("Europe/Berlin")
    first, last = local_day(t_a, berlin).isoformat(), local_day(now, berlin).isoformat()
    want = {"entered": 2, "exited": 1, "net": 1}
    body = wait_json(sp, lambda: call(sp, "GET", f"/segments/{segment}/growth?from={first}&to={last}").json(),
                     lambda g: all(g.get(k) == v for k, v in want.items()), what="two entries and the exit by time")
    day = date.fromisoformat(first)
    expected = {(day + timedelta(days=i)).isoformat(): [0, 0] for i in range((date.fromisoformat(last) - day).days + 1)}
    for at, exited in ((t_a, 0), (t_a + 86_400_000, 1), (t_b, 0)):
        expected[local_day(at, berlin).isoformat()][exited] += 1
    assert body["days"] == [{"day": d, "entered": n[0], "exited": n[1]} for d, n in expected.items()]
    assert (body["from"], body["to"], body["timezone"]) == (first, last, "Europe/Berlin")
    assert [(c["customer"], c["change"], ms_from_iso(c["at"]), c["cause"]) for c in body["latest"]] == [
        (b, "entered", t_b, causes[1]), (a, "exited", t_a + 86_400_000, "time"), (a, "entered", t_a, causes[0])]
    # the day before a's order holds nothing of it; the latest list has a limit
    before = (day - timedelta(days=1)).isoformat()
    assert call(sp, "GET", f"/segments/{segment}/growth?from={before}&to={before}").json()["days"] == [
        {"day": before, "entered": 0, "exited": 0}]
    assert len(call(sp, "GET", f"/segments/{segment}/growth?from={first}&to={last}&limit=1").json()["latest"]) == 1
    r = call(sp, "GET", f"/segments/{segment}/growth?from={first}")
    assert r.status_code == 400 and r.json()["error"] == "a segment's growth needs from and to dates (YYYY-MM-DD)", r.text
    assert call(sp, "GET", "/segments/nowhere/growth?period=7d").status_code == 404


def test_a_rule_reading_what_no_segment_kept_says_it_counts_from_now_on(sp: Storepulse) -> None:
    """The segments keep an order's products only where a segment names them (core/rules/keep.py): a rule
    naming a new product, previewed or saved, says that saved it counts from then on; one that reads only
    what is kept says nothing."""
    product = f"p-{uid()}"
    rule = {"bought_product": {"gte": 1, "product": product}}
    said = [f"product {product!r} is named by no other segment, so orders before now do not say it"]
    assert call(sp, "POST", "/segments/preview", {"rule": rule}).json()["not_kept"] == said
    r = call(sp, "PUT", f"/segments/new_{uid()}", {"name": "New product", "rule": rule})
    assert r.status_code == 202 and r.json()["not_kept"] == said, r.text
    r = call(sp, "PUT", f"/segments/kept_{uid()}", {"name": "Kept", "rule": {"orders": {"gte": 2, "within": "30d"}}})
    assert r.status_code == 202 and r.json()["not_kept"] == [], r.text
