"""The write side against hostile senders, over real HTTP: no label value a sender chooses, no
credential kept from a refused delivery's headers."""

from __future__ import annotations

import base64
import hmac
import json
import os
import random
import re
import signal
import string
import subprocess
import time
from collections.abc import Iterator
from hashlib import sha256
from pathlib import Path

import httpx
import pytest

from core.config import ConfigError, parse_config
from ingest import metrics, shopify, stripe, woocommerce
from state.rejected import RejectedDelivery, stored_bytes
from storepulse import STOREPULSE
from storepulse.configfile import demo_credentials
from tests.helpers import SECRETS, TOKENS, RedisServer, Storepulse, free_port, recv_json, stripe_signature, wait_for

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
    def samples(text):
        return {line.rpartition(" ")[0] for line in text.splitlines() if line and not line.startswith("#")}
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


# --- 2. the rejected store, bounded in bytes, over HTTP on both backends ------------------------------

BOUNDS = ["--rejected-keep-bytes", "1KiB", "--rejected-store-bytes", "16KiB", "--rejected-total-bytes", "40000"]


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def bounded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    redis_url = None
    if request.param == "redis":
        server = RedisServer(tmp_path_factory.mktemp("redis"))
        request.addfinalizer(server.stop)
        redis_url = server.url
    sp = Storepulse(tmp_path_factory.mktemp(f"sp-bounded-{request.param}"), redis_url)
    sp.extra_args = BOUNDS
    sp.start()
    yield sp
    sp.ensure_stopped()


def kept_size(record: dict[str, object]) -> int:
    """stored_bytes of a record as the API shows it (its body whole: under the 4 KiB preview)."""
    r = RejectedDelivery(str(record["id"]), 0.0, str(record["provider"]), str(record["store"]), None, 400,
                         str(record["reason"]), record["headers"], str(record["body"]).encode())  # type: ignore[arg-type]
    return stored_bytes(r)


def test_refused_deliveries_are_kept_within_byte_bounds(bounded: Storepulse) -> None:
    sp = bounded
    with httpx.Client(base_url=sp.base, timeout=10) as client:
        for i in range(60):  # to a configured store, badly signed, 5,000-byte bodies
            body = f"{i:04d}".encode() + b"x" * 4996
            r = client.post("/webhooks/stripe/acme-stripe", content=body, headers={
                "Content-Type": "application/json", "Stripe-Signature": stripe_signature(body, "whsec_wrong")})
            assert r.status_code == 400
        for i in range(200):  # to 200 made-up store ids, with a 20 KiB header
            r = client.post(f"/webhooks/stripe/made-up-{i:04d}", content=b"{}", headers={"User-Agent": "u" * 20_000})
            assert r.status_code == 404
    listed = sp.get("/api/v1/orgs/acme/rejected", store="acme-stripe", limit=1000).json()
    one = kept_size(listed["rejected"][0])
    kept = 16 * 1024 // one
    assert [x["body"][:4] for x in listed["rejected"]] == [f"{i:04d}" for i in reversed(range(60 - kept, 60))]
    assert all((x["body_bytes"], x["body_kept_bytes"], x["body_truncated"]) == (5000, 1024, True)
               for x in listed["rejected"])
    assert all(kept_size(x) == one for x in listed["rejected"])
    assert listed["dropped"] == {"count": 60 - kept, "bytes": (60 - kept) * one}

    out = sp.cli("rejected", "list", "--limit", "1000")
    assert out.returncode == 0, out.stderr
    unknown = [line for line in out.stdout.splitlines() if "made-up-" in line]
    shown = sp.cli("rejected", "show", unknown[0].split()[0])
    record = json.loads(shown.stdout)
    assert record["headers_truncated"] is True and len(json.dumps(record["headers"], separators=(",", ":"))) <= 1024
    assert set(record["headers"]["user-agent"]) <= {"u"}
    junk = kept_size(record)
    kept_junk = 16 * 1024 // junk
    assert len(unknown) == kept_junk
    assert [line.split()[3] for line in unknown] == [f"stripe/made-up-{i:04d}" for i in reversed(range(200 - kept_junk, 200))]
    assert f"store acme-stripe: {kept} kept ({kept * one} bytes), {60 - kept} dropped to stay within the limits " \
           f"({(60 - kept) * one} bytes)" in out.stdout
    assert f"unknown stores: {kept_junk} kept ({kept_junk * junk} bytes), {200 - kept_junk} dropped to stay within " \
           f"the limits ({(200 - kept_junk) * junk} bytes)" in out.stdout

    text = httpx.get(f"{sp.base}/metrics").text
    assert series(text, "storepulse_ingest_rejected_dropped_total") == {}  # no labels
    dropped = [line for line in text.splitlines() if line.startswith("storepulse_ingest_rejected_dropped_")]
    assert f"storepulse_ingest_rejected_dropped_total {float(60 - kept + 200 - kept_junk)}" in dropped
    assert f"storepulse_ingest_rejected_dropped_bytes_total {float((60 - kept) * one + (200 - kept_junk) * junk)}" in dropped


def test_a_cut_body_is_not_redriven(bounded: Storepulse) -> None:
    listed = bounded.get("/api/v1/orgs/acme/rejected", store="acme-stripe", limit=1).json()["rejected"]
    out = bounded.cli("rejected", "redrive", listed[0]["id"])
    assert out.returncode == 1
    assert f"{listed[0]['id']}: still rejected (413): only the first 1024 of its 5000 bytes were kept" in out.stdout


# --- 5. organisation tokens: hashed, compared in constant time ---------------------------------------

