"""Everything a shop can send, over real HTTP: the events API, bad input of every kind, the rejected
store and its redrive after a secret rotation, and connection monitoring."""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
import uuid
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import (
    ORGS_TOML,
    SECRETS,
    Storepulse,
    payment_intent_succeeded,
    stripe_signature,
    wait_api,
    wait_for,
    wait_json,
)


def uid() -> str:
    return uuid.uuid4().hex[:12]


def test_events_api_batch_is_recorded_once(storepulse: Storepulse) -> None:
    now = int(time.time() * 1000)
    batch = [{"type": "page_view", "id": f"pv-{uid()}", "time": now - i, "visitor": "v1", "url": "/"} for i in range(999)]
    an_hour_ago = dt.datetime.fromtimestamp(now // 1000 - 3600, ZoneInfo("Europe/Berlin")).isoformat()  # "...+01:00"
    batch.append({"type": "order_paid", "id": f"op-{uid()}", "time": an_hour_ago, "customer": "c9",
                  "order": f"o-{uid()}", "amount": "19.99", "currency": "EUR",
                  "items": [{"product": "sku-1", "qty": 2, "price": "9.99"}]})
    start = storepulse.figures("acme", "all", store="acme-site").json()
    r = storepulse.post_events({"events": batch})
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "accepted", "new": 1000, "duplicates": 0}
    again = storepulse.post_events(batch)
    assert again.json() == {"status": "duplicate", "new": 0, "duplicates": 1000}
    got = wait_api(storepulse, "acme", lambda b: b["paid_orders"] == start["paid_orders"] + 1, store="acme-site")
    assert got["gross_revenue"]["amount"] == start["gross_revenue"]["amount"] + 1999


def test_events_api_refuses_bad_batches_whole(storepulse: Storepulse) -> None:
    good = {"type": "page_view", "id": f"x-{uid()}", "time": int(time.time() * 1000), "visitor": "v"}
    r = storepulse.post_events([good, {"type": "teleport", "id": "a", "time": 1, "visitor": "v"},
                                {"type": "page_view", "id": "b", "visitor": "v"}])
    assert r.status_code == 400
    msg = r.json()["error"]
    assert msg.startswith("nothing was recorded; events[1]: type 'teleport' is not one of")
    assert "events[2]: time is missing" in msg
    over = storepulse.post_events([{**good, "id": str(i)} for i in range(1001)])
    assert over.status_code == 400 and "1001 events is over the limit of 1000" in over.json()["error"]
    assert storepulse.post_events([good], key="wrong-key").status_code == 400
    assert "API key" in storepulse.post_events([good], key="wrong-key").json()["error"]
    money = storepulse.post_events([{**good, "type": "order_paid", "order": "o", "amount": 19.99, "currency": "EUR"}])
    assert money.status_code == 400 and "decimal string" in money.json()["error"]


def test_the_start_up_banner_gives_each_store_the_address_that_takes_its_events(storepulse: Storepulse) -> None:
    """An events store's address is the events API with its key as Bearer (/webhooks/events/... is a 404);
    a real configuration's secrets are not printed (tests/test_hardening.py checks the whole output)."""
    events = f"store acme-site (events API): POST {storepulse.base}/v1/events  Authorization: Bearer <its secret>"
    stripe = f"store acme-stripe (stripe): POST {storepulse.base}/webhooks/stripe/acme-stripe\n"
    wait_for(lambda: events in storepulse.log_tail(100_000), 10, "the start-up banner")
    banner = storepulse.log_tail(100_000)
    assert stripe in banner and "/webhooks/events/" not in banner
    url, key = events.split("POST ")[1].split()[0], SECRETS["acme-site"]
    r = httpx.post(url, headers={"Authorization": f"Bearer {key}"},
                   json={"type": "page_view", "id": f"banner-{uid()}", "time": int(time.time() * 1000), "visitor": "v"})
    assert (r.status_code, r.json()["status"]) == (200, "accepted"), r.text


