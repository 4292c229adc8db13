"""A signed Stripe webhook moves the figures a WebSocket client and the read API see, exactly.

Runs against a real `storepulse up` (embedded SQLite, and on a real redis-server).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from zoneinfo import ZoneInfo

import httpx

from tests.helpers import (
    ORGS_TOML,
    TOKENS,
    Storepulse,
    charge_refunded,
    checkout_session_completed,
    free_port,
    payment_intent_succeeded,
    post_list_orders,
    recv_json,
    today_clear_of_midnight,
    wait_api,
    wait_ws,
)


def uid() -> str:
    return uuid.uuid4().hex[:12]


def eur(amount: int) -> dict[str, object]:
    return {"amount": amount, "currency": "EUR", "exponent": 2}


def test_signed_payment_reaches_websocket_and_api_exactly(storepulse: Storepulse) -> None:
    today_clear_of_midnight()  # "today" is the server's: the payment must land on the day the snapshot showed
    with storepulse.ws(TOKENS["acme"]) as ws:
        snap = recv_json(ws)
        assert snap["type"] == "snapshot" and snap["org"] == "acme"
        before = snap["figures"]["stores"]["acme-eu2"]["today"]
        r = storepulse.post_stripe("acme-eu2", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 12_345))
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "accepted"
        want_orders = before["paid_orders"] + 1
        msg = wait_ws(ws, lambda m: m["figures"]["stores"]["acme-eu2"]["today"]["paid_orders"] == want_orders)
        today = msg["figures"]["stores"]["acme-eu2"]["today"]
        assert today["gross_revenue"] == eur(before["gross_revenue"]["amount"] + 12_345)
        assert today["net_revenue"] == eur(before["net_revenue"]["amount"] + 12_345)
        assert msg["version"] > snap["version"]
    api = storepulse.figures("acme", "today", store="acme-eu2").json()
    assert api["gross_revenue"] == today["gross_revenue"]
    assert api["paid_orders"] == want_orders
    assert api["aov"]["currency"] == "EUR"


def test_duplicate_delivery_and_session_plus_intent_count_once(storepulse: Storepulse) -> None:
    store = "acme-stripe"
    start = storepulse.figures("acme", "all", store=store).json()
    evt, pi = f"evt_{uid()}", f"pi_{uid()}"
    body = payment_intent_succeeded(evt, pi, 5_000)
    assert storepulse.post_stripe(store, body).json()["status"] == "accepted"
    again = storepulse.post_stripe(store, body)
    assert again.status_code == 200 and again.json()["status"] == "duplicate"
    # The checkout session of the same payment is another Stripe event about the same fact.
    session = checkout_session_completed(f"evt_{uid()}", f"cs_{uid()}", pi, 5_000)
    assert storepulse.post_stripe(store, session).json()["status"] == "duplicate"
    # And a second, different order, so we know the flow caught up past all three.
    assert storepulse.post_stripe(store, payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 1)).status_code == 200
    got = wait_api(storepulse, "acme", lambda b: b["paid_orders"] == start["paid_orders"] + 2, store=store)
    assert got["gross_revenue"] == eur(start["gross_revenue"]["amount"] + 5_001)


def test_partial_refund_lowers_net_revenue(storepulse: Storepulse) -> None:
    store = "acme-stripe"
    start = storepulse.figures("acme", "all", store=store).json()
    pi, ch = f"pi_{uid()}", f"ch_{uid()}"
    storepulse.post_stripe(store, payment_intent_succeeded(f"evt_{uid()}", pi, 10_000))
    r = storepulse.post_stripe(store, charge_refunded(f"evt_{uid()}", ch, pi, 10_000, 2_550))
    assert r.json()["status"] == "accepted"
    # A second partial refund on the same charge reports the running total (3,000 = 2,550 + 450).
    storepulse.post_stripe(store, charge_refunded(f"evt_{uid()}", ch, pi, 10_000, 3_000))
    got = wait_api(storepulse, "acme", lambda b: b["refunds"]["amount"] == start["refunds"]["amount"] + 3_000, store=store)
    assert got["gross_revenue"] == eur(start["gross_revenue"]["amount"] + 10_000)
    assert got["net_revenue"] == eur(start["net_revenue"]["amount"] + 10_000 - 3_000)
    assert got["paid_orders"] == start["paid_orders"] + 1


def test_zero_decimal_currency_is_exact(storepulse: Storepulse) -> None:
    start = storepulse.figures("tokyo", "all").json()
    for amount in (1_980, 3, 10_001):
        r = storepulse.post_stripe("tokyo-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", amount, "jpy"))
        assert r.status_code == 200, r.text
    got = wait_api(storepulse, "tokyo", lambda b: b["paid_orders"] == start["paid_orders"] + 3)
    assert got["gross_revenue"] == {"amount": start["gross_revenue"]["amount"] + 11_984, "currency": "JPY", "exponent": 0}
    # 11,984 yen over 3 orders = 3,994.67 -> 3,995 (half up), when the store was empty before.
    if start["paid_orders"] == 0:
        assert got["aov"] == {"amount": 3_995, "currency": "JPY", "exponent": 0}


def test_websocket_sees_only_its_own_organisation(storepulse: Storepulse) -> None:
    with storepulse.ws(TOKENS["tokyo"]) as tokyo:
        snap = recv_json(tokyo)
        assert snap["org"] == "tokyo" and set(snap["figures"]["stores"]) == {"tokyo-stripe"}
        storepulse.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 777))
        storepulse.post_stripe("tokyo-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 5, "jpy"))
        msg = wait_ws(tokyo, lambda m: m["version"] > snap["version"])
        assert msg["org"] == "tokyo" and "acme-stripe" not in msg["figures"]["stores"]
    with storepulse.ws("not-a-token-at-all") as bad:
        err = recv_json(bad)
        assert err == {"type": "error", "status": 401, "message": "the bearer token is not valid"}


def test_read_api_auth(storepulse: Storepulse) -> None:
    url = f"{storepulse.base}/api/v1/orgs/acme/figures"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
    other = httpx.get(url, headers={"Authorization": f"Bearer {TOKENS['tokyo']}"})
    assert other.status_code == 403 and "acme" in other.json()["error"]
    bad_period = storepulse.figures("acme", "week")
    assert bad_period.status_code == 400 and "period" in bad_period.json()["error"]


def test_bad_deliveries_are_refused_with_a_reason(storepulse: Storepulse) -> None:
    body = payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 100)
    wrong_secret = storepulse.post_stripe("acme-stripe", body, secret="whsec_wrong")
    assert wrong_secret.status_code == 400 and "does not verify" in wrong_secret.json()["error"]
    old = storepulse.post_stripe("acme-stripe", body, timestamp=1_000_000_000)
    assert old.status_code == 400 and "old" in old.json()["error"]
    control = storepulse.post_stripe("acme-stripe", body)
    assert control.status_code == 200  # control: the same body, signed right, is accepted
    nostore = httpx.post(f"{storepulse.base}/webhooks/stripe/nope", content=body)
    assert nostore.status_code == 404 and "nope" in nostore.json()["error"]
    nosig = httpx.post(f"{storepulse.base}/webhooks/stripe/acme-stripe", content=body)
    assert nosig.status_code == 400 and nosig.json()["error"] == "missing Stripe-Signature header"
    notjson = storepulse.post_stripe("acme-stripe", b"{not json")
    assert notjson.status_code == 400 and notjson.json()["error"].startswith("body is not JSON")
    missing = storepulse.post_stripe("acme-stripe", b'{"id": "evt_x", "type": "payment_intent.succeeded", "created": 1}')
    assert missing.status_code == 400 and "data.object" in missing.json()["error"]
    ignored = storepulse.post_stripe("acme-stripe", b'{"id": "evt_y", "type": "plan.created", "created": 1, "data": {"object": {}}}')
    assert ignored.status_code == 200 and ignored.json()["status"] == "ignored"
    # An amount no 64-bit integer holds is the payload's fault (400, kept), not the log's (it was a 500,
    # and on SQLite the log's writer died with it); the store goes on taking payments.
    huge = storepulse.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 2**64 - 1))
    assert huge.status_code == 400, huge.text
    assert huge.json()["error"] == f"payment_intent.amount_received is out of range: {2**64 - 1}"
    assert storepulse.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 5)).status_code == 200


def test_other_currencies_convert_at_the_day_rate_and_series_follow(storepulse: Storepulse) -> None:
    start = storepulse.figures("acme", "all", store="acme-eu2").json()
    r = storepulse.post_stripe("acme-eu2", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 10_500, "usd"))
    assert r.status_code == 200
    # 105.00 USD at 1.05 USD per EUR (the last fixing, carried forward) = 100.00 EUR
    got = wait_api(storepulse, "acme", lambda b: b["paid_orders"] == start["paid_orders"] + 1, store="acme-eu2")
    assert got["gross_revenue"] == eur(start["gross_revenue"]["amount"] + 10_000)
    in_usd = storepulse.get("/api/v1/orgs/acme/figures", period="all", store="acme-eu2", currency="USD").json()
    assert in_usd["gross_revenue"]["currency"] == "USD"
    in_chf = storepulse.get("/api/v1/orgs/acme/figures", period="all", currency="CHF")  # the rates file has no CHF
    assert in_chf.status_code == 200 and in_chf.json()["paid_orders"] >= 1
    assert in_chf.json()["gross_revenue"]["missing_rates"][0]["currency"] == "CHF"
    assert "incomplete in CHF: no exchange rate for CHF on " in in_chf.json()["gross_revenue"]["message"]


def test_series_and_ranges(storepulse: Storepulse) -> None:
    today = today_clear_of_midnight()  # period=yesterday below is the server's yesterday
    yesterday = today - dt.timedelta(days=1)
    q = {"metric": "paid_orders", "granularity": "day", "from": yesterday.isoformat(), "to": today.isoformat(), "store": "acme-eu2"}
    before = {p["t"]: p["value"] for p in storepulse.get("/api/v1/orgs/acme/series", **q).json()["points"]}
    created = int(dt.datetime.combine(yesterday, dt.time(12), ZoneInfo("Europe/Berlin")).timestamp())
    storepulse.post_stripe("acme-eu2", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 4_200, created=created))
    want = before[yesterday.isoformat()] + 1
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        body = storepulse.get("/api/v1/orgs/acme/series", **q).json()
        points = {p["t"]: p["value"] for p in body["points"]}
        if points[yesterday.isoformat()] == want:
            break
    assert points == {yesterday.isoformat(): want, today.isoformat(): before[today.isoformat()]}
    hours = storepulse.get("/api/v1/orgs/acme/series", **{**q, "granularity": "hour", "metric": "gross_revenue"}).json()
    assert len(hours["points"]) in (47, 48, 49) and hours["currency"] == "EUR"
    ranged = storepulse.get("/api/v1/orgs/acme/figures", store="acme-eu2", **{"from": yesterday.isoformat(), "to": yesterday.isoformat()}).json()
    assert ranged["paid_orders"] == want and ranged["from"] == ranged["to"] == yesterday.isoformat()
    y = storepulse.get("/api/v1/orgs/acme/figures", store="acme-eu2", period="yesterday").json()
    assert y["paid_orders"] == want
    bad = storepulse.get("/api/v1/orgs/acme/series", **{**q, "granularity": "week"})
    assert bad.status_code == 400 and "granularity" in bad.json()["error"]


def test_lists_of_orders_products_customers_pairs_and_quota(tmp_path) -> None:
    """A fresh instance, so every number below is exactly these orders'."""
    config = ORGS_TOML.replace('currency = "EUR"\ntoken = "acme-token', 'currency = "EUR"\nplan_limit = 4\ntoken = "acme-token')
    sp = Storepulse(tmp_path, config=config)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(sp.ensure_stopped)
        sp.start()
        ws = cleanup.enter_context(sp.ws(TOKENS["acme"]))
        recv_json(ws)  # snapshot
        t = int(time.time()) - 3600
        post_list_orders(sp, t)
        sp.post_stripe("acme-stripe", charge_refunded("e5", "ch_2", "pi_2", 4500, 500))
        wait_api(sp, "acme", lambda b: b["paid_orders"] == 4 and b["refunds"]["amount"] == 500)

        latest = sp.get("/api/v1/orgs/acme/orders", period="all", sort="latest", limit=2).json()
        assert [o["order"] for o in latest["orders"]] == ["pi_4", "pi_3"]
        best = sp.get("/api/v1/orgs/acme/orders", period="all", sort="best").json()
        assert [(o["order"], o["amount"]["amount"]) for o in best["orders"]] == [("pi_4", 9900), ("pi_2", 4500), ("pi_1", 3000), ("pi_3", 1500)]
        assert best["orders"][1]["refunded"] == eur(500)
        assert best["by_source"] == {"web": {"orders": 4, "revenue": eur(18_900)}}

        products = sp.get("/api/v1/orgs/acme/products", period="all").json()["products"]
        assert [(p["product"], p["revenue"]["amount"], p["units"], p["orders"]) for p in products] == [
            ("coat", 9900, 1, 1), ("hat", 4500, 3, 2), ("shirt", 4500, 3, 2)]
        by_units = sp.get("/api/v1/orgs/acme/products", period="all", sort="units", limit=1).json()["products"]
        assert by_units[0]["product"] == "hat"  # ties on units break by product id

        customers = sp.get("/api/v1/orgs/acme/customers", period="all").json()
        assert [(c["customer"], c["revenue"]["amount"], c["orders"], c["items"]) for c in customers["customers"]] == [
            ("cus_a", 7500, 2, 5), ("cus_b", 1500, 1, 1)]
        assert customers["summary"] == {"customers": 2, "repeat_customers": 1, "repeat_purchase_rate": 0.5,
                                        "new_customers": 2, "returning_customers": 0, "guest_orders": 1}

        pairs = sp.get("/api/v1/orgs/acme/pairs", period="all").json()
        # shirt+hat in 1 of 4 orders; shirt in 2, hat in 2: lift = (1 * 4) / (2 * 2) = 1
        assert pairs["pairs"] == [{"a": "hat", "b": "shirt", "a_name": "hat", "b_name": "shirt", "orders": 1, "support": 0.25,
                                   "lift": 1.0}]

        q = sp.get("/api/v1/orgs/acme/quota").json()
        assert (q["paid_orders_30d"], q["plan_limit"], q["used"], q["crossed"]) == (4, 4, 1.0, [80, 100])
        # 80 % of 4 is reached by the 4th order (4 * 100 >= 4 * 80), and so is 100 %: two alerts.
        assert [(a["percent"], a["count"], a["at"]) for a in q["alerts"]] == [(80, 4, (t + 180) * 1000), (100, 4, (t + 180) * 1000)]
        pushed = wait_ws(ws, lambda m: m["quota"]["percent"] == 100, types=("alert",))
        assert pushed["quota"] == {"percent": 100, "count": 4, "limit": 4, "at": (t + 180) * 1000}
        before = sp.get("/api/v1/orgs/acme/quota", at=dt.datetime.fromtimestamp(t + 90, dt.UTC).isoformat()).json()
        assert (before["paid_orders_30d"], before["crossed"]) == (2, [])
        assert sp.get("/api/v1/orgs/acme/products", sort="price").status_code == 400