HASHED_TOKEN = "hashed-org-token-0123456789"
HASHED_CONFIG = f"""
[orgs.hashed]
currency = "EUR"
token = "sha256:{sha256(HASHED_TOKEN.encode()).hexdigest().upper()}"

[orgs.hashed.stores.hashed-site]
provider = "events"
secret = "hashed-site-key-0123456789"

[orgs.plain]
currency = "EUR"
token = "plain-org-token-0123456789"
"""


def test_config_holds_only_token_hashes() -> None:
    config = parse_config(HASHED_CONFIG, {})
    assert config.org_for_token(HASHED_TOKEN).id == "hashed"  # type: ignore[union-attr]
    assert config.org_for_token("plain-org-token-0123456789").id == "plain"  # type: ignore[union-attr]
    for wrong in ("", HASHED_TOKEN[:-1], HASHED_TOKEN + "x", sha256(HASHED_TOKEN.encode()).hexdigest(),
                  f"sha256:{sha256(HASHED_TOKEN.encode()).hexdigest()}", "\ud800"):
        assert config.org_for_token(wrong) is None, wrong
    assert {org.token_sha256 for org in config.orgs.values()} == {
        sha256(HASHED_TOKEN.encode()).digest(), sha256(b"plain-org-token-0123456789").digest()}
    assert not any(isinstance(v, str) and "token-0123456789" in v for org in config.orgs.values() for v in vars_of(org))


def vars_of(obj: object) -> list[object]:
    return [getattr(obj, name) for name in obj.__slots__]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("token", "message"), [
    ("sha256:abc", "orgs.hashed.token: sha256: must be followed by the 64 hex digits"),
    ("sha256:" + "g" * 64, "orgs.hashed.token: sha256: must be followed by the 64 hex digits"),
    ("short", "orgs.hashed.token: must be at least 16 characters"),
    (f"sha256:{sha256(b'plain-org-token-0123456789').hexdigest()}", "the same token is used by orgs.hashed"),
])
def test_bad_token_hashes_are_named(token: str, message: str) -> None:
    text = HASHED_CONFIG.replace(HASHED_CONFIG.split("\n")[3], f'token = "{token}"')
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_config(text, {})


def test_a_hashed_token_opens_the_api_and_the_websocket(tmp_path: Path) -> None:
    sp = Storepulse(tmp_path, config=HASHED_CONFIG).start()
    try:
        url = f"{sp.base}/api/v1/orgs/hashed/figures"
        assert httpx.get(url, headers={"Authorization": f"Bearer {HASHED_TOKEN}"}).status_code == 200
        hexdigest = sha256(HASHED_TOKEN.encode()).hexdigest()
        for wrong in (hexdigest, f"sha256:{hexdigest}", HASHED_TOKEN[:-1] + "X"):  # the hash is not the token
            r = httpx.get(url, headers={"Authorization": f"Bearer {wrong}"})
            assert (r.status_code, r.json()) == (401, {"error": "the bearer token is not valid"})
        with sp.ws(HASHED_TOKEN) as conn:
            assert recv_json(conn)["type"] == "snapshot"
        with sp.ws(hexdigest) as conn:
            assert recv_json(conn) == {"type": "error", "status": 401, "message": "the bearer token is not valid"}
        # Events-API keys are compared in constant time too; a key one character off is refused.
        event = {"type": "page_view", "id": "pv-1", "time": int(time.time() * 1000) - 60_000, "visitor": "v"}
        assert sp.post_events([event], key="hashed-site-key-0123456789").status_code == 200
        bad = sp.post_events([event], key="hashed-site-key-012345678X")
        assert (bad.status_code, bad.json()) == (400, {"error": "the API key is not valid for any events store"})
    finally:
        sp.ensure_stopped()


# --- 6. no token or secret in the banner or the log of a real config ---------------------------------

def test_a_real_config_prints_no_token_and_no_secret(tmp_path: Path) -> None:
    sp = Storepulse(tmp_path).start()
    try:
        # Give the log every chance: a refused delivery, a bad token on the API and the WebSocket.
        assert sp.post_stripe("acme-stripe", b'{"id": "evt_x"}', secret="whsec_wrong").status_code == 400
        assert sp.figures("acme", token="not-the-token-at-all").status_code == 401
        with sp.ws("not-the-token-at-all") as conn:
            assert recv_json(conn)["type"] == "error"
        assert sp.stop() == 0
    finally:
        sp.ensure_stopped()
    out = sp.logfile.read_text()
    assert f"storepulse up ready: {sp.base}" in out
    assert f"  org acme: dashboard {sp.base}/ (sign in with orgs.acme.token of {sp.config})" in out
    assert f"    store acme-stripe (stripe): POST {sp.base}/webhooks/stripe/acme-stripe\n" in out
    assert f"    store acme-site (events API): POST {sp.base}/v1/events  Authorization: Bearer <its secret>\n" in out
    for secret in [*TOKENS.values(), *SECRETS.values()]:
        assert secret not in out, secret
    assert "whsec_" not in out and "token=" not in out


def test_the_demo_prints_its_own_token_and_secret_once(tmp_path: Path) -> None:
    http_port, ws_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([*STOREPULSE, "up", "--data-dir", str(tmp_path / "data"), "--http-port", str(http_port),
                                 "--ws-port", str(ws_port)], cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        wait_for(lambda: "storepulse up ready" in log.read_text() and "secret whsec_" in log.read_text(), 30,
                 "the demo's banner")
        token, secrets = demo_credentials(tmp_path / "data" / "demo.toml")
        text = log.read_text()
        assert text.count(f"/#token={token}") == 1 and text.count(token) == 1
        assert text.count(f"secret {secrets['demo-stripe']}") == 1
        r = httpx.get(f"http://127.0.0.1:{http_port}/api/v1/orgs/demo/figures", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(30)