def test_limits_and_content_types(storepulse: Storepulse) -> None:
    url = f"{storepulse.base}/webhooks/stripe/acme-stripe"
    big = b"{" + b" " * (1024 * 1024) + b"}"
    r = httpx.post(url, content=big, headers={"Stripe-Signature": stripe_signature(big, SECRETS["acme-stripe"])})
    assert r.status_code == 413 and "over the limit of 1048576 bytes" in r.json()["error"]
    xml = httpx.post(url, content=b"<a/>", headers={"Content-Type": "application/xml"})
    assert xml.status_code == 415 and "application/json" in xml.json()["error"]
    wrong_provider = httpx.post(f"{storepulse.base}/webhooks/shopify/acme-stripe", content=b"{}")
    assert wrong_provider.status_code == 404 and "is a stripe connection" in wrong_provider.json()["error"]
    assert httpx.post(f"{storepulse.base}/webhooks/paypal/acme-stripe", content=b"{}").status_code == 404


def test_deliveries_to_junk_providers_count_as_one_unknown_series(storepulse: Storepulse) -> None:
    def unknown_rejected() -> float:
        text = httpx.get(f"{storepulse.base}/metrics").text
        line = 'storepulse_ingest_deliveries_total{outcome="rejected",provider="unknown"} '
        return next((float(x[len(line):]) for x in text.splitlines() if x.startswith(line)), 0.0)

    before = unknown_rejected()
    for junk in ("paypal", "x" * 40, "pay%20pal"):
        assert httpx.post(f"{storepulse.base}/webhooks/{junk}/acme-stripe", content=b"{}").status_code == 404
    text = httpx.get(f"{storepulse.base}/metrics").text
    assert unknown_rejected() == before + 3
    assert "paypal" not in text and "x" * 40 not in text


def test_rejected_deliveries_are_kept_and_listed_per_org(storepulse: Storepulse) -> None:
    body = payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 321)
    r = storepulse.post_stripe("acme-stripe", body, secret="whsec_not_it", headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 400
    listed = storepulse.get("/api/v1/orgs/acme/rejected", store="acme-stripe", limit=5).json()["rejected"]
    mine = [x for x in listed if x["body"] == body.decode()]
    assert len(mine) == 1
    kept = mine[0]
    assert (kept["status"], kept["provider"], kept["org"]) == (400, "stripe", "acme")
    assert kept["reason"].startswith("Stripe-Signature does not verify")
    assert kept["headers"]["authorization"] == "[redacted]" and kept["headers"]["stripe-signature"].startswith("t=")
    one = storepulse.get(f"/api/v1/orgs/acme/rejected/{kept['id']}").json()
    assert one["body"] == body.decode()
    # Another organisation sees none of it.
    assert storepulse.get(f"/api/v1/orgs/tokyo/rejected/{kept['id']}", org="tokyo").status_code == 404
    assert storepulse.get("/api/v1/orgs/acme/rejected", org="tokyo").status_code == 403
    conns = {c["store"]: c for c in storepulse.get("/api/v1/orgs/acme/connections").json()["connections"]}
    assert conns["acme-stripe"]["rejected"]["count"] >= 1
    assert conns["acme-stripe"]["provider"] == "stripe"


def test_connections_show_recent_activity(storepulse: Storepulse) -> None:
    t = int(time.time())
    storepulse.post_stripe("acme-eu2", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 5, created=t))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        conns = {c["store"]: c for c in storepulse.get("/api/v1/orgs/acme/connections").json()["connections"]}
        if conns["acme-eu2"]["events_last_hour"] >= 1:
            break
        time.sleep(0.2)
    c = conns["acme-eu2"]
    assert c["events_last_hour"] >= 1 and c["last_event_time"] is not None and c["last_received_at"] is not None


