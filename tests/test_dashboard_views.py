"""The dashboard's views in a real browser (Debian's Chromium through Playwright) against a real
`storepulse up`: every view renders the shop of tests/dashboard_shop.py and moves within a second of
a signed Stripe webhook; languages, money by exponent, the CSV export against the API, axe-core on
every view, and the keyboard. The fixed shop is posted once for the module, at times relative to now.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
import json
import math
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.chromium import chromium
from tests.dashboard_shop import shop_events
from tests.helpers import (
    ORGS_TOML,
    REPO,
    TOKENS,
    Storepulse,
    checkout_session_completed,
    payment_intent_succeeded,
    today_clear_of_midnight,
    wait_json,
)

AXE = REPO / "tests" / "vendor" / "axe-core" / "axe.min.js"
TIMEOUT_MS = 15_000
LIVE_MS = 1_000  # a signed webhook shows on the page within this
VIEWS = ["overview", "orders", "carts", "products", "customers", "marketing", "segments", "automations", "connections"]
SHOP_NOW = int(time.time() * 1000)  # the shop's events are posted at times relative to this
_amounts = iter(range(200_000, 10**9, 10_000))  # each webhook's order beats every earlier one
# a channel for the automations view's automation (it waits 30 days: nothing is sent during the tests)
CONFIG = ORGS_TOML + '\n[orgs.acme.channels.ops]\nkind = "slack"\nurl = "https://hooks.slack.example/services/T0/B0/views"\n'


def uid() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture(scope="module")
def sp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Storepulse]:
    today_clear_of_midnight(seconds=300)  # "today" and "7 days" are the server's: they must not turn over midway
    server = Storepulse(tmp_path_factory.mktemp("sp-views"), config=CONFIG).start()
    try:
        r = server.post_events({"events": shop_events(SHOP_NOW)})
        assert r.status_code == 200, r.text
        wait_json(server, lambda: server.get("/api/v1/orgs/acme/figures", period="7d").json(),
                  lambda b: b["paid_orders"] == 20, what="the shop's 20 orders")
        yield server
    finally:
        server.ensure_stopped()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


def _context(browser: Browser, locale: str = "en-US", **kw: object) -> BrowserContext:
    context = browser.new_context(locale=locale, timezone_id="Europe/Berlin", viewport={"width": 1280, "height": 900},
                                  accept_downloads=True, **kw)  # type: ignore[arg-type]
    context.set_default_timeout(TIMEOUT_MS)
    return context


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = _context(browser)
    yield context
    context.close()


def _open(context: BrowserContext, sp: Storepulse, query: str = "", org: str = "acme", view: str = "overview") -> tuple[Page, list[str]]:
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{sp.base}/{query}#token={TOKENS[org]}&view={view}")
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#status")).not_to_have_text("not connected")
    return page, errors


def sp_post(sp: Storepulse, path: str, body: object) -> dict[str, object]:
    r = httpx.post(f"{sp.base}{path}", json=body, headers={"Authorization": f"Bearer {TOKENS['acme']}"}, timeout=10)
    assert r.status_code == 200, r.text
    out: dict[str, object] = r.json()
    return out


def _pay(sp: Storepulse, customer: str, product: str = "watch") -> int:
    """A signed Stripe checkout of one `product` by `customer`, larger than every earlier one."""
    amount = next(_amounts)
    body = json.loads(checkout_session_completed(f"evt_{uid()}", f"cs_{uid()}", f"pi_{uid()}", amount))
    obj = body["data"]["object"]
    obj["customer"] = customer
    del obj["amount_total"]
    obj["display_items"] = [{"amount": amount, "currency": "eur", "quantity": 1, "custom": {"name": product}}]
    r = sp.post_stripe("acme-stripe", json.dumps(body).encode())
    assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
    return amount


# (view, a locator that must hold data, the element a new paid order changes)
PROBES = [
    ("overview", '[data-kpi="revenue"]', '[data-kpi="revenue"]'),
    ("orders", "#view-orders tbody tr", "#view-orders tbody tr >> nth=0"),
    ("carts", "#view-carts tbody tr", '[data-stat="carts.orders"] .stat-value'),
    ("products", "#view-products tbody tr", "#view-products tbody tr >> nth=0"),
    ("customers", "#view-customers tbody tr", "#view-customers tbody tr >> nth=0"),
    ("marketing", "#view-marketing .scroll tbody tr", "#view-marketing .scroll tbody tr >> nth=0"),
    ("connections", "#view-connections tbody tr", "#view-connections tbody tr >> nth=0"),
]


@pytest.mark.alone  # a latency bound: run with the machine to itself (Makefile)
@pytest.mark.parametrize(("view", "rows", "probe"), PROBES, ids=[p[0] for p in PROBES])
def test_view_renders_and_moves_within_a_second(sp: Storepulse, context: BrowserContext, view: str, rows: str, probe: str) -> None:
    page, errors = _open(context, sp, view=view)
    page.select_option("#period", "7d")
    expect(page.locator(f"#tab-{view}")).to_have_attribute("aria-selected", "true")
    expect(page.locator(rows).first).to_be_visible()
    assert page.locator(rows).count() >= 1
    expect(page.locator(probe)).not_to_have_text(re.compile(r"^(–|)$"))
    page.wait_for_load_state("networkidle")
    before = page.locator(probe).inner_text()
    started = time.monotonic()
    _pay(sp, f"cus_{view}", product=f"watch-{view}")
    expect(page.locator(probe)).not_to_have_text(before, timeout=LIVE_MS)
    took = time.monotonic() - started
    print(f"{view}: moved {took * 1000:.0f} ms after the webhook was sent")
    assert took < LIVE_MS / 1000 + 0.2, f"{view} moved {took:.2f} s after the webhook was answered"
    assert errors == [], errors


GERMAN_SEGMENTS = {  # a few of messages/de.js, written out: what a German shop owner reads
    "one_time_buyers": "Einmalkäufer", "repeat_buyers": "Wiederholungskäufer", "buyers": "Käufer",
    "carted_never_bought": "Warenkorb begonnen, nie gekauft", "at_risk": "Gefährdet", "lapsed": "Abgewandert",
}


def test_segments_view_shows_what_the_server_answers(sp: Storepulse, context: BrowserContext) -> None:
    """Without the segments API (404): "not available" and no segment filter. With it (issue 9): each
    segment's count as the API gives it, a chosen segment's members, and the segment filter."""
    page, errors = _open(context, sp, view="segments")
    answer = sp.get("/api/v1/orgs/acme/segments")
    if answer.status_code == 404:
        expect(page.locator('[data-unavailable="segments"]')).to_have_text("Not available on this server.")
        expect(page.locator("#segment-filter")).to_be_hidden()
    else:
        assert answer.status_code == 200, answer.text
        segments = answer.json()["segments"]
        assert segments, "the server lists no segment: nothing to show"
        table = page.locator("#view-segments table >> nth=0")
        expect(table.locator("tbody tr")).to_have_count(len(segments))
        # listed, and offered in the filter, in the order English sorts their names (not by id)
        by_name = page.evaluate("(names) => names.sort((a, b) => a.localeCompare(b, 'en'))", [s["name"] for s in segments])
        assert by_name != [s["name"] for s in sorted(segments, key=lambda s: s["id"])]  # the order is not the ids'
        segments.sort(key=lambda s: by_name.index(s["name"]))
        for i, seg in enumerate(segments):
            expect(table.locator("tbody tr").nth(i)).to_contain_text(seg["name"])
        expect(page.locator("#segment-filter")).to_be_visible()
        expect(page.locator("#segment option")).to_have_count(len(segments) + 1)
        assert page.locator("#segment option").all_inner_texts()[1:] == by_name
        # In German, the predefined segments are named in German, and sorted so, in the list and the filter
        # (a segment the shop defined keeps its name); switching the language renames the filter's choices.
        page.select_option("#lang", "de")
        expect(page.locator("#segment option").nth(1)).not_to_have_text(by_name[0])
        german = page.evaluate("""async (segs) => { const de = (await import('/static/messages/de.js')).default;
            return segs.map((s) => (s.predefined && de['segment.' + s.id]) || s.name); }""", segments)
        spot = {s["id"]: name for s, name in zip(segments, german, strict=True) if s["id"] in GERMAN_SEGMENTS}
        assert spot and spot == {k: v for k, v in GERMAN_SEGMENTS.items() if k in spot}, spot
        by_name_de = page.evaluate("(names) => names.sort((a, b) => a.localeCompare(b, 'de'))", german)
        assert page.locator("#segment option").all_inner_texts()[1:] == by_name_de
        expect(table.locator("tbody tr button")).to_have_text(by_name_de)
        page.select_option("#lang", "en")
        busiest = max(segments, key=lambda s: (s["members"], s["id"]))
        assert busiest["members"] > 0, "the shop should put someone in some segment"
        expect(table.locator("tbody tr").nth(segments.index(busiest))).to_contain_text(str(busiest["members"]))
        page.locator("#view-segments").get_by_role("button", name=busiest["name"], exact=True).click()
        members = sp.get(f"/api/v1/orgs/acme/segments/{busiest['id']}/members", limit=50).json()["members"]
        shown = page.locator("#view-segments .cards > section:nth-child(3) tbody tr")
        expect(shown).to_have_count(len(members))
        expect(shown.first).to_contain_text(members[0]["customer"])
        # A rule previewed from the page counts what the API's preview counts.
        rule = '{"orders": {"gte": 2}}'
        want = sp_post(sp, "/api/v1/orgs/acme/segments/preview", {"rule": json.loads(rule)})["members"]
        page.fill("#segment-rule", rule)
        page.get_by_role("button", name="Preview").click()
        expect(page.locator('[data-preview="count"]')).to_have_text(f"{want} customers match now.")
        # The segment filter narrows the customers view to the segment's members (segment= on /customers).
        page.select_option("#segment", busiest["id"])
        page.click("#tab-customers")
        api = sp.get("/api/v1/orgs/acme/customers", period="7d", segment=busiest["id"], limit=20).json()["customers"]
        page.select_option("#period", "7d")
        expect(page.locator("#view-customers .cards > section:nth-child(1) tbody tr")).to_have_count(len(api))
        # The overview with a segment: net revenue is not kept per customer, so "–" and the server's reason.
        page.click("#tab-overview")
        figures = sp.get("/api/v1/orgs/acme/figures", period="7d", segment=busiest["id"]).json()
        assert figures["net_revenue"] is None, figures
        expect(page.locator('[data-kpi="net_revenue"]')).to_have_text("–")
        expect(page.locator('[data-kpi-change="net_revenue"]')).to_have_text(figures["not_restricted"]["net_revenue"])
    assert errors == [], errors


def _growth_text(sp: Storepulse, segment: dict[str, Any], period: str) -> str:
    g = sp.get(f"/api/v1/orgs/acme/segments/{segment['id']}/growth", period=period).json()
    members = next(s["members"] for s in sp.get("/api/v1/orgs/acme/segments").json()["segments"] if s["id"] == segment["id"])
    net = f"+{g['net']:,}" if g["net"] > 0 else f"\u2212{-g['net']:,}" if g["net"] < 0 else "0"
    return f"{members:,} members now. In this period: {g['entered']:,} entered, {g['exited']:,} exited (net {net})."


def test_a_segments_card_shows_its_growth_and_edits_copies_and_deletes_it(sp: Storepulse, context: BrowserContext) -> None:
    """A chosen segment's card: its entries and exits over the period as GET .../growth counts them (a chart
    of days, or two bars for one day), its rule; "Edit a copy" fills the builder and saves a new segment,
    "Edit" replaces that one's rule under its id, "Delete" (after a confirmation) removes it."""
    page, errors = _open(context, sp, view="segments")
    page.select_option("#period", "7d")
    segments = sp.get("/api/v1/orgs/acme/segments").json()["segments"]
    buyers = next(s for s in segments if s["id"] == "buyers")
    view = page.locator("#view-segments")
    # the counts' one clock, said once above them (a column of the same instant before)
    expect(view.locator("[data-as-of]")).to_contain_text("Member counts exact as of ")
    expect(view.locator("table >> nth=0").locator("th")).to_have_text(["Name", "Members", "Predefined"])
    view.get_by_role("button", name=buyers["name"], exact=True).click()
    card = page.locator("#view-segments .cards > section:nth-child(2)")
    expect(card.locator("h2")).to_have_text(buyers["name"])
    summary = card.locator('[data-growth="summary"]')
    for _ in range(3):  # a window may close between the two reads: the page must catch up with the API
        want = _growth_text(sp, buyers, "7d")
        try:
            expect(summary).to_have_text(want, timeout=5000)
            break
        except AssertionError:
            continue
    else:
        raise AssertionError(f"the card says {summary.inner_text()!r}, the API {want!r}")
    assert "entered" in want and not want.endswith("(net 0)."), want  # the shop's week moves the segment
    expect(card.locator('[data-chart="segment-growth"] canvas')).to_have_count(1)  # 7 days: a chart of days
    assert json.loads(card.locator('pre[data-rule="buyers"]').text_content() or "") == buyers["rule"]
    expect(card.locator('[data-act="delete"]')).to_have_count(0)  # a predefined segment is copied, not deleted
    page.select_option("#period", "today")
    expect(card.locator('[data-chart="segment-growth"] li[data-count="entered"]')).to_be_visible()  # one day: two bars
    # The newest of the period's changes, newest first, as the API lists them.
    latest = sp.get("/api/v1/orgs/acme/segments/buyers/growth", period="today").json()["latest"]
    if latest:
        expect(page.locator("#view-segments .cards > section:nth-child(4) tbody tr").first).to_contain_text(latest[0]["customer"])
    # Edit a copy: the builder holds the rule and "<name> (copy)"; saving makes a new segment.
    card.locator('[data-act="copy"]').click()
    assert json.loads(page.input_value("#segment-rule")) == buyers["rule"]
    assert page.input_value("#segment-name") == f"{buyers['name']} (copy)"
    page.fill("#segment-rule", '{"orders": {"gte": 2}}')
    page.get_by_role("button", name="Save as segment").click()
    copy = "buyers-copy"
    wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/segments").json(),
              lambda b: any(s["id"] == copy and s["rule"] == {"orders": {"gte": 2}} for s in b["segments"]), what="the copy")
    # the filter and the automation form offer it at once (not only after a reload)
    expect(page.locator("#segment option", has_text=f"{buyers['name']} (copy)")).to_have_count(1)
    page.click("#tab-automations")
    page.locator('#view-automations [data-field="trigger"]').select_option("segment.entered")
    expect(page.locator('#view-automations [data-field="segment"] option[value="buyers-copy"]')).to_have_count(1)
    page.click("#tab-segments")
    view.get_by_role("button", name=f"{buyers['name']} (copy)", exact=True).click()
    expect(card.locator("h2")).to_have_text(f"{buyers['name']} (copy)")
    # Edit: the same id, a new rule and name.
    card.locator('[data-act="edit"]').click()
    expect(page.locator("#view-segments [data-editing]")).to_have_text(f"Editing {buyers['name']} (copy): saving replaces its rule.")
    page.fill("#segment-rule", '{"orders": {"gte": 3}}')
    page.fill("#segment-name", "Three orders")
    page.get_by_role("button", name="Save as segment").click()
    wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/segments").json(),
              lambda b: any(s["id"] == copy and s["rule"] == {"orders": {"gte": 3}} and s["name"] == "Three orders"
                            for s in b["segments"]), what="the copy's new rule")
    expect(card.locator("h2")).to_have_text("Three orders")
    # Delete, once confirmed: dismissed, nothing happens; accepted, it is gone from the API and the list.
    page.once("dialog", lambda d: d.dismiss())
    card.locator('[data-act="delete"]').click()
    page.wait_for_timeout(1000)  # a deletion shows in the API within ~0.5 s (the control event through the dataflow)
    expect(card.locator('[data-act="delete"]')).to_be_enabled()
    assert any(s["id"] == copy for s in sp.get("/api/v1/orgs/acme/segments").json()["segments"])
    page.once("dialog", lambda d: d.accept() if d.message.startswith("Delete the segment \u201cThree orders\u201d?") else d.dismiss())
    card.locator('[data-act="delete"]').click()
    wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/segments").json(),
              lambda b: all(s["id"] != copy for s in b["segments"]), what="the copy deleted")
    expect(view.get_by_role("button", name="Three orders", exact=True)).to_have_count(0)
    expect(page.locator("#segment option", has_text="Three orders")).to_have_count(0)
    assert errors == [], errors


