"""The write side against hostile senders, over real HTTP: no label value a sender chooses, no
credential kept from a refused delivery's headers."""

from __future__ import annotations

import base64
import hmac
import random
import string
import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import httpx
import pytest

from ingest import metrics, shopify, stripe, woocommerce
from tests.helpers import Storepulse

WOO_SECRET = "wc_hardening_secret_5f2b"
WOO_TOKEN = "hardening-token-0123456789"
WOO_CONFIG = f"""
[orgs.hard]
timezone = "UTC"
currency = "USD"
token = "{WOO_TOKEN}"

[orgs.hard.stores.woo-hard]
provider = "woocommerce"
secret = "{WOO_SECRET}"

[orgs.hard.stores.shop-hard]
provider = "shopify"
secret = "shpss_hardening_secret"
"""


def woo_sign(body: bytes, secret: str = WOO_SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, sha256).digest()).decode()


@pytest.fixture(scope="module")
def woo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    sp = Storepulse(tmp_path_factory.mktemp("sp-hard"), config=WOO_CONFIG).start()
    yield sp
    sp.ensure_stopped()


def series(text: str, name: str) -> dict[str, float]:
    """{'{labels}': value} of every sample of one metric in a Prometheus text exposition."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            labels, _, value = line[len(name):].rpartition(" ")
            out[labels] = float(value)
    return out


# --- 1. metrics: no label value from a sender ------------------------------------------------------

def test_every_topic_an_adapter_uses_has_its_own_label() -> None:
    assert set(stripe._HANDLERS) <= metrics._TOPICS["stripe"]
    assert set(woocommerce._HANDLERS) <= metrics._TOPICS["woocommerce"]
    assert set(shopify._HANDLERS) <= metrics._TOPICS["shopify"]


def test_made_up_topics_add_no_series(woo: Storepulse) -> None:
    """One captured Woo delivery replayed with 300 made-up topics (the topic header is not signed).

    The first test of the module to post: the series it expects new are new in this server."""
    body = b'{"id": 25}'
    rng = random.Random(7)
    topics = {"".join(rng.choices(string.ascii_lowercase + ".-_", k=rng.randint(1, 60))) for _ in range(300)}
    topics -= metrics._TOPICS["woocommerce"]
    before = httpx.get(f"{woo.base}/metrics").text
    with httpx.Client(base_url=woo.base, timeout=10) as client:
        for topic in sorted(topics):
            r = client.post("/webhooks/woocommerce/woo-hard", content=body, headers={
                "Content-Type": "application/json", "X-WC-Webhook-Topic": topic, "X-WC-Webhook-Signature": woo_sign(body)})
            assert r.status_code == 200 and r.json()["status"] == "ignored", (topic, r.text)
        # A known topic that is not used keeps its own label.
        r = client.post("/webhooks/woocommerce/woo-hard", content=body, headers={
            "Content-Type": "application/json", "X-WC-Webhook-Topic": "coupon.created",
            "X-WC-Webhook-Signature": woo_sign(body)})
        assert r.json()["status"] == "ignored"
    after = httpx.get(f"{woo.base}/metrics").text
    ignored = series(after, "storepulse_ingest_ignored_total")
    assert ignored == {
        '{provider="woocommerce",topic="other"}': len(topics) + series(before, "storepulse_ingest_ignored_total").get(
            '{provider="woocommerce",topic="other"}', 0),
        '{provider="woocommerce",topic="coupon.created"}': 1.0,
    }
    # The whole exposition grew by three series (each a _total and a _created line), not by 300.
    samples = lambda text: {line.rpartition(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}  # noqa: E731
    assert samples(after) - samples(before) == {
        f'storepulse_ingest_{name}{{{labels}}}' for name in ("ignored_total", "ignored_created")
        for labels in ('provider="woocommerce",topic="other"', 'provider="woocommerce",topic="coupon.created"')
    } | {f'storepulse_ingest_deliveries_{s}{{outcome="ignored",provider="woocommerce"}}' for s in ("total", "created")}
    assert not any(t in after for t in topics if len(t) > 8)


# --- 3. a refused delivery's headers: kept by allowlist ----------------------------------------------

CREDENTIALS = {
    "X-Auth-Token": "xat-4f1d9c0b7e",
    "X-Shopify-Access-Token": "shpat_0d1e2f3a4b5c",
    "Authorization": "Bearer sk_live_9a8b7c",
    "Proxy-Authorization": "Basic cHJveHk6cGFzcw==",
    "Cookie": "session=c0ffee1234",
    "X-Api-Key": "apikey-77aa88bb",
    "X-Forwarded-For": "203.0.113.9",
    "X-Custom-Thing": "whatever-value-31",
}


def test_refused_delivery_keeps_no_credential_header(woo: Storepulse) -> None:
    body = b'{"id": 820982911946154500, "note": "redaction"}'
    kept = {
        "Content-Type": "application/json",
        "User-Agent": "Shopify-Captain-Hook",
        "X-Shopify-Topic": "orders/paid",
        "X-Shopify-Hmac-Sha256": base64.b64encode(hmac.new(b"not-the-secret", body, sha256).digest()).decode(),
        "X-Shopify-Shop-Domain": "hard.myshopify.com",
        "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
        "X-Shopify-Triggered-At": "2026-01-05T10:00:00.000000Z",
    }
    r = httpx.post(f"{woo.base}/webhooks/shopify/shop-hard", content=body, headers={**kept, **CREDENTIALS}, timeout=10)
    assert r.status_code == 400 and "X-Shopify-Hmac-Sha256 does not match" in r.json()["error"]
    auth = {"Authorization": f"Bearer {WOO_TOKEN}"}
    listed = httpx.get(f"{woo.base}/api/v1/orgs/hard/rejected", params={"store": "shop-hard"}, headers=auth).json()
    [mine] = [x for x in listed["rejected"] if x["body"] == body.decode()]
    one = httpx.get(f"{woo.base}/api/v1/orgs/hard/rejected/{mine['id']}", headers=auth)
    assert one.status_code == 200
    headers = one.json()["headers"]
    for name in CREDENTIALS:
        assert headers[name.lower()] == "[redacted]", name
    for name, value in kept.items():
        assert headers[name.lower()] == value, name
    for value in CREDENTIALS.values():
        assert value not in one.text and value not in httpx.get(
            f"{woo.base}/api/v1/orgs/hard/rejected", headers=auth).text
