"""The dashboard page in a real browser: live figures appear, exactly formatted, as webhooks arrive.

Runs Debian's Chromium (/usr/bin/chromium) headless through Playwright against a real `storepulse up`
(embedded SQLite; the backends themselves are covered by test_e2e_revenue.py). One fresh instance
for the module, so the figures start at zero and the formatted texts are exact.
"""

from __future__ import annotations

import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.chromium import chromium
from tests.helpers import TOKENS, Storepulse, charge_refunded, payment_intent_succeeded, today_clear_of_midnight

TIMEOUT_MS = 15_000
FLASHED = re.compile(r"\bchanged\b")


def uid() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    server = Storepulse(tmp_path_factory.mktemp("sp-browser")).start()
    yield server
    server.ensure_stopped()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    # A pinned locale and zone make Intl.NumberFormat(undefined, ...) deterministic: "€123.45".
    context = browser.new_context(locale="en-US", timezone_id="Europe/Berlin", viewport={"width": 1100, "height": 600})
    context.set_default_timeout(TIMEOUT_MS)
    pg = context.new_page()
    errors: list[str] = []
    missing: list[str] = []  # a page file (module, style, icon) the server does not have
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("response", lambda r: missing.append(r.url) if r.status == 404 and "/api/" not in r.url else None)
    yield pg
    context.close()
    assert errors == [], f"uncaught errors in the page: {errors}"
    assert missing == [], f"files the page asked for and did not get: {missing}"


def cell(page: Page, figure: str):  # a playwright Locator
    return page.locator(f'#figures td[data-figure="{figure}"]')


def test_dashboard_shows_live_figures_exactly(sp: Storepulse, page: Page) -> None:
    today_clear_of_midnight(seconds=180)  # the "today" column is the server's: it must not turn over midway
    page.goto(f"{sp.base}/#token={TOKENS['acme']}")
    expect(page.locator("#figures")).to_be_visible()
    expect(page.locator("#status")).to_have_text("live")
    expect(page.locator("#org")).to_contain_text("acme")
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#error")).to_have_text("")
    # The token leaves the address bar once read.
    assert "token" not in page.url
    expect(page.locator("#store option")).to_have_count(4)  # All stores, acme-eu2, acme-site, acme-stripe
    expect(page.locator("#store option[value='tokyo-stripe']")).to_have_count(0)
    expect(page.locator("#figures td[data-figure]")).to_have_count(5 * 4)
    # Control: a fresh instance starts at zero, so the texts below are the payments' alone.
    expect(cell(page, "gross_revenue.today")).to_have_text("€0.00")
    expect(cell(page, "paid_orders.all")).to_have_text("0")

    pi, ch = f"pi_{uid()}", f"ch_{uid()}"
    r = sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", pi, 12_345))
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    expect(cell(page, "paid_orders.today")).to_have_text("1")
    expect(cell(page, "gross_revenue.today")).to_have_text("€123.45")
    expect(cell(page, "gross_revenue.all")).to_have_text("€123.45")
    expect(cell(page, "net_revenue.today")).to_have_text("€123.45")
    expect(cell(page, "aov.today")).to_have_text("€123.45")
    # What a push changed flashes; what it did not change does not.
    expect(cell(page, "gross_revenue.today")).to_have_class(FLASHED)
    expect(cell(page, "refunds.today")).to_have_text("€0.00")
    expect(cell(page, "refunds.today")).not_to_have_class(FLASHED)

    r = sp.post_stripe("acme-stripe", charge_refunded(f"evt_{uid()}", ch, pi, 12_345, 2_345))
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    expect(cell(page, "refunds.today")).to_have_text("€23.45")
    expect(cell(page, "net_revenue.today")).to_have_text("€100.00")
    expect(cell(page, "gross_revenue.today")).to_have_text("€123.45")
    expect(cell(page, "paid_orders.today")).to_have_text("1")

    # A payment to the other store moves the total but not acme-stripe's own figures.
    r = sp.post_stripe("acme-eu2", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 1_000_000))
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    expect(cell(page, "gross_revenue.today")).to_have_text("€10,123.45")
    expect(cell(page, "paid_orders.today")).to_have_text("2")
    expect(cell(page, "net_revenue.7d")).to_have_text("€10,100.00")

    page.select_option("#store", "acme-stripe")
    expect(cell(page, "gross_revenue.today")).to_have_text("€123.45")
    expect(cell(page, "gross_revenue.today")).not_to_have_class(FLASHED)  # a switch is not a change
    expect(cell(page, "net_revenue.today")).to_have_text("€100.00")
    expect(cell(page, "paid_orders.today")).to_have_text("1")
    expect(cell(page, "net_revenue.30d")).to_have_text("€100.00")
    # The selection holds while figures keep arriving.
    r = sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 5))
    assert r.status_code == 200, r.text
    expect(cell(page, "gross_revenue.today")).to_have_text("€123.50")
    expect(cell(page, "paid_orders.today")).to_have_text("2")
    expect(cell(page, "aov.today")).to_have_text("€61.75")
    page.select_option("#store", "acme-eu2")
    expect(cell(page, "gross_revenue.today")).to_have_text("€10,000.00")
    page.select_option("#store", "")
    expect(cell(page, "gross_revenue.today")).to_have_text("€10,123.50")

    # The page agrees with the read API.
    api = sp.figures("acme", "today", store="acme-stripe").json()
    assert api["gross_revenue"] == {"amount": 12_350, "currency": "EUR", "exponent": 2} and api["paid_orders"] == 2

    shot = Path(os.environ.get("STOREPULSE_SCREENSHOT_DIR") or tempfile.gettempdir()) / "storepulse-dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 0


def test_dashboard_refuses_a_wrong_token(sp: Storepulse, page: Page) -> None:
    page.goto(f"{sp.base}/#token=not-a-valid-token")
    expect(page.locator("#error")).to_have_text("the bearer token is not valid")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#figures")).to_be_hidden()
    expect(page.locator("#status")).to_have_text("not connected")  # and it does not retry a refused token
    # Control: the right token typed into the form opens the dashboard in the same page.
    page.fill("#token", TOKENS["acme"])
    page.click("#login button")
    expect(page.locator("#figures")).to_be_visible()
    expect(page.locator("#status")).to_have_text("live")
    expect(page.locator("#error")).to_have_text("")
    expect(page.locator("#org")).to_contain_text("acme")
    expect(page.locator("#login")).to_be_hidden()
    # On a phone-sized screen the table scrolls inside the page instead of widening it.
    page.set_viewport_size({"width": 400, "height": 700})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
