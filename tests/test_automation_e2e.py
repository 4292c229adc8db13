"""Automations through the real path: `storepulse up` (ingest, the dataflow as a child process with
its outbox output, the notifier) with a real HTTP receiver verifying Standard Webhooks signatures
(tests/receivers.py), a real SMTP server, and the SQLite outbox read back (notifier/sqlite_outbox.py).

- A signed Stripe payment over the threshold, delivered twice by Stripe, and one under it: one
  action in the outbox, one webhook at the receiver; embedded (SQLite) and distributed (Redis log,
  read model and outbox stream).
- kill -9 of everything after the action fired, with no snapshot taken since (a long epoch): the
  dataflow folds the payment again after the restart and puts the same action again; the outbox
  still holds it once and the receiver has seen one webhook-id.
- Abandoned-cart reminders through the events API, in an organisation with `allowed_lateness = "5s"`
  (event times in the past, so the test does not wait for abandon_after): the wall clock decides the
  cart with no further event and the reminder goes after its wait, as one e-mail to the customer (a
  real aiosmtpd server) and one webhook; a customer who bought in time gets none; a purchase during
  the wait cancels it.
- A guest with no account and no customer event: the reminder of a Shopify checkout goes to the e-mail
  address typed at it; a Stripe guest's paid session names its buyer in the customers list.
- The dashboard's channels card sends a test through the webhook and the e-mail channel.
"""

from __future__ import annotations

import datetime as dt
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import redis
from playwright.sync_api import Browser, Locator, expect

from ingest import shopify
from notifier.actions import action_key
from notifier.outbox import Delivery, Outbox
from notifier.redis_outbox import RedisOutbox
from notifier.sqlite_outbox import SqliteOutbox
from tests.chromium import chromium
from tests.helpers import SECRETS, RedisServer, Storepulse, payment_intent_succeeded, wait_for, wait_json
from tests.receivers import Receiver, SmtpServer

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SHOP_SECRET = "shpss_acme-shop-0123456789"
MIN = 60_000


def config(url: str, smtp_port: int) -> str:
    return f"""
rates_file = "rates.csv"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
from = "Acme <alerts@acme.example>"
starttls = false

[orgs.acme]
timezone = "Europe/Berlin"
currency = "EUR"
token = "acme-token-0123456789"
abandon_after = 30
allowed_lateness = "5s"

[orgs.acme.stores.acme-stripe]
provider = "stripe"
secret = "{SECRETS['acme-stripe']}"

[orgs.acme.stores.acme-site]
provider = "events"
secret = "{SECRETS['acme-site']}"

[orgs.acme.stores.acme-shop]
provider = "shopify"
secret = "{SHOP_SECRET}"

[orgs.acme.channels.crm]
kind = "webhook"
url = "{url}"
secret = "{WHSEC}"
allow_private = true
retry = ["1s", "1s"]

[orgs.acme.channels.customer-mail]
kind = "email"
to = "customer"
retry = ["1s", "1s"]

[orgs.acme.automations.big-order]
trigger = "order.paid"
if = {{ order_value = {{ gte = "100.00" }} }}
send = ["crm"]

[orgs.acme.automations.reminder]
trigger = "cart.abandoned"
wait = "2m"
cancel_on = ["order.paid"]
send = ["crm", "customer-mail"]
"""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(secret=WHSEC)
    yield r
    r.close()


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    yield server
    server.close()


@pytest.fixture
def storepulse(request: pytest.FixtureRequest, tmp_path: Path, receiver: Receiver, smtp: SmtpServer,
               redis_server: RedisServer) -> Iterator[Storepulse]:
    """Embedded (SQLite) unless the test asks for "redis" (the log, read model and outbox on Redis)."""
    redis_url = None
    if getattr(request, "param", "sqlite") == "redis":
        redis.Redis.from_url(redis_server.url).flushdb()
        redis_url = redis_server.url
    sp = Storepulse(tmp_path, redis_url=redis_url, config=config(receiver.url, smtp.port))
    sp.extra_args = ["--epoch-ms", "600000"]  # no snapshot during the test: a kill -9 replays everything
    yield sp
    sp.ensure_stopped()


def deliveries(sp: Storepulse, automation: str) -> list[Delivery]:
    outbox: Outbox = RedisOutbox(sp.redis_url) if sp.redis_url else SqliteOutbox(sp.data_dir / "outbox.sqlite3")
    try:
        return outbox.list("acme", automation=automation)
    finally:
        outbox.close()