def test_events_too_late_for_a_book_show_on_the_connection_per_book(storepulse: Storepulse) -> None:
    """A backfill of last week's carts behind a live shop: older than the 7-day horizon of carts,
    journey and e-mail attribution, so those books refuse them, and the connection says so."""
    berlin = ZoneInfo("Europe/Berlin")
    now = int(time.time() * 1000)
    # Noon nine local days before today: older than W - 7 days (W = the shop's latest event - 5 min)
    # whatever the hour, and on a day that ended more than 7 days before W.
    old_day = dt.datetime.now(berlin).date() - dt.timedelta(days=9)
    old = int(dt.datetime.combine(old_day, dt.time(12), berlin).timestamp()) * 1000
    recent = now - 6 * 86_400_000  # six days late: within every horizon
    recent_day = dt.datetime.fromtimestamp(recent // 1000, berlin).date()
    tag = uid()
    iso = lambda ms: dt.datetime.fromtimestamp(ms // 1000, dt.UTC).isoformat()  # noqa: E731
    zero = {"count": 0, "last_event_time": None, "last_event_id": None}

    def connections() -> dict[str, dict]:
        return {c["store"]: c for c in storepulse.get("/api/v1/orgs/acme/connections").json()["connections"]}

    before = connections()["acme-site"]["too_late"]
    assert set(before) == {"revenue", "carts", "journey", "attribution"}
    line = [{"product": f"{tag}-p", "qty": 1, "price": "10.00"}]
    r = storepulse.post_events([
        {"type": "page_view", "id": f"{tag}-0", "time": now, "visitor": f"{tag}-v0", "url": "/"},  # the shop is live
        {"type": "add_to_cart", "id": f"{tag}-1", "time": old, "visitor": f"{tag}-v1", "cart": f"{tag}-c1",
         "currency": "EUR", "items": line},
        {"type": "order_paid", "id": f"{tag}-2", "time": old + 60_000, "visitor": f"{tag}-v1", "cart": f"{tag}-c1",
         "order": f"{tag}-o1", "amount": "10.00", "currency": "EUR", "items": line},
        {"type": "add_to_cart", "id": f"{tag}-3", "time": recent, "visitor": f"{tag}-v3", "cart": f"{tag}-c3",
         "currency": "EUR", "items": line},
    ])
    assert r.json()["new"] == 4, r.text
    last = {"last_event_time": iso(old + 60_000), "last_event_id": f"events:acme-site:{tag}-2"}
    want = {**before,  # the add and the payment by carts and journey, the payment by attribution
            "carts": {"count": before["carts"]["count"] + 2, **last},
            "journey": {"count": before["journey"]["count"] + 2, **last},
            "attribution": {"count": before["attribution"]["count"] + 1, **last}}
    wait_json(storepulse, lambda: connections()["acme-site"]["too_late"], lambda got: got == want, what="GET /connections")
    assert before["revenue"] == zero  # revenue keeps 366 days: it took the payment
    assert connections()["acme-eu2"]["too_late"] == {b: zero for b in ("revenue", "carts", "journey", "attribution")}
    on = lambda day: {"from": day.isoformat(), "to": day.isoformat(), "store": "acme-site"}  # noqa: E731
    paid = storepulse.get("/api/v1/orgs/acme/figures", **on(old_day)).json()
    assert (paid["paid_orders"], paid["gross_revenue"]) == (1, {"amount": 1000, "currency": "EUR", "exponent": 2})
    assert storepulse.get("/api/v1/orgs/acme/carts", **on(old_day)).json()["carts"] == 0
    assert storepulse.get("/api/v1/orgs/acme/journey", **on(old_day)).json()["visitors"] == 0
    assert storepulse.get("/api/v1/orgs/acme/carts", **on(recent_day)).json()["carts"] == 1
    assert storepulse.get("/api/v1/orgs/acme/journey", **on(recent_day)).json()["added_to_cart"] == 1


def test_redrive_after_a_secret_rotation(tmp_path: Path) -> None:
    sp = Storepulse(tmp_path)
    try:
        sp.start()
        rotated = "whsec_rotated_secret"
        body = payment_intent_succeeded(f"evt_{uid()}", "pi_rotated", 8_800)
        r = sp.post_stripe("acme-stripe", body, secret=rotated)  # the shop already signs with the new secret
        assert r.status_code == 400
        [kept] = sp.get("/api/v1/orgs/acme/rejected").json()["rejected"]
        sp.stop()
        out = sp.cli("rejected", "redrive", kept["id"])
        assert out.returncode == 1 and "still rejected (400)" in out.stdout  # config not fixed yet
        sp.config.write_text(ORGS_TOML.replace('secret = "whsec_acme_secret"', f'secret = "{rotated}"'))
        listed = sp.cli("rejected", "list", "--store", "acme-stripe")
        assert kept["id"] in listed.stdout
        out = sp.cli("rejected", "redrive", "--store", "acme-stripe")
        assert out.returncode == 0, out.stdout + out.stderr
        assert f"{kept['id']}: redriven: 1 new, 0 duplicate event(s)" in out.stdout
        sp.start()
        got = wait_api(sp, "acme", lambda b: b["paid_orders"] == 1, store="acme-stripe")
        assert got["gross_revenue"]["amount"] == 8_800
        shown = sp.cli("rejected", "show", kept["id"])
        assert '"redrive_result": "redriven: 1 new' in shown.stdout
    finally:
        sp.ensure_stopped()


# --- fuzzing: random and mutated input never makes a 5xx, never appends, never kills the server -------

ENDPOINTS = ["/webhooks/stripe/acme-stripe", "/webhooks/stripe/nope", "/webhooks/woocommerce/acme-stripe", "/v1/events"]
header_names = st.sampled_from(["Stripe-Signature", "Content-Type", "Authorization", "X-WC-Webhook-Signature",
                                "X-Shopify-Hmac-Sha256", "Content-Length-X", "X-Api-Key"])
header_values = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80).map(str.strip)
bodies = st.one_of(
    st.binary(max_size=2048),
    st.sampled_from([payment_intent_succeeded("evt_f", "pi_f", 1), b"{}", b"[]", b"null", b'{"events": []}']).flatmap(
        lambda b: st.tuples(st.integers(0, len(b)), st.binary(max_size=8)).map(lambda t: b[: t[0]] + t[1] + b[t[0]:])
    ),
)


def _log_rows(sp: Storepulse) -> int:
    with sqlite3.connect(sp.data_dir / "log.sqlite3") as conn:
        return conn.execute("SELECT count(*) FROM events").fetchone()[0]


@pytest.fixture(scope="module")
def fuzz_target(tmp_path_factory: pytest.TempPathFactory):
    sp = Storepulse(tmp_path_factory.mktemp("fuzz")).start()
    yield sp, httpx.Client(base_url=sp.base, timeout=10)
    sp.ensure_stopped()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(ENDPOINTS), body=bodies, headers=st.dictionaries(header_names, header_values, max_size=4))
def test_garbage_gets_a_4xx_with_a_reason_and_appends_nothing(fuzz_target, endpoint: str, body: bytes, headers: dict[str, str]) -> None:
    sp, client = fuzz_target
    before = _log_rows(sp)
    r = client.post(endpoint, content=body, headers=headers)
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.json()["error"]
    assert _log_rows(sp) == before


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=bodies)
def test_signed_garbage_is_never_a_5xx(fuzz_target, body: bytes) -> None:
    """Right signature, wrong content: the normaliser must refuse it in words, not crash."""
    sp, client = fuzz_target
    r = client.post("/webhooks/stripe/acme-stripe", content=body,
                    headers={"Stripe-Signature": stripe_signature(body, SECRETS["acme-stripe"]), "Content-Type": "application/json"})
    assert r.status_code in (200, 400), (r.status_code, r.text)
    if r.status_code == 400:
        assert r.json()["error"]
    events = client.post("/v1/events", content=body, headers={"Authorization": f"Bearer {SECRETS['acme-site']}"})
    assert events.status_code in (200, 400), (events.status_code, events.text)


def test_server_is_still_up_after_fuzzing(fuzz_target) -> None:
    sp, client = fuzz_target
    r = sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 1))
    assert r.status_code == 200