def test_carts_journey_and_email_attribution_through_the_events_api(storepulse: Storepulse) -> None:
    # Two days before today in Berlin: inside the carts' 7-day horizon whatever the date, and a day
    # no other test posts to (they post for today).
    day = (dt.datetime.now(ZoneInfo("Europe/Berlin")).date() - dt.timedelta(days=2)).isoformat()
    tag = uid()
    berlin = ZoneInfo("Europe/Berlin")
    def t(hh_mm):
        return dt.datetime.fromisoformat(f"{day}T{hh_mm}:00").replace(tzinfo=berlin).isoformat()
    def v(n):
        return f"{tag}-v{n}"
    events = [
        {"type": "page_view", "id": f"{tag}-1", "time": t("10:00"), "visitor": v(1), "url": "/"},
        {"type": "add_to_cart", "id": f"{tag}-2", "time": t("10:01"), "visitor": v(1), "cart": f"{tag}-c1", "currency": "EUR",
         "items": [{"product": f"{tag}-p1", "qty": 1, "price": "10.00", "name": "Desk lamp"}]},
        {"type": "page_view", "id": f"{tag}-3", "time": t("10:02"), "visitor": v(2), "url": "/"},
        {"type": "add_to_cart", "id": f"{tag}-4", "time": t("10:02"), "visitor": v(2), "cart": f"{tag}-c2", "currency": "EUR",
         "items": [{"product": f"{tag}-p2", "qty": 1, "price": "5.00"}]},
        {"type": "order_paid", "id": f"{tag}-5", "time": t("10:10"), "visitor": v(2), "cart": f"{tag}-c2", "order": f"{tag}-o2",
         "amount": "5.00", "currency": "EUR", "items": [{"product": f"{tag}-p2", "qty": 1, "price": "5.00"}]},
        {"type": "email_click", "id": f"{tag}-6", "time": t("10:00"), "visitor": v(3), "campaign": f"{tag}-spring"},
        {"type": "order_paid", "id": f"{tag}-7", "time": t("11:00"), "visitor": v(3), "order": f"{tag}-o3",
         "amount": "20.00", "currency": "EUR"},
        # Later traffic moves the event-time watermark past cart 1's 60 minutes: it is abandoned.
        {"type": "page_view", "id": f"{tag}-8", "time": t("12:30"), "visitor": v(4), "url": "/"},
    ]
    assert storepulse.post_events(events).json()["new"] == 8
    span = {"from": day, "to": day, "store": "acme-site"}

    def carts() -> dict:
        return storepulse.get("/api/v1/orgs/acme/carts", **span).json()

    deadline = time.monotonic() + 15
    while carts()["abandoned"] < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    c = carts()
    mine = [x for x in c["latest_carts"] if x["cart"].startswith(tag)]
    assert {x["cart"]: x["status"] for x in mine} == {f"{tag}-c1": "abandoned", f"{tag}-c2": "purchased"}
    assert {"product": f"{tag}-p1", "name": "Desk lamp", "store": "acme-site", "carts": 1} in c["most_abandoned_products"]
    journey = storepulse.get("/api/v1/orgs/acme/journey", **span).json()
    attribution = storepulse.get("/api/v1/orgs/acme/attribution", **span).json()
    spring = [x for x in attribution["campaigns"] if x["campaign"] == f"{tag}-spring"]
    assert spring == [{"campaign": f"{tag}-spring", "orders": 1, "revenue": eur(2000)}]
    # This test owns acme-site on that day (other tests post events for today), so totals are exact.
    assert (c["carts"], c["abandoned"], c["purchased"], c["abandonment_rate"]) == (2, 1, 1, 0.5)
    assert c["abandoned_value"] == eur(1000)
    assert (journey["visitors"], journey["added_to_cart"], journey["purchased"], journey["conversion_rate"]) == (4, 2, 2, 0.5)