@pytest.mark.parametrize("storepulse", ["sqlite", "redis"], indirect=True)
def test_a_big_stripe_payment_delivered_twice_is_one_action_and_survives_kill_9(storepulse: Storepulse,
                                                                                 receiver: Receiver) -> None:
    sp = storepulse.start()
    big = payment_intent_succeeded("evt_big_1", "pi_big_1", 15_000)
    small = payment_intent_succeeded("evt_small_1", "pi_small_1", 9_999)
    for body in (big, big, small):  # Stripe retries the big one: the same event id
        r = sp.post_stripe("acme-stripe", body)
        assert r.status_code == 200, r.text
    wait_for(lambda: len(receiver.delivered_ids()) >= 1, 30, "the big order's webhook")
    # A later big payment, delivered after the first: once it is there, the first has had every chance to repeat.
    assert sp.post_stripe("acme-stripe", payment_intent_succeeded("evt_big_2", "pi_big_2", 20_000)).status_code == 200
    wait_for(lambda: len(receiver.delivered_ids()) >= 2, 30, "the second big order's webhook")
    sent = deliveries(sp, "big-order")
    assert len(sent) == 2 and {d.action.cause for d in sent} == {"order.paid:acme-stripe:pi_big_1",
                                                                  "order.paid:acme-stripe:pi_big_2"}
    first = next(d for d in sent if d.action.cause.endswith("pi_big_1"))
    assert first.action.key == action_key("big-order", first.action.subject, "order.paid:acme-stripe:pi_big_1")
    assert receiver.json_bodies()[0]["data"]["data"]["amount"] == 15_000
    ids = receiver.delivered_ids()
    assert len(ids) == len(set(ids)) == 2

    sp.kill()  # kill -9 of every process: the dataflow's last snapshot is from before the payments
    sp.start()
    # The dataflow folds the log again and puts the same actions again; a third payment shows it is through.
    assert sp.post_stripe("acme-stripe", payment_intent_succeeded("evt_big_3", "pi_big_3", 30_000)).status_code == 200
    wait_for(lambda: len(deliveries(sp, "big-order")) >= 3 and len(receiver.delivered_ids()) >= 3, 60,
             "the third big order after the restart")
    assert len(deliveries(sp, "big-order")) == 3
    ids = receiver.delivered_ids()
    assert len(ids) == len(set(ids)) == 3, f"a webhook-id arrived twice: {ids}"