# Rules the builder shows (each read back into conditions and written again exactly) and rules it leaves to
# the JSON (a not, a nested group, a date, minutes, a qualifier it has no field for): never shown wrongly.
SHOWN = [
    {"orders": {"gte": 2}},
    {"all": [{"orders": {"between": [2, 5], "within": "90d"}}, {"spent": {"gte": "100.00", "within": "24h"}}]},
    {"any": [{"order_value": {"gt": "250.00"}}, {"bought_category": {"gte": 1, "category": "Apparel", "within": "30d"}},
             {"last_order_at": {"before": "90d"}}, {"last_active_at": {"on": "2d"}}, {"registered_at": {"exists": False}},
             {"store": {"ne": "acme-site"}}, {"in_segment": {"eq": "buyers"}}, {"attribute": {"name": "age", "gte": 21}},
             {"attribute": {"name": "vip", "exists": True}}, {"open_cart_value": {"lt": "5.00"}}, {"stores": {"gte": 2}}]},
]
LEFT_TO_JSON = [
    {"not": {"orders": {"gte": 1}}},
    {"all": [{"orders": {"gte": 1}}, {"any": [{"refunds": {"gte": 1}}]}]},
    {"orders": {"gte": 1, "since": "2026-01-01"}},
    {"spent": {"gte": "10.00", "within": "30m"}},
    {"last_order_at": {"after": "2026-01-01"}},
    {"orders": {"gte": 1, "product": "mug"}},
    {"orders": {"gte": 1, "lte": 3}},
    {"store": {"in": ["a", "b"]}},
    {"all": []},
]


