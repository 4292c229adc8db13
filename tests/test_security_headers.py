"""Every response of every HTTP app carries the security headers, over real HTTP; the dashboard's
Content-Security-Policy allows exactly its own inline script, style and WebSocket, and a real
headless Chromium runs the dashboard under it and refuses anything injected."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import expect

from tests.chromium import chromium
from tests.helpers import TOKENS, Storepulse, payment_intent_succeeded
from web.security import with_websocket

BASE_POLICY = "default-src 'self'; base-uri 'none'; form-action 'self'; object-src 'none'; frame-ancestors 'none'"
COMMON = {"x-content-type-options": "nosniff", "referrer-policy": "no-referrer", "x-frame-options": "DENY"}


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    server = Storepulse(tmp_path_factory.mktemp("sp-headers")).start()
    yield server
    server.ensure_stopped()


def test_every_response_carries_the_headers(sp: Storepulse) -> None:
    auth = {"Authorization": f"Bearer {TOKENS['acme']}"}
    responses = {
        "webhook 200": httpx.post(f"{sp.base}/webhooks/stripe/acme-stripe", content=b"", headers={}),
        "read API 200": httpx.get(f"{sp.base}/api/v1/orgs/acme/figures", headers=auth),
        "read API 401": httpx.get(f"{sp.base}/api/v1/orgs/acme/figures"),
        "events API 400": httpx.post(f"{sp.base}/v1/events", content=b"[]"),
        "metrics": httpx.get(f"{sp.base}/metrics"),
        "no such path": httpx.get(f"{sp.base}/no/such/path"),
        "wrong method": httpx.get(f"{sp.base}/webhooks/stripe/acme-stripe"),
    }
    responses["webhook 200"] = sp.post_stripe("acme-stripe", payment_intent_succeeded("evt_headers", "pi_headers", 100))
    assert [r.status_code for r in responses.values()] == [200, 200, 401, 400, 200, 404, 405]
    # The router's own errors are JSON like every other error (web/app.py).
    assert responses["no such path"].json() == {"error": "Not Found"}
    assert responses["wrong method"].json() == {"error": "Method Not Allowed"}
    assert responses["wrong method"].headers["allow"] == "POST"
    for what, r in responses.items():
        assert {k: r.headers.get(k) for k in COMMON} == COMMON, what
        assert r.headers["content-security-policy"] == BASE_POLICY, what
        assert len(r.headers.get_list("content-security-policy")) == 1, what


def test_the_dashboard_policy_allows_exactly_its_own_code(sp: Storepulse) -> None:
    r = httpx.get(f"{sp.base}/")
    assert r.status_code == 200 and {k: r.headers.get(k) for k in COMMON} == COMMON
    # The page has no inline code at all (ws_gateway/static/: modules and a stylesheet from our origin)
    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", r.text) == [] and "<style" not in r.text and " style=" not in r.text
    assert r.headers["content-security-policy"] == (
        f"{BASE_POLICY}; script-src 'self'; style-src 'self'; "
        f"connect-src 'self' ws://127.0.0.1:{sp.ws_port} wss://127.0.0.1:{sp.ws_port}")
    assert "unsafe-inline" not in r.headers["content-security-policy"]
    # The WebSocket origin follows the host the page was asked under; a Host header cannot add directives.
    local = httpx.get(f"http://localhost:{sp.http_port}/").headers["content-security-policy"]
    assert local.endswith(f"connect-src 'self' ws://localhost:{sp.ws_port} wss://localhost:{sp.ws_port}")
    forged = httpx.get(f"{sp.base}/", headers={"Host": "x;script-src *"}).headers["content-security-policy"]
    assert "*" not in forged and forged.count("script-src") == 1 and forged.count(";") == r.headers[
        "content-security-policy"].count(";")


def test_chromium_runs_the_dashboard_under_its_policy_and_refuses_injected_code(sp: Storepulse) -> None:
    with chromium() as browser:
        page = browser.new_page()
        console: list[str] = []
        page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
        page.goto(f"{sp.base}/#token={TOKENS['acme']}")
        expect(page.locator("#status")).to_have_text("live", timeout=15_000)  # script ran, WebSocket connected
        expect(page.locator("#figures")).to_be_visible()
        assert page.evaluate("getComputedStyle(document.querySelector('header')).display") == "flex"  # style applied
        assert [m for m in console if "Content Security Policy" in m] == []
        # Control: an inline script that is not the page's own is refused.
        page.evaluate("""() => { const s = document.createElement('script');
                                 s.textContent = 'window.injected = 1'; document.body.appendChild(s); }""")
        assert page.evaluate("window.injected") is None
        assert any("Content Security Policy" in m for m in console), console


@pytest.mark.parametrize(("host", "connect"), [
    ("shop.example", "connect-src 'self' ws://shop.example:8081 wss://shop.example:8081"),
    ("::1", "connect-src 'self' ws://[::1]:8081 wss://[::1]:8081"),
    ("x;script-src *", "connect-src 'self'"),
    ("a b", "connect-src 'self'"),
    (None, "connect-src 'self'"),
])
def test_the_websocket_source_is_a_host_or_nothing(host: str | None, connect: str) -> None:
    assert with_websocket(BASE_POLICY, host, 8081) == f"{BASE_POLICY}; {connect}"