def test_the_refund_horizon_given_to_up_reaches_its_dataflow(tmp_path) -> None:
    """`up --refund-horizon-days 1`: a payment three days old is too late for the dataflow (under the
    default 366 days it would count), and the metrics say so."""
    sp = Storepulse(tmp_path)
    sp.extra_args = ["--refund-horizon-days", "1", "--flows-metrics-port", str(flows_port := free_port())]
    try:
        sp.start()
        now = int(time.time())
        for evt, amount, created in [("now", 1_000, now), ("old", 2_000, now - 3 * 86_400), ("later", 30, now + 1)]:
            r = sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{evt}_{uid()}", f"pi_{evt}_{uid()}",
                                                                       amount, created=created))
            assert r.json()["status"] == "accepted", r.text
        got = wait_api(sp, "acme", lambda b: b["paid_orders"] == 2, store="acme-stripe", timeout=30)
        assert got["gross_revenue"] == eur(1_030)  # the old payment, read between the two, is not in it
        metrics = httpx.get(f"http://127.0.0.1:{flows_port}/metrics", timeout=5).text
        assert 'storepulse_flow_too_late_total{book="revenue"} 1.0' in metrics
        assert 'storepulse_flow_too_late_total{book="journey"}' not in metrics  # three days: the others took it
    finally:
        sp.ensure_stopped()