def test_the_rule_builder_writes_the_rule_the_server_previews_and_saves(sp: Storepulse, context: BrowserContext) -> None:
    """Conditions picked from the lists write the rule language's JSON; the page's preview counts what the
    API's preview counts for it and Save stores that very rule. JSON typed in is shown as conditions when it
    can be; otherwise the builder says to edit the JSON. Every predefined rule is shown exactly or left to JSON."""
    page, errors = _open(context, sp, view="segments")
    # read back and written again: exactly, or not at all
    predefined = [s["rule"] for s in sp.get("/api/v1/orgs/acme/segments").json()["segments"] if s["subject"] == "customer"]
    got = page.evaluate("""async ([shown, left, predefined]) => {
        const b = await import('/static/rule_builder.js');
        const again = (r) => { const s = b.fromRule(r); return s && b.toRule(s); };
        return { shown: shown.map(again), left: left.map(b.fromRule),
                 predefined: predefined.map((r) => [again(r), b.ruleText(r)]) }; }""",
                        [SHOWN, LEFT_TO_JSON, predefined])
    assert got["shown"] == SHOWN
    assert got["left"] == [None] * len(LEFT_TO_JSON)
    for rule, (again, text) in zip(predefined, got["predefined"], strict=True):
        assert again in (None, rule), (rule, again)
        assert json.loads(text) == rule  # the rule as the card shows it is the rule
    assert sum(again is not None for again, _ in got["predefined"]) >= 30, "most predefined rules are shown as conditions"
    # The example the builder opens with, as conditions.
    rows = page.locator('#view-segments [data-builder="form"] [data-condition]')
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator("select").first).to_have_value("orders")
    expect(rows.nth(1).locator("select").first).to_have_value("spent")
    # Pick: one paid order or more; 10.00 to 5,000.00 spent in the last 30 days; bought a cap; any of them
    rows.nth(0).locator("input").first.fill("1")
    rows.nth(1).locator("select").nth(1).select_option("between")
    rows.nth(1).locator("input").nth(0).fill("10.00")
    rows.nth(1).locator("input").nth(1).fill("5000.00")
    rows.nth(1).locator("input").nth(2).fill("30")
    expect(rows.nth(1).locator("[data-currency]")).to_have_text("EUR")  # amounts are the organisation's currency
    expect(rows.nth(0).locator("[data-currency]")).to_have_count(0)  # a count is no amount
    page.locator('#view-segments [data-builder="add"]').click()
    rows.nth(2).locator("select").first.select_option("bought_product")
    rows.nth(2).locator("input").nth(0).fill("1")
    rows.nth(2).get_by_placeholder("product id").fill("cap")
    page.select_option('#view-segments [data-builder="match"]', "any")
    rule = {"any": [{"orders": {"gte": 1}}, {"spent": {"between": ["10.00", "5000.00"], "within": "30d"}},
                    {"bought_product": {"gte": 1, "product": "cap"}}]}
    assert json.loads(page.input_value("#segment-rule")) == rule
    # An amount the currency cannot hold: the server's message, and the condition it names marked
    rows.nth(1).locator("input").nth(0).fill("10.001")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#view-segments .error")).to_have_text(re.compile(r"^\$\.rule\.any\[1\]\.spent\.between.*more decimals than EUR"))
    expect(rows.nth(1)).to_have_class(re.compile(r"\binvalid\b"))
    expect(rows.nth(1).locator("input").first).to_have_attribute("aria-invalid", "true")
    expect(rows.nth(0)).not_to_have_class(re.compile(r"\binvalid\b"))
    rows.nth(1).locator("input").nth(0).fill("10.00")
    want = sp_post(sp, "/api/v1/orgs/acme/segments/preview", {"rule": rule})["members"]
    assert want > 0
    page.get_by_role("button", name="Preview").click()
    expect(page.locator('[data-preview="count"]')).to_have_text(f"{want} customers match now.")
    expect(rows.nth(1)).not_to_have_class(re.compile(r"\binvalid\b"))  # cleared once the rule is good
    # no segment names the cap: saved, the rule counts its purchases from then on, and the page says so
    expect(page.locator("#view-segments [data-not-kept]")).to_have_text(
        "Saved, this rule counts from then on, not over the past: product 'cap' is named by no other segment, "
        "so orders before now do not say it.")
    # A condition removed, then saved: the stored rule is the page's.
    rows.nth(1).locator('[data-builder="remove"]').click()
    expect(rows).to_have_count(2)
    rule = {"any": [{"orders": {"gte": 1}}, {"bought_product": {"gte": 1, "product": "cap"}}]}
    assert json.loads(page.input_value("#segment-rule")) == rule
    page.fill("#segment-name", "Built here")
    page.get_by_role("button", name="Save as segment").click()
    wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/segments").json(),
              lambda b: any(s["id"] == "built-here" and s["rule"] == rule for s in b["segments"]), what="the built segment")
    # JSON typed in: shown as conditions when it can be, else the builder steps aside.
    page.fill("#segment-rule", json.dumps({"not": {"orders": {"gte": 1}}}))
    page.locator("#segment-rule").dispatch_event("change")
    expect(page.locator('#view-segments [data-builder="json-only"]')).to_be_visible()
    expect(page.locator('#view-segments [data-builder="form"] .conditions')).to_be_hidden()
    page.fill("#segment-rule", json.dumps({"last_order_at": {"before": "48h"}}))
    page.locator("#segment-rule").dispatch_event("change")
    expect(page.locator('#view-segments [data-builder="json-only"]')).to_be_hidden()
    expect(rows).to_have_count(1)
    expect(rows.nth(0).locator("select").nth(1)).to_have_value("before")
    expect(rows.nth(0).locator("input").first).to_have_value("48")
    expect(rows.nth(0).locator("select").nth(2)).to_have_value("h")
    call = httpx.delete(f"{sp.base}/api/v1/orgs/acme/segments/built-here", headers={"Authorization": f"Bearer {TOKENS['acme']}"})
    assert call.status_code == 202, call.text
    wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/segments").json(),
              lambda b: all(s["id"] != "built-here" for s in b["segments"]), what="the built segment deleted")
    assert errors == [], errors


def test_automations_view_shows_what_the_server_answers(sp: Storepulse, browser: Browser) -> None:
    welcome = {"trigger": "segment.entered", "segment": "one_time_buyers", "send": ["ops"], "wait": "30d"}
    r = httpx.put(f"{sp.base}/api/v1/orgs/acme/automations/welcome-back", json=welcome,
                  headers={"Authorization": f"Bearer {TOKENS['acme']}"}, timeout=10)
    assert r.status_code == 202, r.text
    defined = wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/automations").json(),
                        lambda b: any(a["id"] == "welcome-back" for a in b["automations"]),
                        what="the automation defined")["automations"]
    # the trigger's segment by its name in the page's language, not its id; in German, the German name
    for lang, name, nothing in [("en", "One-time buyers", "No dead letters."),
                                ("de", "Einmalkäufer", "Keine unzustellbaren Nachrichten.")]:
        context = _context(browser)
        try:
            page, errors = _open(context, sp, f"?lang={lang}", view="automations")
            rows = page.locator("#view-automations table >> nth=0").locator("tbody tr")
            expect(rows).to_have_count(len(defined))
            expect(rows.filter(has_text="welcome-back").locator("td >> nth=3")).to_have_text(name)
            # no dead letters: the card says so, and nothing else (its replay buttons, absent, once read "null")
            assert sp.get("/api/v1/orgs/acme/deliveries", status="dead", limit=20).json()["deliveries"] == []
            expect(page.locator('#view-automations [data-card="dead"] .card-body')).to_have_text(nothing)
            assert errors == [], errors
        finally:
            context.close()


def test_an_automation_is_made_edited_and_deleted_from_the_page(sp: Storepulse, context: BrowserContext) -> None:
    """The automation form writes a definition's JSON as fields are picked (the trigger, its segment, a
    condition with the rule builder, the wait and what cancels it, how often, the channels, a subject); Save
    PUTs it and the listing then holds exactly it; Edit shows it again, keeping keys the form has no field
    for; a definition the server refuses shows its message; Delete, once confirmed, removes it."""
    page, errors = _open(context, sp, view="automations")
    editor = page.locator("#view-automations .cards > section:nth-child(2)")
    expect(editor.locator("h2")).to_have_text("New automation")
    definition = lambda: json.loads(page.input_value("#automation-json"))  # noqa: E731
    assert definition() == {"trigger": "cart.abandoned", "send": [], "wait": "1h", "cancel_on": ["checkout.completed", "order.paid"],
                            "once": True}
    field = lambda name: editor.locator(f'[data-field="{name}"]')  # noqa: E731
    field("trigger").select_option("segment.entered")
    field("segment").select_option("buyers")
    field("if").check()
    editor.locator('[data-field="if-builder"] [data-condition="0"] input').first.fill("2")
    field("wait").fill("")
    expect(field("cancel_on:order.paid")).to_have_count(0)  # nothing to cancel without a wait
    field("often").select_option("cooldown")
    field("cooldown").fill("30")
    field("cooldown_unit").select_option("d")
    field("send:ops").check()
    field("subject").fill("Welcome back, {{ name }}")
    want = {"trigger": "segment.entered", "send": ["ops"], "segment": "buyers", "if": {"orders": {"gte": 2}}, "cooldown": "30d",
            "templates": {"subject": "Welcome back, {{ name }}"}}
    assert definition() == want
    # What it would send, for a sample firing now: the server's preview, shown as it answers
    answer = httpx.post(f"{sp.base}/api/v1/orgs/acme/automations/preview", json=want,
                        headers={"Authorization": f"Bearer {TOKENS['acme']}"}, timeout=10).json()["message"]
    editor.locator('[data-act="preview-automation"]').click()
    expect(editor.locator('[data-message="subject"]')).to_have_text(answer["subject"])
    assert answer["subject"].startswith("Welcome back,")
    expect(editor.locator('[data-message="text"]')).to_have_text(answer["text"])
    # The server checks it: a wait over 30 days is refused with its message, and nothing is saved.
    page.fill("#automation-id", "vip-welcome")
    page.fill("#automation-json", json.dumps({**want, "wait": "45d"}))
    page.locator("#automation-json").dispatch_event("change")
    expect(field("wait")).to_have_value("45")
    editor.locator('[data-act="save-automation"]').click()
    expect(editor.locator(".error")).to_contain_text("$.wait")
    page.fill("#automation-json", json.dumps({**want, "locale": "de"}))  # a key the form has no field for
    page.locator("#automation-json").dispatch_event("change")
    field("subject").fill("Willkommen zurück, {{ name }}")
    want = {**want, "locale": "de", "templates": {"subject": "Willkommen zurück, {{ name }}"}}
    assert definition() == want
    editor.locator('[data-act="save-automation"]').click()
    listed = wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/automations/vip-welcome").json(),
                       lambda b: b.get("trigger") == "segment.entered", what="the automation saved")
    assert {k: v for k, v in listed.items() if k not in ("id", "source")} == want and listed["source"] == "api"
    expect(page.locator("#automation-id")).to_have_value("")  # the form is ready for a new one
    rows = page.locator("#view-automations table >> nth=0").locator("tbody tr")
    row = rows.filter(has_text="vip-welcome")
    expect(row.locator("td >> nth=1")).to_have_text("A customer enters a segment")
    # Edit: the form shows it again; a change saved replaces it under its id.
    row.locator('[data-act="edit"]').click()
    expect(editor.locator("h2")).to_have_text("Edit automation vip-welcome")
    expect(field("segment")).to_have_value("buyers")
    expect(field("subject")).to_have_value("Willkommen zurück, {{ name }}")
    field("often").select_option("once")
    editor.locator('[data-act="save-automation"]').click()
    wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/automations/vip-welcome").json(),
              lambda b: b.get("once") is True and "cooldown" not in b and b.get("locale") == "de", what="the edit")
    # Delete, once confirmed.
    page.once("dialog", lambda d: d.accept() if d.message == "Delete the automation vip-welcome? Its pending messages are dropped."
              else d.dismiss())
    row.locator('[data-act="delete"]').click()
    wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/automations").json(),
              lambda b: all(a["id"] != "vip-welcome" for a in b["automations"]), what="the automation deleted")
    expect(rows.filter(has_text="vip-welcome")).to_have_count(0)
    assert errors == [], errors