def test_abandoned_cart_reminders_through_the_events_api(storepulse: Storepulse, receiver: Receiver,
                                                        smtp: SmtpServer) -> None:
    sp = storepulse.start()
    now = int(time.time() * 1000)
    t = now - 32 * MIN - 2000  # carts abandoned at now - 2m02s, reminders due at now - 2s: sent once W = wall - 5s passes that
    item = {"product": "mug", "qty": 1, "price": "25.00"}

    def add(customer: str, at: int) -> dict[str, object]:
        return {"type": "add_to_cart", "id": f"add-{customer}", "time": at, "customer": customer,
                "cart": f"cart-{customer}", "currency": "EUR", "items": [item]}

    def buy(customer: str, at: int, cart: bool) -> dict[str, object]:
        return {"type": "order_paid", "id": f"buy-{customer}", "time": at, "customer": customer,
                "order": f"order-{customer}", "amount": "25.00", "currency": "EUR", "items": [item],
                **({"cart": f"cart-{customer}"} if cart else {})}

    def identify(customer: str) -> dict[str, object]:  # the profile's e-mail address: where "customer" mails go
        return {"type": "identify", "id": f"id-{customer}", "time": t - MIN, "visitor": f"v-{customer}",
                "customer": customer, "properties": {"email": f"{customer}@shopper.example"}}

    r = sp.post_events({"events": [
        identify("quiet"), identify("in-time"), identify("during"),
        add("quiet", t),  # abandoned, no further event: reminded after the wait
        add("in-time", t), buy("in-time", t + 10 * MIN, cart=True),  # bought before abandon_after: never abandoned
        add("during", t), buy("during", t + 31 * MIN, cart=False),  # bought after the abandonment, during the wait
    ]})
    assert r.status_code == 200, r.text
    due = t + 30 * MIN + 2 * MIN
    wait_for(lambda: len(deliveries(sp, "reminder")) >= 1 and receiver.delivered_ids(), 60, "the reminder")
    received_at = int(time.time() * 1000)
    sent = deliveries(sp, "reminder")
    assert sorted((d.action.channel, d.action.subject, d.action.due_at) for d in sent) == [
        ("crm", "quiet", due), ("customer-mail", "quiet", due)]
    wait_for(lambda: len(smtp.mailbox.mails) >= 1, 30, "the reminder e-mail")
    [mail] = smtp.mailbox.mails
    assert (mail["To"], mail["Subject"]) == ("quiet@shopper.example", "Abandoned cart: €25.00")
    # Released by the wall clock once the watermark (wall clock - 5 s allowed lateness) passed its due.
    assert received_at >= due + 5000
    # the Carts view's lists name the shopper by their profile (the cart's events typed no name or e-mail)
    listed = sp.get("/api/v1/orgs/acme/carts", period="7d").json()["latest_carts"]
    assert [(c["person"], c["buyer"], c["name"]) for c in listed if c["cart"] == "cart-quiet"] == [
        ("quiet", "", "quiet@shopper.example")]
    body = receiver.json_bodies()[-1]
    assert body["data"]["title"] == "Abandoned cart: €25.00" and body["data"]["subject"] == "quiet"
    # The three carts share one due time, so the reminders of "in-time" (never abandoned) and "during"
    # (cancelled) were decided in the same tick as "quiet"'s: had they fired, they would be in the outbox now.
    assert len(receiver.delivered_ids()) == 1 and len(smtp.mailbox.mails) == 1

    # The reminder worked: "quiet" comes back and buys the cart. The automation's results say so.
    def results() -> dict[str, Any]:
        body: dict[str, Any] = sp.get("/api/v1/orgs/acme/automations", period="7d").json()
        return body

    def shown(browser: Browser) -> Locator:  # the dashboard's Automations view, the reminder's row, over 7 days
        page = browser.new_page(locale="en-US")
        page.goto(f"{sp.base}/#token=acme-token-0123456789&view=automations")
        page.select_option("#period", "7d")
        return page.locator("#view-automations table >> nth=0").locator("tbody tr", has_text="reminder").locator("td.num")

    assert results()["results"]["reminder"]["recovered_carts"] == 0
    with chromium() as browser:
        expect(shown(browser)).to_have_text(["2", "0", "€0.00"])  # delivered, carts recovered, their value
        assert sp.post_events({"events": [buy("quiet", int(time.time() * 1000), cart=True)]}).status_code == 200
        got = wait_json(sp, results, lambda b: b["results"]["reminder"]["recovered_carts"] == 1, 30, "the recovered cart")
        assert got["results"]["reminder"] == {
            "fired": 1, "deliveries": {"pending": 0, "delivered": 2, "dead": 0, "cancelled": 0},
            "reminded_carts": 1, "recovered_carts": 1, "recovered_value": {"amount": 2500, "currency": "EUR", "exponent": 2}}
        assert got["results_complete"] is True and got["currency"] == "EUR"
        expect(shown(browser)).to_have_text(["2", "1", "€25.00"])