def test_german_labels_and_money(sp: Storepulse, browser: Browser) -> None:
    context = _context(browser, locale="en-US")
    try:
        page, errors = _open(context, sp, "?lang=de", view="orders")
        expect(page.locator("#tab-overview")).to_have_text("Übersicht")
        expect(page.locator("#tab-orders")).to_have_text("Bestellungen")
        expect(page.locator("html")).to_have_attribute("lang", "de")
        r = sp.post_stripe("acme-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 123_456))
        assert r.status_code == 200, r.text
        page.select_option("#period", "today")
        expect(page.locator("#view-orders").get_by_text(re.compile(r"^1\.234,56\s€$")).first).to_be_visible()
        page.click("#tab-overview")
        expect(page.locator('#view-overview .kpi h2').first).to_have_text("Umsatz")
        expect(page.locator('[data-kpi="revenue"]')).to_have_text(re.compile(r"^[\d.]+,\d\d\s€$"))
        # The language menu switches without a reload (the live connection stays).
        page.evaluate("window.stillHere = true")
        page.select_option("#lang", "it")
        expect(page.locator("#tab-overview")).to_have_text("Panoramica")
        expect(page.locator('#view-overview .kpi h2').first).to_have_text("Fatturato")
        assert page.evaluate("window.stillHere") is True and "lang=it" in page.url
        # The browser's Accept-Language picks the language when ?lang= is absent.
        fr = _context(browser, locale="fr-FR")
        try:
            page2, _ = _open(fr, sp)
            expect(page2.locator("#tab-orders")).to_have_text("Commandes")
        finally:
            fr.close()
        assert errors == [], errors
    finally:
        context.close()


def test_catalogues_have_every_key_of_the_english_one(sp: Storepulse, context: BrowserContext) -> None:
    page, _ = _open(context, sp)
    missing = page.evaluate("""async () => {
        const en = (await import('/static/messages/en.js')).default;
        const out = {};
        for (const lang of ['de', 'es', 'fr', 'it']) {
            const m = (await import(`/static/messages/${lang}.js`)).default;
            out[lang] = Object.keys(en).filter((k) => !(k in m)).concat(Object.keys(m).filter((k) => !(k in en)));
        }
        return out;
    }""")
    assert missing == {"de": [], "es": [], "fr": [], "it": []}


def test_money_uses_the_exponent_the_server_sends(sp: Storepulse, context: BrowserContext) -> None:
    page, _ = _open(context, sp)
    got = page.evaluate("""async () => {
        const f = await import('/static/format.js');
        f.setLocale('en-US');
        const a = [f.money({amount: 1234567, currency: 'IQD', exponent: 3}), f.money({amount: 1234, currency: 'JPY', exponent: 0}),
                   f.money({amount: 1234567, currency: 'KWD', exponent: 3}), f.money({amount: 123456, currency: 'EUR', exponent: 2}),
                   f.money({amount: 5, currency: 'EUR'}), f.money({amount: 123456789012345, currency: 'EUR', exponent: 2})];
        f.setLocale('de');
        a.push(f.money({amount: 123456, currency: 'EUR', exponent: 2}), f.money({amount: 1234567, currency: 'IQD', exponent: 3}));
        return a;
    }""")
    nb = "\u00a0"
    assert got == ["IQD" + nb + "1,234.567", "¥1,234", "KWD" + nb + "1,234.567", "€1,234.56", "€0.05",
                   "€1,234,567,890,123.45", f"1.234,56{nb}€", f"1.234,567{nb}IQD"]


def test_yen_end_to_end(sp: Storepulse, context: BrowserContext) -> None:
    """JPY has no minor unit: 1980 from Stripe is ¥1,980 on the page (the fallback to Intl's digits
    agrees with ISO 4217 for JPY; IQD and KWD are covered above with the server's exponent)."""
    page, errors = _open(context, sp, org="tokyo", view="orders")
    r = sp.post_stripe("tokyo-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 1980, currency="jpy"))
    assert r.status_code == 200, r.text
    expect(page.locator("#view-orders tbody tr >> nth=0")).to_contain_text("¥1,980")
    expect(page.locator('[data-figure="gross_revenue.all"]')).to_have_text(re.compile(r"¥[\d,]+$"))
    assert errors == [], errors


def _csv(page: Page, button: str) -> list[dict[str, str]]:
    with page.expect_download() as d:
        page.click(button)
    path = d.value.path()
    return list(csv.DictReader(io.StringIO(Path(path).read_text())))


def test_customer_export_matches_the_api(sp: Storepulse, context: BrowserContext) -> None:
    page, errors = _open(context, sp, view="customers")
    page.select_option("#period", "7d")
    expect(page.locator("#view-customers tbody tr").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    got = _csv(page, '#view-customers [data-export="customers"]')
    api = sp.get("/api/v1/orgs/acme/customers", period="7d", sort="revenue", limit=1000).json()["customers"]
    want = [{"customer": c["customer"], "email": c["email"] or "", "name": c["name"] or "", "orders": str(c["orders"]),
             "revenue": f"{c['revenue']['amount'] // 100}.{c['revenue']['amount'] % 100:02d}",
             "currency": c["revenue"]["currency"]} for c in api]
    assert len(want) >= 7 and got == want
    never = _csv(page, '#view-customers [data-export="never-bought"]')
    api_never = sp.get("/api/v1/orgs/acme/customers", period="7d", filter="never_bought", limit=1000).json()["customers"]
    assert [r["customer"] for r in never] == [c["customer"] for c in api_never] and len(never) == 3
    assert errors == [], errors


def test_csv_cells_are_quoted_and_never_run_as_formulas(sp: Storepulse, context: BrowserContext) -> None:
    page, _ = _open(context, sp)
    got = page.evaluate("""async () => (await import('/static/csv.js')).toCsv(['a', 'b'],
        [['=HYPERLINK("x")', -5], ['plain, "quoted"', '@SUM(A1)'], ['+1', 'line\\nbreak']])""")
    assert got == ('a,b\r\n"\'=HYPERLINK(""x"")",-5\r\n"plain, ""quoted""",\'@SUM(A1)\r\n\'+1,"line\nbreak"\r\n')


def test_filters_store_currency_period(sp: Storepulse, context: BrowserContext) -> None:
    page, errors = _open(context, sp, view="orders")
    page.select_option("#period", "7d")
    expect(page.locator("#view-orders tbody tr").first).to_be_visible()
    page.select_option("#store", "acme-site")
    expect(page.locator("#view-orders table >> nth=0").locator("tbody tr td:nth-child(3)").first).to_have_text("acme-site")
    stores = page.locator("#view-orders table >> nth=0").locator("tbody tr td:nth-child(3)").all_inner_texts()
    assert set(stores) == {"acme-site"}
    page.click("#tab-overview")
    page.select_option("#currency", "USD")  # converted by the server at each day's rate (the test's rates file)
    expect(page.locator('[data-kpi="revenue"]')).to_have_text(re.compile(r"^\$[\d,]+\.\d\d$"))
    # A currency no rates file has (ECB publishes no IQD): the revenue card says what is missing, as a
    # 422's message or as the figure's own "incomplete" message, whichever the server answers.
    page.evaluate("document.getElementById('currency').add(new Option('IQD', 'IQD'))")
    page.select_option("#currency", "IQD")
    expect(page.locator('#view-overview .kpi[aria-label="Revenue"]')).to_contain_text("IQD")
    page.select_option("#currency", "EUR")
    page.select_option("#period", "custom")
    page.fill("#from", "2020-01-01")
    page.fill("#to", "2020-01-31")
    page.locator("#to").dispatch_event("change")
    expect(page.locator('[data-kpi="revenue"]')).to_have_text("€0.00")
    assert errors == [], errors


def test_no_serious_accessibility_violation_on_any_view(sp: Storepulse, browser: Browser) -> None:
    context = _context(browser, bypass_csp=True)  # axe is injected as an inline script, for the test only
    try:
        page, errors = _open(context, sp)
        page.select_option("#period", "7d")
        page.add_script_tag(path=str(AXE))
        # Control: axe finds a serious violation when there is one (an image without alt text).
        control = page.evaluate("""async () => {
            const img = document.createElement('img'); img.src = '/nothing.png'; document.body.append(img);
            const v = (await axe.run(document)).violations.filter((x) => x.impact === 'critical' || x.impact === 'serious');
            img.remove(); return v.map((x) => x.id); }""")
        assert "image-alt" in control
        found = {}
        for view in VIEWS:
            page.click(f"#tab-{view}")
            page.wait_for_load_state("networkidle")
            result = page.evaluate("async () => (await axe.run(document, { resultTypes: ['violations'] })).violations"
                                   ".filter((v) => v.impact === 'critical' || v.impact === 'serious')"
                                   ".map((v) => `${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join(', ')}`)")
            if result:
                found[view] = result
        assert found == {}
        assert errors == [], errors
    finally:
        context.close()


def test_every_control_works_from_the_keyboard(sp: Storepulse, context: BrowserContext) -> None:
    page, errors = _open(context, sp)
    page.focus("#tab-overview")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-orders")).to_be_focused()
    expect(page.locator("#view-orders")).to_be_visible()
    expect(page.locator("#view-overview")).to_be_hidden()
    page.keyboard.press("End")
    expect(page.locator("#tab-connections")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowRight")  # wraps around
    expect(page.locator("#tab-overview")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#tab-connections")).to_be_focused()
    page.keyboard.press("Home")
    # Only the selected tab is in the tab order; Tab moves on into its panel.
    assert page.evaluate("[...document.querySelectorAll('[role=tab]')].filter((t) => t.tabIndex === 0).length") == 1
    # The filters: focus and arrow keys change a select.
    page.focus("#period")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#period")).to_have_value("yesterday")
    # ENGAGE from the keyboard: Enter on the export button downloads.
    page.click("#tab-customers")
    expect(page.locator("#view-customers tbody tr").first).to_be_visible()
    page.focus('#view-customers [data-export="customers"]')
    with page.expect_download():
        page.keyboard.press("Enter")
    assert errors == [], errors


def test_a_link_or_an_edit_to_the_hash_shows_that_view(sp: Storepulse, context: BrowserContext) -> None:
    """The view a hash names (#orders, or #token=...&view=segments) is shown at the start and whenever the
    hash changes after it (a link in the page, an edit of the address): not only at the start."""
    page, errors = _open(context, sp, view="overview")
    expect(page.locator("#tab-overview")).to_have_attribute("aria-selected", "true")
    page.evaluate("location.hash = 'orders'")
    expect(page.locator("#tab-orders")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#view-orders")).to_be_visible()
    expect(page.locator("#view-overview")).to_be_hidden()
    page.evaluate(f"location.hash = 'token={TOKENS['acme']}&view=segments'")
    expect(page.locator("#tab-segments")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#view-segments tbody tr").first).to_be_visible()  # read, not only shown
    assert page.evaluate("location.hash") == "#segments"  # the token leaves the address, as at the start
    page.evaluate("location.hash = 'nothing-of-the-sort'")  # a hash naming no view changes nothing
    expect(page.locator("#tab-segments")).to_have_attribute("aria-selected", "true")
    # another organisation's link: the page starts again with its token and shows its view
    page.evaluate(f"location.hash = 'token={TOKENS['tokyo']}&view=products'")
    expect(page.locator("#tab-products")).to_have_attribute("aria-selected", "true")
    expect(page.locator("header")).to_contain_text("tokyo")
    assert page.evaluate("location.hash") == "#products" and page.evaluate("sessionStorage.getItem('token')") == TOKENS["tokyo"]
    assert errors == [], errors


def test_back_and_forward_go_through_the_views_chosen(sp: Storepulse, context: BrowserContext) -> None:
    """A view chosen with a tab or the arrow keys is an entry of the browser's history: Back shows the view
    before it, Forward the one after, each read again; the address names the view shown."""
    page, errors = _open(context, sp, view="overview")
    page.select_option("#period", "7d")  # the shop's orders are of the last days: "today" may hold none yet
    page.click("#tab-orders")
    page.focus("#tab-orders")
    page.keyboard.press("ArrowRight")  # carts
    expect(page.locator("#tab-carts")).to_have_attribute("aria-selected", "true")
    page.go_back()
    expect(page.locator("#tab-orders")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#view-orders tbody tr").first).to_be_visible()
    page.go_back()
    expect(page.locator("#tab-overview")).to_have_attribute("aria-selected", "true")
    assert page.evaluate("location.hash") == "#overview"
    page.go_forward()
    expect(page.locator("#tab-orders")).to_have_attribute("aria-selected", "true")
    assert page.evaluate("location.hash") == "#orders"
    assert errors == [], errors


def test_a_burst_of_webhooks_stays_within_the_read_budget(sp: Storepulse, context: BrowserContext) -> None:
    """Thirty payments in a row: the overview ends on the server's figure, never hears a 429, and
    re-reads far fewer times than it was told of a change (refreshes coalesce, at most two a second).
    Organisation tokyo: its read budget is its own, untouched by the other tests' pages of acme."""
    page, errors = _open(context, sp, org="tokyo")
    page.select_option("#period", "7d")
    expect(page.locator('[data-kpi="revenue"]')).not_to_have_text("–")
    page.wait_for_load_state("networkidle")
    statuses: list[int] = []
    refused: list[str] = []
    figures_calls: list[str] = []
    page.on("response", lambda r: statuses.append(r.status) if "/api/" in r.url else None)
    page.on("response", lambda r: refused.append(f"{r.url} {r.text()}") if r.status == 429 else None)
    page.on("request", lambda r: figures_calls.append(r.url) if "/figures?" in r.url and "period=7d" in r.url else None)
    figures = lambda: sp.get("/api/v1/orgs/tokyo/figures", org="tokyo", period="7d").json()  # noqa: E731
    want = figures()["gross_revenue"]["amount"] + 30 * 100
    for _ in range(30):
        r = sp.post_stripe("tokyo-stripe", payment_intent_succeeded(f"evt_{uid()}", f"pi_{uid()}", 100, currency="jpy"))
        assert r.status_code == 200, r.text
    # all thirty folded (read once the last is in: the one before may still be on its way)
    wait_json(sp, figures, lambda b: b["gross_revenue"]["amount"] == want, what="the thirty payments")
    expect(page.locator('[data-kpi="revenue"]')).to_have_text(f"¥{want:,}")
    page.wait_for_load_state("networkidle")
    assert 429 not in statuses, refused
    print(f"30 webhooks: {len(figures_calls)} re-reads of the figures")
    assert 1 <= len(figures_calls) < 30, len(figures_calls)
    assert errors == [], errors


def test_recommendations_act_dismiss_and_go_once_done(sp: Storepulse, context: BrowserContext) -> None:
    page, errors = _open(context, sp, org="tokyo")  # a Stripe store alone: no site tracking
    tip = page.locator('[data-recommendation="site_tracking"]')
    expect(tip).to_contain_text("Install site tracking.")
    # tokyo has no channel: the abandoned-cart automation cannot be enabled here, the card says what to add
    reminder = page.locator('[data-recommendation="abandoned_cart"]')
    expect(reminder).to_contain_text("Add a channel (Slack, e-mail or a webhook) under [orgs.<id>.channels]")
    expect(reminder.locator("[data-enable]")).to_have_count(0)
    page.click('[data-dismiss="site_tracking"]')
    expect(tip).to_have_count(0)
    page.reload()
    expect(page.locator('[data-kpi="revenue"]')).not_to_have_text("–")
    page.wait_for_load_state("networkidle")
    expect(tip).to_have_count(0)  # dismissed stays dismissed
    shop, _ = _open(context, sp)  # acme tracks its site and has visits: nothing to suggest about it
    expect(shop.locator('[data-kpi="revenue"]')).not_to_have_text("–")
    shop.wait_for_load_state("networkidle")
    expect(shop.locator('[data-recommendation="site_tracking"]')).to_have_count(0)
    # The rules themselves, as the page decides them.
    got = page.evaluate("""async () => {
        const { recommend } = await import('/static/views/recommendations.js');
        const ids = (x) => recommend(x).map((r) => r.id);
        const events = [{ provider: 'events' }], stripe = [{ provider: 'stripe' }];
        return [
            ids({ connections: events, visitors: 5, automations: null, segments: null }),
            ids({ connections: stripe, visitors: 5, automations: null, segments: null }),
            ids({ connections: events, visitors: 0, automations: null, segments: null }),
            ids({ connections: events, visitors: 5, automations: [{ trigger: 'order.paid' }], segments: null }),
            ids({ connections: events, visitors: 5, automations: [{ trigger: 'cart.abandoned' }], segments: [{ id: 'repeat_buyers' }] }),
            // what "Enable" would define: to the shopper when a channel mails customers, else the first enabled one
            [null, [], [{ id: 'ops', kind: 'slack' }, { id: 'mail', kind: 'email', to: 'customer' }],
             [{ id: 'mail', kind: 'email', to: 'customer', enabled: false }, { id: 'hook', kind: 'webhook', enabled: true }]]
                .map((channels) => recommend({ connections: events, visitors: 5, automations: [], segments: null, channels })[0])
                .map((r) => [r.id, r.channels, r.automation && r.automation.send]),
        ];
    }""")
    assert got == [[], ["site_tracking"], ["site_tracking"], ["abandoned_cart"], ["segment_one_time_buyers"],
                   [["abandoned_cart", False, None], ["abandoned_cart", True, None], ["abandoned_cart", True, ["mail"]],
                    ["abandoned_cart", True, ["hook"]]]]
    assert errors == [], errors


def _chart(page: Page, name: str) -> dict[str, Any]:
    """What uPlot holds for the overview's chart `name`: its x values, series and x scale."""
    got: dict[str, Any] = page.evaluate("""(name) => {
        const held = document.querySelector(`[data-chart="${name}"]`)._chart;
        if (!held) return null;
        const u = held.plot;
        return { xs: u.data[0], ys: u.data.slice(1), min: u.scales.x.min, max: u.scales.x.max };
    }""", name)
    return got


def _x_ticks(page: Page, name: str) -> list[tuple[float, float, str]]:
    """(centre, width, text) of each label uPlot drew under chart `name`'s x axis, in canvas pixels, with
    the axis's own font: what tells labels that run into each other."""
    got: list[tuple[float, float, str]] = page.evaluate("""(name) => {
        const u = document.querySelector(`[data-chart="${name}"]`)._chart.plot, axis = u.axes[0];
        u.ctx.save();
        u.ctx.font = axis.font[0];
        const out = axis._splits.map((i, k) => { const text = String(axis._values[k] ?? "");
            return [u.valToPos(i, "x", true), u.ctx.measureText(text).width, text]; });  // an ordinal axis: by index
        u.ctx.restore();
        return out.filter(([, , text]) => text !== "");
    }""", name)
    return got


def test_today_draws_revenue_and_orders_hour_by_hour(sp: Storepulse, context: BrowserContext) -> None:
    """Today's charts plot the server's 24 (23, 25 on a DST day) hourly points: the hour labels carry
    their offset ("...T13:00:00+01:00"), which the page once parsed to NaN, drawing axes and no line."""
    page, errors = _open(context, sp)
    page.set_viewport_size({"width": 1400, "height": 900})  # wide enough for a label every hour, if they fit
    page.select_option("#period", "today")
    before = sp.get("/api/v1/orgs/acme/figures", period="today").json()["paid_orders"]
    amount = _pay(sp, "cus_today", product="watch-today")
    # read once the dataflow has folded it (read at once, under load the series read later had it and these not)
    want_orders = wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/figures", period="today").json(),
                            lambda b: b["paid_orders"] == before + 1, what="the payment in today's figures")
    expect(page.locator('[data-kpi="revenue"]')).to_have_text(f"€{want_orders['gross_revenue']['amount'] / 100:,.2f}")
    page.wait_for_load_state("networkidle")
    asked = time.time()
    rev = sp.get("/api/v1/orgs/acme/series", period="today", granularity="hour", metric="gross_revenue").json()["points"]
    orders = sp.get("/api/v1/orgs/acme/series", period="today", granularity="hour", metric="paid_orders").json()["points"]
    answered = time.time()
    assert 23 <= len(rev) <= 25 and sum(p["value"] or 0 for p in rev) == want_orders["gross_revenue"]["amount"] >= amount
    # an hour not begun has no value (the chart stops at this hour), one begun has (0 when empty)
    for p in (*rev, *orders):
        start = dt.datetime.fromisoformat(p["t"]).timestamp()
        assert p["value"] is not None if start <= asked else p["value"] is None if start > answered else True, p
    xs = [dt.datetime.fromisoformat(p["t"]).timestamp() for p in rev]
    for name, points in (("revenue", rev), ("orders", orders)):
        chart = _chart(page, name)
        assert chart["xs"] == xs, name
        assert chart["ys"] == [[p["value"] for p in points]], name
        assert math.isfinite(chart["min"]) and math.isfinite(chart["max"]) and chart["max"] > chart["min"], name  # drawn
        # the hour labels uPlot draws under the axis leave each one its width ("12:00 AM1:00 AM" ran together)
        ticks = _x_ticks(page, name)
        assert len(ticks) >= 6 and all(t for _, _, t in ticks), ticks
        assert all(b[0] - a[0] >= (a[1] + b[1]) / 2 + 4 for a, b in itertools.pairwise(ticks)), (name, ticks)
    # The hours are the organisation's (the server's labels), in the page's locale: 24-hour in German.
    de, de_errors = _open(context, sp, query="?lang=de")
    de.select_option("#period", "today")
    de.wait_for_function("""(n) => { const c = document.querySelector('[data-chart="revenue"]')._chart;
                                     return c && c.plot.data[0].length === n; }""", arg=len(xs))
    shown = de.evaluate("""(xs) => xs.map((x) => document.querySelector('[data-chart="revenue"]')._chart.text(x))""", xs)
    assert shown == [f"{dt.datetime.fromisoformat(p['t']).hour:02d}:00" for p in rev] and de_errors == []
    # the legend names the x value of an hourly chart a time, not a date
    legend = """() => document.querySelector('[data-chart="revenue"]')._chart.plot.series[0].label"""
    assert (page.evaluate(legend), de.evaluate(legend)) == ("Time", "Uhrzeit")
    # Orders against carts: one span (the day), as bars rather than a line of one point.
    carts = sp.get("/api/v1/orgs/acme/carts", period="today", limit=1).json()
    day = page.locator('[data-chart="orders-carts-day"]')
    for key, n in (("kpi.orders", want_orders["paid_orders"]), ("carts.carts", carts["carts"]), ("carts.abandoned", carts["abandoned"])):
        expect(day.locator(f'[data-count="{key}"] .num')).to_have_text(f"{n:,}")
    assert errors == [], errors


def test_today_is_compared_with_yesterday_to_the_same_hour(sp: Storepulse, context: BrowserContext) -> None:
    """Today so far against the whole of yesterday read every morning as a fall: the figures' KPIs compare
    with yesterday's hours before the same time (to the nearest hour, /figures?until=), and the KPIs kept
    per day say they compare with all of yesterday."""
    asked: list[str] = []
    context.on("request", lambda r: asked.append(r.url) if "/figures?" in r.url else None)
    page, errors = _open(context, sp)  # today is the period it opens on
    change = page.locator('[data-kpi-change="revenue"]')
    expect(change).to_have_attribute("data-until", re.compile(r"^\d{4}-\d\d-\d\dT\d\d:00:00\.000Z$"))
    until = change.get_attribute("data-until")
    assert until is not None
    cut = dt.datetime.fromisoformat(until)
    assert abs(cut.timestamp() - (time.time() - 86_400)) <= 1_800 + 60, until
    now = sp.get("/api/v1/orgs/acme/figures", period="today").json()
    before = sp.get("/api/v1/orgs/acme/figures", period="yesterday", until=until).json()
    assert before["until"] == cut.isoformat()
    yesterday = (dt.date.fromisoformat(now["from"]) - dt.timedelta(days=1)).isoformat()
    assert [u for u in asked if f"from={yesterday}" in u and f"until={until.replace(':', '%3A')}" in u], asked
    hour = cut.astimezone(ZoneInfo("Europe/Berlin")).strftime("%-I:%M %p")  # the page's locale and zone
    for kpi, read in (("revenue", lambda b: b["gross_revenue"]["amount"]), ("orders", lambda b: b["paid_orders"])):
        new, old = read(now), read(before)
        if old == 0:
            want = "none yesterday until " + hour if new else "0% vs yesterday until " + hour
        else:
            pct = page.evaluate("""(c) => new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1,
                                                                           signDisplay: "exceptZero" }).format(c)""",
                                (new - old) / old)
            want = f"{pct} vs yesterday until {hour}"
        spaced = re.escape(want).replace("\\ ", "[ \u202f]")  # ICU puts a narrow no-break space before PM
        expect(page.locator(f'[data-kpi-change="{kpi}"]')).to_have_text(re.compile(f"^{spaced}$"))
    # conversion is kept per day: against all of yesterday, and it says so
    expect(page.locator('[data-kpi-change="conversion"]')).to_have_text(re.compile(r"(vs all of yesterday|none yesterday)$"))
    assert page.locator('[data-kpi-change="conversion"]').get_attribute("data-until") is None
    # 7 days so far: the 7 days before, cut at the same time (their last day is the one a week ago)
    page.select_option("#period", "7d")
    expect(change).not_to_have_attribute("data-until", until)
    week = change.get_attribute("data-until")
    assert week is not None and abs(dt.datetime.fromisoformat(week).timestamp() - (time.time() - 7 * 86_400)) <= 1_800 + 60
    first = dt.date.fromisoformat(now["from"]) - dt.timedelta(days=6)
    # read as the page reads them, beside its own re-reads: once in CI an answer came without the figures (its
    # message not kept; the organisation's read budget, a 429, is the likely one). Read until answered; a
    # refusal that lasts fails with its message
    now7 = wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/figures", period="7d").json(), lambda b: "gross_revenue" in b,
                     what="the 7 days' figures")
    before7 = wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/figures", **{
        "from": (first - dt.timedelta(days=7)).isoformat(), "to": (first - dt.timedelta(days=1)).isoformat(), "until": week}).json(),
        lambda b: "gross_revenue" in b, what="the 7 days before, cut at the same time")
    assert [u for u in asked if f"from={(first - dt.timedelta(days=7)).isoformat()}" in u
            and f"until={week.replace(':', '%3A')}" in u], asked
    new, old = now7["gross_revenue"]["amount"], before7["gross_revenue"]["amount"]
    cut = dt.datetime.fromisoformat(week).astimezone(ZoneInfo("Europe/Berlin"))
    if old:
        pct = page.evaluate("""(c) => new Intl.NumberFormat("en-US", { style: "percent", maximumFractionDigits: 1,
                                                                       signDisplay: "exceptZero" }).format(c)""", (new - old) / old)
        want = re.compile(rf"^{re.escape(pct)} vs previous period until {cut:%b} {cut.day}, {cut.year}, .*{cut:%M}")
    else:
        want = re.compile(rf"^none in the previous period until {cut:%b} {cut.day}, {cut.year}, .*{cut:%M}")
    expect(change).to_have_text(want)
    # conversion, kept per day, against the whole days before
    expect(page.locator('[data-kpi-change="conversion"]')).to_have_text(re.compile(r"(vs previous period|none in the previous period)$"))
    # yesterday is over: compared whole with the day before
    page.select_option("#period", "yesterday")
    expect(change).to_have_text(re.compile(r"(vs previous period|none in the previous period)$"))
    assert change.get_attribute("data-until") is None
    assert errors == [], errors


def test_products_of_two_stores_say_which_store(sp: Storepulse, context: BrowserContext) -> None:
    """A product's id is its store's own: the same name from two stores was two rows no one could tell apart.
    The lists name each row's store (the latest order naming it), and the Products view shows it."""
    # the site's "Mug" and a Stripe "Mug", each larger than every order before: the top two by revenue
    price = next(_amounts)
    major = f"{price // 100}.{price % 100:02d}"
    r = sp.post_events({"events": [{"type": "order_paid", "id": f"op-{uid()}", "time": int(time.time() * 1000) - 60_000,
                                    "customer": "cus_stores", "order": f"o-{uid()}", "amount": major, "currency": "EUR",
                                    "items": [{"product": "mug", "name": "Mug", "qty": 1, "price": major}]}]})
    assert r.status_code == 200, r.text
    _pay(sp, "cus_stores", product="Mug")
    rows = wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/products", period="7d", sort="revenue", limit=10).json(),
                     lambda b: [r["store"] for r in b["products"][:2]] == ["acme-stripe", "acme-site"], what="both Mugs on top")
    page, errors = _open(context, sp, view="products")
    page.select_option("#period", "7d")
    table = page.locator("#view-products table >> nth=0")
    expect(table.locator("thead th")).to_have_text(["Product", "Store", "Revenue", "Units", "Orders"])
    expect(table.locator("tbody tr td:nth-child(2)")).to_have_text([r["store"] for r in rows["products"]])
    mugs = [r["store"] for r in rows["products"] if (r["name"] or r["product"]) == "Mug"]
    assert sorted(mugs) == ["acme-site", "acme-stripe"], rows["products"]  # one name, two stores, two rows
    assert errors == [], errors


def test_repeat_purchase_card_counts_buyers_who_bought_before(sp: Storepulse, context: BrowserContext) -> None:
    """The shop's day 1 (its orders about 26 h before the shop was posted): its buyers each bought once
    that day and also before it, so they are repeat buyers; counting only the day's own orders showed
    0 % (the card on "today" was 0 % whatever the shop). Expected values from the shop's own events."""
    page, errors = _open(context, sp)
    berlin = ZoneInfo("Europe/Berlin")
    paid = sorted((e["time"], dt.datetime.fromtimestamp(e["time"] / 1000, berlin).date().isoformat(), e["customer"])
                  for e in shop_events(SHOP_NOW) if e["type"] == "order_paid")
    day = dt.datetime.fromtimestamp(SHOP_NOW / 1000 - 26 * 3600, berlin).date().isoformat()
    buyers = Counter(who for _, d, who in paid if d == day)
    before = {who for _, d, who in paid if d < day}
    repeat = sum(1 for who, n in buyers.items() if who in before or n >= 2)
    assert len(buyers) >= 3 and repeat >= 3 and all(n == 1 for n in buyers.values())  # the old rule: 0 %
    summary = sp.get("/api/v1/orgs/acme/customers", **{"from": day, "to": day}, limit=1).json()["summary"]
    assert (summary["customers"], summary["repeat_customers"]) == (len(buyers), repeat)
    assert summary["repeat_purchase_rate"] == round(repeat / len(buyers), 6)
    page.select_option("#period", "custom")
    page.fill("#from", day)
    page.fill("#to", day)
    page.locator("#to").dispatch_event("change")
    want = page.evaluate("async (r) => (await import('/static/format.js')).percent(r)", summary["repeat_purchase_rate"])
    expect(page.locator('[data-kpi="repeat"]')).to_have_text(want)
    assert want != "0%"
    assert errors == [], errors


def _members(sp: Storepulse, segment: str) -> set[str]:
    r = sp.get(f"/api/v1/orgs/acme/segments/{segment}/members", limit=1000)
    return {m["customer"] for m in r.json()["members"]} if r.status_code == 200 else set()


def _save_dialog(page: Page, button: str) -> Any:
    page.click(button)
    dialog = page.locator("dialog.save-segment")
    expect(dialog).to_be_visible()
    return dialog


def test_save_as_segment_reproduces_the_list(sp: Storepulse, context: BrowserContext) -> None:
    """ENGAGE "save as segment": the dialog shows the rule that reproduces the list, PUTs it, and the
    segment's members are the list's customers; a list no rule can express says so and saves nothing."""
    assert sp.get("/api/v1/orgs/acme/segments").status_code == 200, "the segments API is part of storepulse"
    page, errors = _open(context, sp, view="customers")
    page.select_option("#period", "7d")
    expect(page.locator("#view-customers tbody tr").first).to_be_visible()
    page.wait_for_load_state("networkidle")
    span = sp.get("/api/v1/orgs/acme/figures", period="7d").json()
    days = {"since": span["from"], "until": span["to"]}
    shown = sp.get("/api/v1/orgs/acme/customers", period="7d", sort="revenue", limit=20).json()["customers"]
    last = shown[-1]["revenue"]["amount"]
    dialog = _save_dialog(page, '[data-save-segment="customers"]')
    rule = json.loads(dialog.locator("[data-save-rule]").inner_text())
    assert rule == {"spent": {"gte": f"{last // 100}.{last % 100:02d}", **days}}
    name = f"Best {uid()}"
    dialog.locator("input").fill(name)
    dialog.get_by_role("button", name="Save as segment").click()
    expect(dialog.locator("[data-save-status]")).to_have_text(f"Saved: {name}. Its members appear in a moment.")
    everyone = sp.get("/api/v1/orgs/acme/customers", period="7d", sort="revenue", limit=1000).json()["customers"]
    want = {c["customer"] for c in everyone if c["revenue"]["amount"] >= last}
    assert {c["customer"] for c in shown} <= want
    seg = name.lower().replace(" ", "-")
    wait_json(sp, lambda: _members(sp, seg), lambda got: got == want, what=f"segment {seg}'s members")
    page.keyboard.press("Escape")
    expect(dialog).to_have_count(0)
    # registered and never bought: the predefined rule, registered within the period's days
    dialog = _save_dialog(page, '[data-save-segment="never-bought"]')
    rule = json.loads(dialog.locator("[data-save-rule]").inner_text())
    before, after = dt.date.fromisoformat(span["from"]) - dt.timedelta(days=1), dt.date.fromisoformat(span["to"]) + dt.timedelta(days=1)
    assert rule == {"all": [{"orders": {"eq": 0}}, {"registered_at": {"after": before.isoformat()}},
                            {"registered_at": {"before": after.isoformat()}}]}
    dialog.locator("input").fill(f"Never {uid()}")
    dialog.get_by_role("button", name="Save as segment").click()
    expect(dialog.locator("[data-save-status]")).to_contain_text("Saved")
    never = {c["customer"] for c in sp.get("/api/v1/orgs/acme/customers", period="7d", filter="never_bought", limit=1000).json()["customers"]}
    seg = dialog.locator("input").input_value().lower().replace(" ", "-")
    wait_json(sp, lambda: _members(sp, seg), lambda got: got == never and len(got) == 3, what=f"segment {seg}'s members")
    page.get_by_role("button", name="Close").click()
    # one store's list: a segment counts every store's orders, so no exact rule; nothing to save
    page.select_option("#store", "acme-site")
    dialog = _save_dialog(page, '[data-save-segment="customers"]')
    expect(dialog.locator("[data-save-reason]")).to_have_text(
        "A segment counts every store's orders: choose all stores to save this list as one.")
    expect(dialog.get_by_role("button", name="Save as segment")).to_have_count(0)
    page.get_by_role("button", name="Close").click()
    page.select_option("#store", "")
    page.click("#tab-carts")  # carts of a period: no rule says that
    dialog = _save_dialog(page, '[data-save-segment="carts-customers"]')
    expect(dialog.locator("[data-save-reason]")).to_contain_text("No segment rule says exactly who is in this list")
    page.get_by_role("button", name="Close").click()
    page.click("#tab-orders")  # whoever paid in the period
    dialog = _save_dialog(page, '[data-save-segment="orders-customers"]')
    assert json.loads(dialog.locator("[data-save-rule]").inner_text()) == {"orders": {"gte": 1, **days}}
    assert errors == [], errors


def test_a_share_link_cannot_save_a_segment(sp: Storepulse, context: BrowserContext) -> None:
    r = httpx.post(f"{sp.base}/api/v1/orgs/acme/shares", json={"expires": "1d", "label": "client"},
                   headers={"Authorization": f"Bearer {TOKENS['acme']}"}, timeout=10)
    assert r.status_code == 201, r.text
    page = context.new_page()
    page.goto(f"{sp.base}/#token={r.json()['token']}&view=customers")
    page.select_option("#period", "7d")
    expect(page.locator("#view-customers tbody tr").first).to_be_visible()
    before = sp.get("/api/v1/orgs/acme/segments").json()["segments"]
    dialog = _save_dialog(page, '[data-save-segment="customers"]')
    dialog.locator("input").fill("Not allowed")
    dialog.get_by_role("button", name="Save as segment").click()
    expect(dialog.locator("[data-save-status]")).to_have_text("a share link is read-only")
    assert sp.get("/api/v1/orgs/acme/segments").json()["segments"] == before
    # Nor does its Segments view offer a builder (its preview is a POST), or to edit or delete a segment.
    dialog.get_by_role("button", name="Close").click()
    page.click("#tab-segments")
    page.locator("#view-segments").get_by_role("button", name="Buyers", exact=True).click()
    expect(page.locator('#view-segments [data-growth="summary"]')).to_be_visible()
    expect(page.locator("#segment-rule")).to_be_hidden()
    expect(page.locator('#view-segments [data-act]')).to_have_count(0)


def test_marketing_content_table(sp: Storepulse, context: BrowserContext) -> None:
    """Per campaign or automation: type, last sent, people sent one, who opened and clicked (distinct
    people per day, summed over the period's days), open and click rates over the people sent one, and
    the attributed orders and revenue; as the shop's own e-mail events count them, and as the page shows
    them. The shop's campaign is sent to its seven customers 3 days ago; its automation's sends are not
    reported (no rates)."""
    berlin = ZoneInfo("Europe/Berlin")
    sent_at = SHOP_NOW - 3 * 24 * 3_600_000
    sends = [{"type": "email_sent", "id": f"sent-{k}", "time": sent_at + k, "customer": f"shop-c{k}", "campaign": "spring-sale"}
             for k in range(7)]
    assert sp.post_events({"events": sends}).status_code == 200
    span = sp.get("/api/v1/orgs/acme/figures", period="7d").json()
    people: dict[tuple[str, str], set[str]] = {}
    for e in shop_events(SHOP_NOW):
        day = dt.datetime.fromtimestamp(e["time"] / 1000, berlin).date().isoformat()
        if e["type"] in ("email_open", "email_click") and span["from"] <= day <= span["to"]:
            people.setdefault((e.get("campaign") or e["automation"], day), set()).add(e["customer"])
    clicked = {name: sum(len(p) for (n, _), p in people.items() if n == name) for name, _ in people}
    body = wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/attribution", period="7d").json(),
                     lambda b: any(c["sent"] == 7 for c in b["content"]), what="the sends")
    content = {c["campaign"]: c for c in body["content"]}
    assert set(content) == set(clicked) == {"spring-sale", "welcome"}
    for name, n in clicked.items():  # the shop only clicks: each click is an open too
        assert (content[name]["opened"], content[name]["clicked"], content[name]["click_to_open_rate"]) == (n, n, 1.0)
    spring, welcome = content["spring-sale"], content["welcome"]
    assert (spring["type"], welcome["type"]) == ("campaign", "automation")
    last = dt.datetime.fromtimestamp((sent_at + 6) / 1000, berlin).isoformat(timespec="milliseconds")
    assert (spring["sent"], spring["last_sent"], spring["open_rate"], spring["click_rate"]) == (
        7, last, round(clicked["spring-sale"] / 7, 6), round(clicked["spring-sale"] / 7, 6))
    assert (welcome["sent"], welcome["last_sent"], welcome["open_rate"], welcome["click_rate"]) == (0, None, None, None)
    money = {c["campaign"]: (c["orders"], c["revenue"]) for c in body["campaigns"]}
    assert {k: (c["orders"], c["revenue"]) for k, c in content.items() if c["orders"]} == money and money
    page, errors = _open(context, sp, view="marketing")
    page.select_option("#period", "7d")
    rows = page.locator("#view-marketing .scroll tbody tr")
    expect(rows).to_have_count(len(body["content"]))
    pct = "async (r) => r === null ? '–' : (await import('/static/format.js')).percent(r)"
    for i, c in enumerate(body["content"]):
        cells = rows.nth(i).locator("td")
        expect(cells.nth(0)).to_have_text(c["campaign"])
        expect(cells.nth(1)).to_have_text(c["type"].capitalize())
        expect(cells.nth(3)).to_have_text(str(c["sent"]))
        expect(cells.nth(4)).to_have_text(str(c["opened"]))
        expect(cells.nth(5)).to_have_text(page.evaluate(pct, c["open_rate"]))
        expect(cells.nth(6)).to_have_text(str(c["clicked"]))
        expect(cells.nth(7)).to_have_text(page.evaluate(pct, c["click_rate"]))
        expect(cells.nth(8)).to_have_text(str(c["orders"]))
        expect(cells.nth(9)).to_have_text(f"€{c['revenue']['amount'] / 100:,.2f}")
    expect(rows.filter(has_text="welcome").locator("td").nth(2)).to_have_text("–")
    # One day: each campaign's attributed revenue as a bar (a line of one point drew nothing).
    page.select_option("#period", "today")
    today = sp.get("/api/v1/orgs/acme/attribution", period="today").json()
    want = [(c["campaign"], c["revenue"]["amount"]) for c in today["campaigns"][:5]] or [("E-mail-attributed revenue", 0)]
    bars = page.locator('[data-chart="attributed-day"] li')
    expect(bars).to_have_count(len(want))
    for i, (name, amount) in enumerate(want):
        expect(bars.nth(i).locator(".label")).to_have_text(name)
        expect(bars.nth(i).locator(".num")).to_have_text(f"€{amount / 100:,.2f}")
    assert errors == [], errors


def test_best_carts_are_the_open_ones_by_value(sp: Storepulse, context: BrowserContext) -> None:
    now = int(time.time() * 1000)
    tag = uid()
    carts = [("a", "3000.00", False), ("b", "50.00", False), ("c", "4000.00", True)]  # c is bought: not open
    events: list[dict[str, Any]] = []
    for name, amount, bought in carts:
        cart = f"best-{tag}-{name}"
        events.append({"type": "cart_updated", "id": f"cu-{cart}", "time": now - 60_000, "customer": f"cus-{cart}", "cart": cart,
                       "currency": "EUR", "amount": amount, "items": [{"product": "lamp", "qty": 1, "price": amount}],
                       **({"properties": {"customer_name": "Ada Best"}} if name == "a" else {})})  # typed at a checkout
        if bought:
            events.append({"type": "order_paid", "id": f"op-{cart}", "time": now - 30_000, "customer": f"cus-{cart}", "cart": cart,
                           "order": f"o-{cart}", "currency": "EUR", "amount": amount,
                           "items": [{"product": "lamp", "qty": 1, "price": amount}]})
    assert sp.post_events({"events": events}).status_code == 200
    body = wait_json(sp, lambda: sp.get("/api/v1/orgs/acme/carts", period="today", limit=20).json(),
                     lambda b: any(c["cart"] == f"best-{tag}-b" for c in b["best_carts"]), what="the open carts")
    best = body["best_carts"]
    assert all(c["status"] == "open" and c["currency"] == "EUR" for c in best)
    assert [c["value"] for c in best] == sorted((c["value"] for c in best), reverse=True)
    mine = [(c["cart"], c["value"]) for c in best if c["cart"].startswith(f"best-{tag}")]
    assert mine == [(f"best-{tag}-a", 300_000), (f"best-{tag}-b", 5_000)]
    page, errors = _open(context, sp, view="carts")
    page.select_option("#period", "today")
    rows = page.locator("#view-carts .cards > section:nth-child(2) tbody tr")
    expect(rows).to_have_count(min(len(best), 10))
    expect(rows.first).to_contain_text(best[0]["cart"])
    expect(rows.first.locator("td").last).to_have_text(f"€{best[0]['value'] / 100:,.2f}")
    expect(page.locator("#view-carts .cards > section:nth-child(2)")).not_to_contain_text(f"best-{tag}-c")
    # the customer as the cart's checkout named them, else the id
    expect(rows.filter(has_text=f"best-{tag}-a").locator("td").nth(3)).to_have_text("Ada Best")
    expect(rows.filter(has_text=f"best-{tag}-b").locator("td").nth(3)).to_have_text(f"cus-best-{tag}-b")
    assert errors == [], errors


def test_the_funnel_ends_with_the_periods_repeat_customers(sp: Storepulse, context: BrowserContext) -> None:
    """Visits, added to cart, purchased from /journey; purchased again = /customers' repeat customers (the
    journey's purchased_again counts two orders on one day: 0 for the shop, whose buyers buy once a day)."""
    page, errors = _open(context, sp)
    page.select_option("#period", "7d")
    page.wait_for_load_state("networkidle")
    journey = sp.get("/api/v1/orgs/acme/journey", period="7d").json()
    repeat = sp.get("/api/v1/orgs/acme/customers", period="7d", limit=1).json()["summary"]["repeat_customers"]
    assert repeat > 0 and journey["purchased_again"] == 0
    share = page.evaluate("async ([n, d]) => (await import('/static/format.js')).percent(n / d)", [repeat, journey["visitors"]])
    expect(page.locator('[data-step="purchased_again"] .num')).to_have_text(f"{repeat:,} ({share})")
    expect(page.locator('[data-step="visitors"] .num')).to_have_text(re.compile(rf"^{journey['visitors']:,} \(100%\)$"))
    assert errors == [], errors


def test_the_rule_of_each_list_or_why_there_is_none(sp: Storepulse, context: BrowserContext) -> None:
    page, _ = _open(context, sp)
    got = page.evaluate("""async () => {
        const { segmentOf, segmentId } = await import('/static/segment_of.js');
        const f = { span: { from: '2026-03-01', to: '2026-03-07' }, store: '', currency: 'EUR', orgCurrency: 'EUR', segment: '' };
        const row = (amount, orders, items) => ({ revenue: { amount, currency: 'EUR', exponent: 2 }, orders, items });
        return [
            segmentOf('best', { rows: [row(9000, 3, 5), row(1050, 2, 4)], sort: 'revenue' }, f),
            segmentOf('best', { rows: [row(9000, 3, 5), row(1050, 2, 4)], sort: 'items' }, { ...f, segment: 'vip' }),
            segmentOf('best', { rows: [row(0, 1, 1)], sort: 'revenue' }, f),
            segmentOf('best', { rows: [row(1050, 2, 4)], sort: 'revenue' }, { ...f, currency: 'USD' }),
            segmentOf('best', { rows: [], sort: 'revenue' }, f),
            segmentOf('orders', { total: 1001 }, f),
            segmentOf('never_bought', {}, { ...f, span: null }),
            segmentOf('never_bought', {}, { ...f, store: 'shop-2' }),
            segmentOf('carts', {}, f),
            [segmentId('  Große Kunden: März! '), segmentId('x'.repeat(80)).length, segmentId('!!!')],
        ];
    }""")
    days = {"since": "2026-03-01", "until": "2026-03-07"}
    assert got == [
        {"rule": {"spent": {"gte": "10.50", **days}}},
        {"rule": {"all": [{"items": {"gte": 4, **days}}, {"in_segment": {"eq": "vip"}}]}},
        {"rule": {"all": [{"spent": {"gte": "0.00", **days}}, {"orders": {"gte": 1, **days}}]}},
        {"reason": "save.reason_currency"}, {"reason": "save.reason_empty"}, {"reason": "save.reason_more"},
        {"reason": "save.reason_period"}, {"reason": "save.reason_store"}, {"reason": "save.reason_list"},
        ["grosse-kunden-marz", 64, ""],
    ]