def test_a_guest_s_abandoned_checkout_is_mailed_to_the_address_typed_at_it(storepulse: Storepulse, smtp: SmtpServer) -> None:
    """No account, no customer event: a Shopify guest's checkout says who they are, the reminder reaches
    them; and a Stripe guest's paid session names its buyer in the customers list."""
    sp = storepulse.start()
    t = int(time.time() * 1000) - 32 * MIN - 2000  # abandoned at now - 2m02s, the reminder due at now - 2s
    at = dt.datetime.fromtimestamp(t / 1000, dt.UTC).isoformat()
    checkout = orjson.dumps({
        "token": "ck-gia", "cart_token": "cart-gia", "email": "Gia@Guest.Example", "customer": None,
        "created_at": at, "updated_at": at, "presentment_currency": "EUR", "total_price": "25.00",
        "billing_address": {"first_name": "Gia", "last_name": "Guest", "name": "Gia Guest"},
        "line_items": [{"variant_id": 7, "title": "Mug", "quantity": 1, "price": "25.00"}]})
    r = httpx.post(f"{sp.base}/webhooks/shopify/acme-shop", content=checkout, timeout=10, headers={
        "Content-Type": "application/json", "X-Shopify-Topic": "checkouts/create", "X-Shopify-Event-Id": "ev-gia",
        "X-Shopify-Hmac-Sha256": shopify.sign(checkout, SHOP_SECRET)})
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    wait_for(lambda: len(smtp.mailbox.mails) >= 1, 60, "the reminder e-mail")
    [mail] = smtp.mailbox.mails
    assert (mail["To"], mail["Subject"]) == ("Gia@Guest.Example", "Abandoned cart: €25.00")  # as typed, not the key
    assert "- 1 × Mug (€25.00)" in mail.get_body(("plain",)).get_content()  # the checkout line's title, not id 7
    latest = sp.get("/api/v1/orgs/acme/carts", period="all").json()["latest_carts"]
    assert [(c["person"], c["buyer"], c["status"]) for c in latest if c["cart"] == "cart-gia"] == [
        ("gia@guest.example", "Gia Guest", "abandoned")]
    assert sorted((d.action.channel, d.action.subject) for d in deliveries(sp, "reminder")) == [
        ("crm", "gia@guest.example"), ("customer-mail", "gia@guest.example")]

    session = {"id": "cs_ken", "object": "checkout.session", "mode": "payment", "payment_status": "paid",
               "amount_total": 4200, "currency": "eur", "customer": None, "payment_intent": "pi_ken",
               "customer_details": {"email": "ken@guest.example", "name": "Ken Guest"}}
    body = orjson.dumps({"id": "evt_ken", "object": "event", "type": "checkout.session.completed",
                         "created": t // 1000 + 60, "data": {"object": session}})
    assert sp.post_stripe("acme-stripe", body).status_code == 200
    customers = wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/customers", period="all").json(),
                          lambda b: any(c["customer"] == "ken@guest.example" for c in b["customers"]), 30,
                          "the Stripe guest among the customers")["customers"]
    assert [(c["email"], c["name"], c["orders"]) for c in customers if c["customer"] == "ken@guest.example"] == [
        ("ken@guest.example", "Ken Guest", 1)]
    orders = sp.get("/api/v1/orgs/acme/orders", period="all", sort="latest").json()["orders"]
    assert [(o["customer"], o["buyer"]) for o in orders if o["order"] == "pi_ken"] == [("ken@guest.example", "Ken Guest")]


def test_an_automation_defined_and_deleted_through_the_api(storepulse: Storepulse, receiver: Receiver) -> None:
    sp = storepulse.start()
    headers = {"Authorization": "Bearer acme-token-0123456789"}
    url = f"{sp.base}/api/v1/orgs/acme/automations/any-order"
    body = {"trigger": "order.paid", "send": ["crm"], "templates": {"subject": "Paid: {{ amount }}"}}
    r = httpx.put(url, json=body, headers=headers, timeout=10)
    assert r.status_code == 202, r.text
    bad = httpx.put(url, json={**body, "if": {"order_value": {"gte": "ten"}}}, headers=headers, timeout=10)
    assert bad.status_code == 400 and bad.json()["error"].startswith("$.if.order_value.gte:")
    wait_for(lambda: httpx.get(url, headers=headers, timeout=10).status_code == 200, 30, "the definition in force")
    assert httpx.get(url, headers=headers, timeout=10).json()["source"] == "api"

    assert sp.post_stripe("acme-stripe", payment_intent_succeeded("evt_s1", "pi_s1", 500)).status_code == 200
    wait_for(lambda: len(receiver.delivered_ids()) >= 1, 30, "the API-defined automation's webhook")
    assert [b["data"]["title"] for b in receiver.json_bodies()] == ["Paid: €5.00"]

    assert httpx.delete(url, headers=headers, timeout=10).status_code == 202
    wait_for(lambda: httpx.get(url, headers=headers, timeout=10).status_code == 404, 30, "the definition gone")
    assert sp.post_stripe("acme-stripe", payment_intent_succeeded("evt_s2", "pi_s2", 600)).status_code == 200
    assert sp.post_stripe("acme-stripe", payment_intent_succeeded("evt_b9", "pi_b9", 50_000)).status_code == 200
    wait_for(lambda: len(receiver.delivered_ids()) >= 2, 30, "the big order's webhook, after the small one")
    assert [b["data"]["automation"] for b in receiver.json_bodies()] == ["any-order", "big-order"]
    assert [d.action.cause for d in deliveries(sp, "any-order")] == ["order.paid:acme-stripe:pi_s1"]


def test_a_daily_digest_is_sent_with_yesterday_s_figures(tmp_path: Path, receiver: Receiver, smtp: SmtpServer) -> None:
    """A daily digest schedule: once the watermark passes its time, one webhook with the day before's
    figures (notifier/digests.py fills them from the read model) and an e-mail in German. Its time is the
    latest whole hour at least 10 minutes ago, so whatever the hour the test runs at, the watermark
    (the wall clock minus 5 s) has passed it and the firing is under a day old: nothing to wait for."""
    import datetime as dt
    from zoneinfo import ZoneInfo

    tz = ZoneInfo("Europe/Berlin")
    firing = (dt.datetime.now(tz) - dt.timedelta(minutes=10)).replace(minute=0, second=0, microsecond=0)
    yesterday = firing.date() - dt.timedelta(days=1)  # the day before the firing's: what the digest covers
    noon = int(dt.datetime.combine(yesterday, dt.time(12), tz).timestamp() * 1000)
    digest = config(receiver.url, smtp.port) + f"""
[orgs.acme.channels.owner]
kind = "email"
to = ["owner@acme.example"]

[orgs.acme.automations.morning]
trigger = "schedule"
schedule = {{ at = "{firing:%H:%M}" }}
digest = "day"
locale = "de"
send = ["crm", "owner"]
"""
    sp = Storepulse(tmp_path, config=digest).start()
    try:
        def paid(n: int, at: int, amount: str) -> dict[str, object]:
            return {"type": "order_paid", "id": f"paid-{n}", "time": at, "customer": f"c{n}", "order": f"o{n}",
                    "amount": amount, "currency": "EUR", "items": [{"product": "mug", "qty": 2, "price": "10.00"}]}

        r = sp.post_events({"events": [paid(1, noon, "20.00"), paid(2, noon + MIN, "20.00"), paid(3, noon + 2 * MIN, "20.00")]})
        assert r.status_code == 200, r.text
        now = int(time.time() * 1000)
        assert sp.post_events({"events": [paid(4, now, "9.99")]}).status_code == 200  # W passes the firing
        wait_for(lambda: receiver.delivered_ids() and smtp.mailbox.mails, 60, "the digest")
        [body] = receiver.json_bodies()
        figures = body["data"]
        assert (figures["span"], figures["first"], figures["last"]) == ("day", yesterday.isoformat(), yesterday.isoformat())
        assert figures["revenue"] == {"value": 6000, "baseline": 0, "change": None}
        assert figures["orders"]["value"] == 3
        assert figures["top_products"] == [{"product": "mug", "name": "", "units": 6, "revenue": 6000}]
        [mail] = smtp.mailbox.mails
        assert mail["To"] == "owner@acme.example"
        assert mail["Subject"].startswith(f"acme: {yesterday.day}. ") and "60,00" in mail["Subject"]
        assert "Umsatz: 60,00\u00a0€ (noch kein Vergleich möglich)" in mail.get_body(("plain",)).get_content()
        time.sleep(2)  # the tick after: the schedule fired once, not at every tick
        assert len(receiver.delivered_ids()) == 1 and len(smtp.mailbox.mails) == 1
    finally:
        sp.ensure_stopped()


def test_a_stripe_payment_delivered_twice_is_one_slack_message_one_webhook_and_one_mail(
        tmp_path: Path, receiver: Receiver, smtp: SmtpServer) -> None:
    """The issue's first proof, in one run: Slack (a local fake that answers 429 with Retry-After first),
    a signed webhook (verified with `standardwebhooks` by the receiver) and an e-mail, once each."""
    slack = Receiver()  # Slack does not sign
    slack.script = [(429, {"Retry-After": "1"})]
    three = config(receiver.url, smtp.port).replace('send = ["crm"]\n', 'send = ["crm", "ops", "owner"]\n', 1) + f"""
[orgs.acme.channels.ops]
kind = "slack"
url = "{slack.url}"
allow_private = true

[orgs.acme.channels.owner]
kind = "email"
to = ["owner@acme.example"]
"""
    sp = Storepulse(tmp_path, config=three).start()
    try:
        body = payment_intent_succeeded("evt_twice", "pi_twice", 25_000)
        for _ in range(2):  # Stripe delivers it twice: the same event id
            assert sp.post_stripe("acme-stripe", body).status_code == 200
        wait_for(lambda: len(slack.json_bodies()) >= 1 and receiver.delivered_ids() and smtp.mailbox.mails, 60,
                 "Slack, the webhook and the e-mail")
        # a later payment under the threshold: once it is folded, the first has had every chance to repeat
        assert sp.post_stripe("acme-stripe", payment_intent_succeeded("evt_small", "pi_small", 500)).status_code == 200
        wait_for(lambda: sp.figures("acme").json()["paid_orders"] == 2, 30, "the second payment folded")
        time.sleep(2.5)  # past Slack's Retry-After and the one-a-second gate: a repeat would be here by now
        assert [r.status for r in slack.requests] == [429, 200]
        [message] = slack.json_bodies()
        assert "250.00" in message["text"]
        assert len(receiver.delivered_ids()) == 1 and receiver.json_bodies()[0]["data"]["data"]["amount"] == 25_000
        [mail] = smtp.mailbox.mails
        assert mail["To"] == "owner@acme.example" and mail["Message-ID"].startswith("<msg_")
        assert len({d.action.key for d in deliveries(sp, "big-order")}) == 1 and len(deliveries(sp, "big-order")) == 3
    finally:
        sp.ensure_stopped()
        slack.close()


def test_the_channels_card_sends_a_test_through_each_channel(storepulse: Storepulse, receiver: Receiver, smtp: SmtpServer) -> None:
    """The Automations view lists the channels (where each sends, no secret) and sends a test through one at a
    click: a signed webhook the receiver verifies, an e-mail to the address asked for, and a receiver's
    refusal shown as the notifier saw it."""
    sp = storepulse.start()
    with chromium() as browser:
        page = browser.new_page(locale="en-US")
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{sp.base}/#token=acme-token-0123456789&view=automations")
        rows = page.locator('#view-automations [data-card="channels"] tbody tr')
        expect(rows).to_have_count(2)
        expect(rows.nth(0).locator("td")).to_have_text(["crm", "webhook", f"http://127.0.0.1:{receiver.port}/…", "on", "0",
                                                         "Send a test"])
        expect(rows.nth(1).locator("td >> nth=2")).to_have_text("each customer's e-mail address")
        assert WHSEC not in page.content()
        page.locator('[data-test="crm"]').click()
        expect(page.locator('[data-test-result="crm"]')).to_have_text(re.compile(r"^Delivered in \d[\d,]* ms \(HTTP 200\)\.$"))
        assert len(receiver.delivered_ids()) == 1  # signed: the receiver verified it (else 401, not counted)
        page.once("dialog", lambda d: d.accept("owner@acme.example"))
        page.locator('[data-test="customer-mail"]').click()
        expect(page.locator('[data-test-result="customer-mail"]')).to_contain_text("Delivered in ")
        wait_for(lambda: len(smtp.mailbox.mails) == 1, 10, "the test e-mail")
        assert smtp.mailbox.mails[0]["To"] == "owner@acme.example"
        receiver.status = 500
        page.locator('[data-test="crm"]').click()
        expect(page.locator('[data-test-result="crm"]')).to_have_text(re.compile(r"^Not delivered: .*500"))
        assert errors == [], errors


def test_a_customer_entering_a_segment_is_mailed_at_their_address(storepulse: Storepulse, smtp: SmtpServer) -> None:
    """A segment and a "welcome to VIP" automation defined through the API; a shopper who signed in and then
    spends over the threshold through the events API gets the e-mail, at their profile's address, named."""
    sp = storepulse.start()
    auth = {"Authorization": "Bearer acme-token-0123456789"}
    r = httpx.put(f"{sp.base}/api/v1/orgs/acme/segments/vip", json={"name": "VIP", "rule": {"spent": {"gte": "100.00"}}},
                  headers=auth, timeout=10)
    assert r.status_code == 202, r.text
    welcome = {"trigger": "segment.entered", "segment": "vip", "send": ["customer-mail"],
               "templates": {"subject": "Welcome to VIP, {{ name }}"}}
    r = httpx.put(f"{sp.base}/api/v1/orgs/acme/automations/vip-welcome", json=welcome, headers=auth, timeout=10)
    assert r.status_code == 202, r.text
    wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/automations/vip-welcome").json(),
              lambda b: b.get("segment") == "vip", what="the automation in force")
    now = int(time.time() * 1000)
    r = sp.post_events({"events": [
        {"type": "identify", "id": "id-vip", "time": now - 2 * MIN, "visitor": "v-vip", "customer": "vip-1",
         "properties": {"email": "ann@shopper.example", "name": "Ann Example"}},
        {"type": "order_paid", "id": "buy-vip", "time": now - MIN, "customer": "vip-1", "order": "order-vip",
         "amount": "150.00", "currency": "EUR", "items": [{"product": "mug", "qty": 6, "price": "25.00"}]}]})
    assert r.status_code == 200, r.text
    wait_for(lambda: len(smtp.mailbox.mails) >= 1, 30, "the welcome e-mail")
    [mail] = smtp.mailbox.mails
    assert (mail["To"], mail["Subject"]) == ("ann@shopper.example", "Welcome to VIP, Ann Example")
