"""Shopify adapter: every shared fixture signed and normalised exactly, bad deliveries refused with a
useful message, random input never crashes it, and signed deliveries move the figures over real HTTP.

The fixtures are Shopify's own 2026-04 sample payloads (../shared/fixtures/webhooks/SOURCES.md). The
three order samples are one and the same body: `financial_status: voided` with `cancelled_at` set,
even the orders/paid one. Events follow the signed state, never the unsigned topic header, so that
sample says "cancelled, never paid"; tests that need a paid order set the state a real orders/paid
delivery has (`financial_status: paid`).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import Store
from core.events import Event, Item, Kind
from ingest import shopify
from ingest.adapter import Delivery, Outcome
from ingest.errors import BadPayload, BadSignature, Rejected
from tests.helpers import SHARED, RedisServer, Storepulse

FIXTURES = SHARED / "fixtures" / "webhooks" / "shopify"
needs_shared = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"../shared is absent: no Shopify fixtures at {FIXTURES}"
)

SECRET = "shpss_4f1c0a8e2b7d_test_secret"
STORE = Store(id="snowdevil", org="snow", provider="shopify", secret=SECRET, currency="USD")
P = "shopify:snowdevil"
EVENT_ID = "59d6d79c-595f-4e7e-bc6f-72f5c3d0c66f"  # as in _delivery_headers.docs-example.http
WEBHOOK_ID = "545ebdd4-b7be-4d3d-b14e-54aa78e0e0f9"
NOON_2022 = 1640995200000  # 2021-12-31T19:00:00-05:00 == 2022-01-01T00:00:00Z, every sample's timestamp

TOPICS = {  # fixture file -> the topic it is the sample of
    "orders_create.json": "orders/create",
    "orders_paid.json": "orders/paid",
    "orders_cancelled.json": "orders/cancelled",
    "refunds_create.json": "refunds/create",
    "checkouts_create.json": "checkouts/create",
    "checkouts_update.json": "checkouts/update",
    "carts_create.json": "carts/create",
    "carts_update.json": "carts/update",
    "customers_create.json": "customers/create",
    "customers_update.json": "customers/update",
    "products_update.json": "products/update",
}


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def headers(body: bytes, topic: str, secret: str = SECRET, **extra: str) -> dict[str, str]:
    """What Shopify sends (lower-case names, as ingest hands them to adapters)."""
    hdrs = {
        "content-type": "application/json",
        "x-shopify-topic": topic,
        "x-shopify-hmac-sha256": shopify.sign(body, secret),
        "x-shopify-shop-domain": "snowdevil.myshopify.com",
        "x-shopify-api-version": "2026-04",
        "x-shopify-webhook-id": WEBHOOK_ID,
        "x-shopify-triggered-at": "2025-07-10T16:15:47.000000Z",
        "x-shopify-event-id": EVENT_ID,
    }
    hdrs.update({k.replace("_", "-").lower(): v for k, v in extra.items()})
    return hdrs


def deliver(body: bytes, topic: str, now: float = 1_800_000_000.0, drop: tuple[str, ...] = (), **extra: str) -> Outcome:
    hdrs = {k: v for k, v in headers(body, topic, **extra).items() if k not in drop}
    return shopify.handle(Delivery(body, hdrs), STORE, now)


def edited(name: str, change: Callable[[dict[str, Any]], None]) -> bytes:
    """A fixture changed in place; orjson keeps its big ids exact both ways."""
    doc = orjson.loads(fixture(name))
    change(doc)
    return orjson.dumps(doc)


def paid_order(doc: dict[str, Any]) -> None:
    """The sample order as a real orders/paid delivery shows it."""
    doc.update(financial_status="paid", cancelled_at=None, cancel_reason=None)


# --- what every fixture must become ------------------------------------------------------------

ORDER = "820982911946154508"  # above 2**53: Gadget's scrape had rounded it to ...500
ORDER_ITEMS = (
    Item(product="788032119674292922", qty=1, unit_price=8999, name="Aviator sunglasses"),
    Item(product="sku:LENS-PROTECT-2YR", qty=1, unit_price=1999, name="Lens Protection Plan (2 Year)"),
    Item(product="sku:CASE-LEATHER-PREM", qty=1, unit_price=2499, name="Premium Leather Case"),
    Item(product="788032119674292922", qty=1, unit_price=15999, name="Mid-century lounger"),
    Item(product="788032119674292922", qty=1, unit_price=11999, name="Coffee table"),
)
ORDER_FIELDS: dict[str, Any] = dict(
    org="snow", store="snowdevil", time=NOON_2022, amount=40495, currency="USD", customer="115310627314723954",
    order=ORDER, raw_id=ORDER, items=ORDER_ITEMS, attrs={"name": "#9999", "source_name": "web", "test": True,
                                          # the customer's e-mail and name, not the order's contact e-mail
                                          # or the billing name ("Steve Shipper")
                                          "email": "john@example.com", "customer_name": "John Smith"},
)
CANCELLED = Event(id=f"{P}:order:{ORDER}:cancelled", kind=Kind.ORDER_CANCELLED,
                  **{**ORDER_FIELDS, "attrs": {**ORDER_FIELDS["attrs"], "reason": "customer"}})
PAID = Event(id=f"{P}:order:{ORDER}:paid", kind=Kind.ORDER_PAID, **ORDER_FIELDS)
REFUND = Event(
    id=f"{P}:refund:890088186047892319", kind=Kind.ORDER_REFUNDED, org="snow", store="snowdevil", time=NOON_2022,
    # transactions[]: 75.00 + 10.00, both kind "refund", status "success"; not the 414.95 of the lines.
    amount=8500, currency="USD", order=ORDER, refund="890088186047892319", raw_id="890088186047892319",
    items=ORDER_ITEMS, attrs={"note": "Things were damaged"},
)
IPOD = Item(product="808950810", qty=1, unit_price=19900, name="IPod Nano - 8GB", brand="Apple")
CHECKOUT_FIELDS: dict[str, Any] = dict(
    org="snow", store="snowdevil", time=NOON_2022, amount=42188, currency="USD", customer="603851970716743426",
    cart="eeafa272cebfd4b22385bc4b645e762c", raw_id="123123123", items=(IPOD, IPOD),
    attrs={"checkout": "123123123",
           "recovery_url": "https://checkout.local/548380009/checkouts/123123123/recover?key=example-secret-token",
           "email": "john@example.com", "customer_name": "John Smith"},
)
CHECKOUT = [
    Event(id=f"{P}:checkout:123123123:started", kind=Kind.CHECKOUT_STARTED, **CHECKOUT_FIELDS),
    Event(id=f"{P}:checkout:123123123:{EVENT_ID}", kind=Kind.CART_UPDATED, **CHECKOUT_FIELDS),
]
CART = Event(
    id=f"{P}:cart:exampleCartId:{EVENT_ID}", kind=Kind.CART_UPDATED, org="snow", store="snowdevil", time=NOON_2022,
    amount=5997, currency="USD", cart="exampleCartId", raw_id="exampleCartId",
    items=(Item(product="704912205188288575", qty=3, unit_price=1999, name="Example T-Shirt - Small", brand="Acme"),),
)
CUSTOMER_FIELDS: dict[str, Any] = dict(
    org="snow", store="snowdevil", time=NOON_2022, customer="706405506930370084", raw_id="706405506930370084",
    attrs={"email": "bob@biller.com", "first_name": "Bob", "last_name": "Biller", "state": "disabled",
           "created_at": NOON_2022, "country": "CA", "verified_email": True},
)
PRODUCT = Event(
    id=f"{P}:product:788032119674292922:updated:{EVENT_ID}", kind=Kind.PRODUCT_UPDATED, org="snow",
    store="snowdevil", time=NOON_2022, amount=1999, currency="USD", raw_id="788032119674292922",
    attrs={"name": "Example T-Shirt", "sku": "", "price": 1999, "categories": ["Shirts"], "brand": "Acme",
           "status": "active", "handle": "example-t-shirt", "tags": ["example", "mens", "t-shirt"],
           "variants": [{"id": "642667041472713922", "title": "Small", "price": 1999},
                        {"id": "757650484644203962", "title": "Medium", "price": 1999}]},
)
EXPECTED: dict[str, list[Event]] = {
    # Voided (the authorisation was released, nothing captured) and cancelled, whatever the topic.
    "orders_create.json": [CANCELLED],
    "orders_cancelled.json": [CANCELLED],
    "orders_paid.json": [CANCELLED],
    "refunds_create.json": [REFUND],
    "checkouts_create.json": CHECKOUT,
    "checkouts_update.json": CHECKOUT,
    "carts_create.json": [CART],
    "carts_update.json": [CART],
    "customers_create.json": [
        Event(id=f"{P}:customer:706405506930370084:created", kind=Kind.CUSTOMER_CREATED, **CUSTOMER_FIELDS)],
    "customers_update.json": [
        Event(id=f"{P}:customer:706405506930370084:updated:{EVENT_ID}", kind=Kind.CUSTOMER_UPDATED,
              **CUSTOMER_FIELDS)],
    "products_update.json": [PRODUCT],
}


@needs_shared
def test_every_fixture_file_has_an_expectation() -> None:
    payloads = {p.name for p in FIXTURES.glob("*.json") if not p.name.startswith("_")}
    assert payloads == set(EXPECTED) == set(TOPICS)


@needs_shared
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_normalises_exactly(name: str) -> None:
    out = deliver(fixture(name), TOPICS[name])
    assert out.topic == TOPICS[name]
    assert out.ignored is None
    assert out.events == EXPECTED[name]
    for event in out.events:  # and each survives the log's serialisation unchanged
        assert orjson.loads(event.to_json())["id"] == event.id


@needs_shared
def test_ids_above_2_53_stay_exact() -> None:
    """Every restored big id we use comes out with its real digits, never Gadget's float-rounded ones."""
    log = json.loads((FIXTURES / "_restoration_log.json").read_text())
    used = re.compile(r"^\.(id|order_id|customer\.id|line_items\[\d+\]\.(product_id|variant_id)"
                      r"|refund_line_items\[\d+\]\.line_item\.product_id|variants\[\d+\]\.id)$")
    checked = 0
    for topic, entry in log.items():
        name = topic.replace("/", "_") + ".json"
        blob = b"".join(e.to_json() for e in deliver(fixture(name), topic).events)
        for path, rounded, restored in entry["fixes"]:
            assert f'"{rounded}"'.encode() not in blob, (topic, path)
            if not used.match(path) or (topic.startswith("carts/") and path.endswith("product_id")):
                continue  # not a key we emit (a cart line is keyed by its variant)
            value = int(restored)
            assert value > 2**53 and int(float(value)) != value, path  # a float cannot hold it
            assert f'"{restored}"'.encode() in blob, (topic, path)
            checked += 1
    assert checked >= 20
    # And named explicitly: the order, its customer, a product, the refund.
    [paid] = deliver(edited("orders_paid.json", paid_order), "orders/paid").events
    assert paid.order == paid.raw_id == "820982911946154508" and paid.customer == "115310627314723954"
    assert paid.items[0].product == "788032119674292922"
    assert deliver(fixture("refunds_create.json"), "refunds/create").events[0].refund == "890088186047892319"


@needs_shared
def test_timestamps_with_offsets_are_exact_utc_milliseconds() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["processed_at"] = "2022-03-27T02:30:00.123+05:30"
    [cancelled] = deliver(edited("orders_create.json", change), "orders/create").events
    assert cancelled.time == NOON_2022  # cancelled_at 2021-12-31T19:00:00-05:00

    def paid(doc: dict[str, Any]) -> None:
        paid_order(doc)
        change(doc)
    [event] = deliver(edited("orders_paid.json", paid), "orders/paid").events
    assert event.time == 1648328400123  # 2022-03-26T21:00:00.123Z


# --- one fact, one id, whatever delivers it ----------------------------------------------------


@needs_shared
def test_create_paid_updated_and_redelivery_give_one_order_paid() -> None:
    body = edited("orders_paid.json", paid_order)
    seen = [
        deliver(body, "orders/create", x_shopify_event_id="e1"),
        deliver(body, "orders/paid", x_shopify_event_id="e2"),
        deliver(body, "orders/updated", x_shopify_event_id="e3"),
        deliver(body, "orders/paid", x_shopify_event_id="e2"),
    ]
    events = [e for out in seen for e in out.events]
    assert {e.kind for e in events} == {Kind.ORDER_PAID}
    assert {e.id for e in events} == {PAID.id}
    assert all(e == events[0] for e in events)
    assert events[0] == Event(id=PAID.id, kind=Kind.ORDER_PAID, **{**ORDER_FIELDS})


@needs_shared
def test_refund_listed_by_orders_updated_is_the_same_event_as_refunds_create() -> None:
    refund = orjson.loads(fixture("refunds_create.json"))

    def change(doc: dict[str, Any]) -> None:
        paid_order(doc)
        doc["financial_status"] = "partially_refunded"
        doc["refunds"] = [refund]
    out = deliver(edited("orders_paid.json", change), "orders/updated")
    assert out.events == [PAID, REFUND]
    assert deliver(fixture("refunds_create.json"), "refunds/create").events == [REFUND]


@needs_shared
@pytest.mark.parametrize(("status", "cancelled", "kinds"), [
    ("pending", False, [Kind.ORDER_PLACED]),
    ("authorized", False, [Kind.ORDER_PLACED]),
    ("partially_paid", False, [Kind.ORDER_PLACED]),
    ("voided", False, [Kind.ORDER_PLACED]),
    ("paid", False, [Kind.ORDER_PAID]),
    ("partially_refunded", False, [Kind.ORDER_PAID]),
    ("refunded", False, [Kind.ORDER_PAID]),  # never saw it paid, but refunded means it was
    ("paid", True, [Kind.ORDER_PAID, Kind.ORDER_CANCELLED]),
    ("pending", True, [Kind.ORDER_CANCELLED]),
])
def test_order_events_follow_the_state_not_the_history(status: str, cancelled: bool, kinds: list[Kind]) -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["financial_status"] = status
        if not cancelled:
            doc["cancelled_at"] = None
    out = deliver(edited("orders_create.json", change), "orders/updated")
    assert [e.kind for e in out.events] == kinds
    placed = [e for e in out.events if e.kind is Kind.ORDER_PLACED]
    if placed:
        assert placed[0] == Event(id=f"{P}:order:{ORDER}:placed", kind=Kind.ORDER_PLACED, **ORDER_FIELDS)


@needs_shared
def test_paid_time_is_the_first_successful_capture() -> None:
    def change(doc: dict[str, Any]) -> None:
        paid_order(doc)
        doc["transactions"] = [
            {"kind": "authorization", "status": "success", "created_at": "2021-12-31T19:00:00-05:00"},
            {"kind": "capture", "status": "failure", "processed_at": "2022-01-01T12:00:00+01:00"},
            {"kind": "capture", "status": "success", "processed_at": "2022-01-02T10:30:00.250+05:30"},
        ]
    [paid] = deliver(edited("orders_paid.json", change), "orders/paid").events
    assert paid.time == 1641099600250  # 2022-01-02T05:00:00.250Z


@needs_shared
def test_order_from_a_checkout_completes_it_under_the_checkouts_own_id() -> None:
    def order(doc: dict[str, Any]) -> None:
        paid_order(doc)
        doc["checkout_token"] = "123123123"
        doc["cart_token"] = "eeafa272cebfd4b22385bc4b645e762c"

    def completed(doc: dict[str, Any]) -> None:
        doc["completed_at"] = "2022-01-01T00:05:00Z"
    from_order = deliver(edited("orders_paid.json", order), "orders/paid").events
    assert [e.kind for e in from_order] == [Kind.ORDER_PAID, Kind.CHECKOUT_COMPLETED]
    assert from_order[0].cart == from_order[1].cart == "eeafa272cebfd4b22385bc4b645e762c"
    from_checkout = deliver(edited("checkouts_update.json", completed), "checkouts/update").events
    # A completed checkout is no longer an open cart: started + completed, no CART_UPDATED.
    assert [e.kind for e in from_checkout] == [Kind.CHECKOUT_STARTED, Kind.CHECKOUT_COMPLETED]
    assert from_checkout[1].id == from_order[1].id == f"{P}:checkout:123123123:completed"
    assert from_checkout[1].time == NOON_2022 + 300_000


@needs_shared
def test_one_per_delivery_facts_use_event_id_then_webhook_id_then_updated_at() -> None:
    body = fixture("customers_update.json")
    assert deliver(body, "customers/update").events[0].id.endswith(f":updated:{EVENT_ID}")
    assert deliver(body, "customers/update").events == deliver(body, "customers/update").events  # redelivery
    no_event = deliver(body, "customers/update", drop=("x-shopify-event-id",)).events[0]
    assert no_event.id == f"{P}:customer:706405506930370084:updated:{WEBHOOK_ID}"
    bare = deliver(body, "customers/update", drop=("x-shopify-event-id", "x-shopify-webhook-id")).events[0]
    assert bare.id == f"{P}:customer:706405506930370084:updated:at{NOON_2022}"
    other = deliver(fixture("carts_update.json"), "carts/update", x_shopify_event_id="another").events[0]
    assert other.id == f"{P}:cart:exampleCartId:another"


# --- money: shop currency first, presentment kept when it differs --------------------------------


@needs_shared
def test_presentment_money_is_kept_when_the_buyer_paid_in_another_currency() -> None:
    def change(doc: dict[str, Any]) -> None:
        paid_order(doc)
        doc["presentment_currency"] = "EUR"
        doc["total_price_set"]["presentment_money"] = {"amount": "371.18", "currency_code": "EUR"}
    [paid] = deliver(edited("orders_paid.json", change), "orders/paid").events
    assert (paid.amount, paid.currency) == (40495, "USD")
    assert (paid.presentment_amount, paid.presentment_currency) == (37118, "EUR")


@needs_shared
def test_zero_decimal_shop_currency() -> None:
    def change(doc: dict[str, Any]) -> None:
        paid_order(doc)
        doc["currency"] = "JPY"
        doc["total_price_set"] = {"shop_money": {"amount": "61000", "currency_code": "JPY"},
                                  "presentment_money": {"amount": "61000", "currency_code": "JPY"}}
        for line in doc["line_items"]:
            line["price_set"]["shop_money"] = {"amount": "12200", "currency_code": "JPY"}
    [paid] = deliver(edited("orders_paid.json", change), "orders/paid").events
    assert (paid.amount, paid.currency, paid.presentment_amount) == (61000, "JPY", None)
    assert {i.unit_price for i in paid.items} == {12200}


@needs_shared
def test_refund_in_a_foreign_presentment_currency_is_valued_in_shop_money_by_its_lines() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["refund_line_items"] = doc["refund_line_items"][:1]  # the sunglasses, 89.99 USD
        for tx in doc["transactions"]:
            tx["currency"] = "EUR"
        doc["transactions"][0]["amount"] = "72.00"
        doc["transactions"][1]["amount"] = "8.55"
    [refund] = deliver(edited("refunds_create.json", change), "refunds/create").events
    assert (refund.amount, refund.currency) == (8999, "USD")
    assert (refund.presentment_amount, refund.presentment_currency) == (8055, "EUR")


@needs_shared
def test_refund_transactions_with_shop_money_sets_are_summed_exactly() -> None:
    def change(doc: dict[str, Any]) -> None:
        for tx, (usd, eur) in zip(doc["transactions"], [("81.37", "75.00"), ("10.85", "10.00")]):
            tx["currency"] = "EUR"
            tx["amount_set"] = {"shop_money": {"amount": usd, "currency_code": "USD"},
                                "presentment_money": {"amount": eur, "currency_code": "EUR"}}
    [refund] = deliver(edited("refunds_create.json", change), "refunds/create").events
    assert (refund.amount, refund.currency, refund.presentment_amount, refund.presentment_currency) == \
        (9222, "USD", 8500, "EUR")


@needs_shared
def test_refund_that_moved_no_money_is_acknowledged_but_not_recorded() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["transactions"][0]["status"] = "pending"
        doc["transactions"][1]["status"] = "failure"
    out = deliver(edited("refunds_create.json", change), "refunds/create")
    assert out.events == []
    assert out.ignored == "refund 890088186047892319 moved no money (no successful refund transaction)"


@needs_shared
def test_refund_without_a_transactions_list_is_valued_by_its_lines_and_shipping() -> None:
    def change(doc: dict[str, Any]) -> None:
        del doc["transactions"]
        doc["refund_shipping_lines"] = [{"id": 1, "subtotal_amount_set": {
            "shop_money": {"amount": "10.00", "currency_code": "USD"},
            "presentment_money": {"amount": "10.00", "currency_code": "USD"}}}]
    [refund] = deliver(edited("refunds_create.json", change), "refunds/create").events
    assert refund.amount == 41495 + 1000


@needs_shared
def test_guest_order_is_keyed_by_its_lower_cased_email() -> None:
    def change(doc: dict[str, Any]) -> None:
        paid_order(doc)
        doc["customer"] = None
        doc["email"] = " Jon@Example.com"
    [paid] = deliver(edited("orders_paid.json", change), "orders/paid").events
    assert paid.customer == "jon@example.com"
    # what the guest typed: the e-mail as written, the billing address's name
    assert (paid.attrs["email"], paid.attrs["customer_name"]) == ("Jon@Example.com", "Steve Shipper")

    def unnamed(doc: dict[str, Any]) -> None:
        change(doc)
        doc["billing_address"] = {"first_name": "Ana", "last_name": None}
    [paid] = deliver(edited("orders_paid.json", unnamed), "orders/paid").events
    assert (paid.attrs["email"], paid.attrs["customer_name"]) == ("Jon@Example.com", "Ana")


@needs_shared
def test_customer_with_counts_and_spend() -> None:
    def change(doc: dict[str, Any]) -> None:
        doc["orders_count"] = 3
        doc["total_spent"] = "1204.50"
        doc["email_marketing_consent"] = {"state": "subscribed"}
    [event] = deliver(edited("customers_update.json", change), "customers/update").events
    assert event.attrs["orders_count"] == 3
    assert event.attrs["total_spent"] == 120450 and event.attrs["currency"] == "USD"
    assert event.attrs["accepts_marketing"] is True


def test_deleted_order_is_cancelled_at_the_time_shopify_triggered_the_webhook() -> None:
    body = b'{"id":820982911946154508}'
    [event] = deliver(body, "orders/delete").events
    assert event == Event(id=f"{P}:order:{ORDER}:cancelled", kind=Kind.ORDER_CANCELLED, org="snow",
                          store="snowdevil", time=1752164147000, order=ORDER, raw_id=ORDER,
                          attrs={"reason": "deleted"})
    [late] = deliver(body, "orders/delete", now=1752164200.5, drop=("x-shopify-triggered-at",)).events
    assert late.time == 1752164200500 and late.id == event.id


@needs_shared
def test_a_relabelled_topic_moves_nothing() -> None:
    """The topic header is not covered by the HMAC: a captured body under another topic proves nothing."""
    assert [e.kind for e in deliver(fixture("orders_create.json"), "orders/paid").events] == [Kind.ORDER_CANCELLED]
    with pytest.raises(BadPayload, match="describes the whole order 820982911946154508, not a deletion"):
        deliver(fixture("orders_create.json"), "orders/delete")


def test_unknown_topic_is_acknowledged_and_ignored() -> None:
    out = deliver(b'{"id": 1}', "app/uninstalled")
    assert out == Outcome("app/uninstalled", [], ignored="topic 'app/uninstalled' is not used")


# --- bad deliveries ----------------------------------------------------------------------------


@needs_shared
def test_signature_is_checked_on_the_raw_bytes() -> None:
    body = fixture("orders_paid.json")
    good = headers(body, "orders/paid")

    def attempt(b: bytes, hdrs: dict[str, str]) -> str:
        with pytest.raises(BadSignature) as info:
            shopify.handle(Delivery(b, hdrs), STORE, 0)
        return info.value.message

    assert attempt(body, {k: v for k, v in good.items() if k != "x-shopify-hmac-sha256"}) == \
        "missing X-Shopify-Hmac-Sha256 header"
    assert "does not match the body" in attempt(body, headers(body, "orders/paid", secret="someone-else"))
    assert "does not match the body" in attempt(body.replace(b"404.95", b"4.95"), good)
    # Re-serialised JSON is not the bytes Shopify signed.
    assert "does not match the body" in attempt(json.dumps(json.loads(body)).encode(), good)
    assert "is not base64" in attempt(body, {**good, "x-shopify-hmac-sha256": "not base64!"})
    assert "is not base64" in attempt(body, {**good, "x-shopify-hmac-sha256": "héllo=="})
    # The illustrative HMAC of Shopify's docs example is exactly that: it signs nothing of ours.
    docs_hmac = "xT6yH5jZfQm6Q3lC8nA0r7sV2bP9dK1eL4wG0hM5nYI="
    assert "does not match" in attempt(body, {**good, "x-shopify-hmac-sha256": docs_hmac})


def test_a_missing_topic_and_a_body_that_is_not_json_are_refused() -> None:
    body = b'{"id": 1}'
    with pytest.raises(BadPayload, match="missing X-Shopify-Topic header"):
        deliver(body, "orders/paid", drop=("x-shopify-topic",))
    with pytest.raises(BadPayload, match="body is not JSON"):
        deliver(b"id=1&total=2", "orders/paid")
    with pytest.raises(BadPayload, match="must be a JSON object, got list"):
        deliver(b"[1, 2]", "orders/paid")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value
    return change


_DELETE = object()


@needs_shared
@pytest.mark.parametrize(("name", "path", "value", "message"), [
    ("orders_paid.json", "id", _DELETE, "order.id is missing"),
    ("orders_paid.json", "id", 8.209829119461545e17, "order.id must be an integer id, got the number"),
    ("orders_paid.json", "id", {"n": 1}, "order.id must be an integer id"),
    ("orders_paid.json", "line_items.2.quantity", "1", "order.line_items[2].quantity must be a non-negative integer"),
    ("orders_paid.json", "line_items.0.price_set.shop_money.amount", "eighty",
     "order.line_items[0].price_set.shop_money.amount is not a decimal amount"),
    ("orders_paid.json", "line_items", "none", "order.line_items must be a list"),
    ("orders_paid.json", "line_items", _DELETE, "order.line_items is missing"),
    ("orders_paid.json", "total_price_set.shop_money.currency_code", "ZZZ",
     "order.total_price_set.shop_money.currency_code: unknown currency 'ZZZ'"),
    ("orders_paid.json", "total_price_set", _DELETE, None),  # falls back to total_price "404.95": fine
    ("orders_paid.json", "processed_at", "2021-12-31T19:00:00",
     "order.processed_at '2021-12-31T19:00:00' has no UTC offset"),
    ("orders_paid.json", "processed_at", "last tuesday", "order.processed_at is not an ISO 8601 timestamp"),
    ("orders_create.json", "cancelled_at", 1640995200, "order.cancelled_at must be an ISO 8601 timestamp"),
    ("refunds_create.json", "order_id", _DELETE, "refund.order_id is missing"),
    ("refunds_create.json", "transactions.1.currency", "CAD", "refund.transactions are in several currencies"),
    ("refunds_create.json", "transactions.0.amount", None, "refund.transactions[0].amount is missing"),
    ("checkouts_create.json", "token", _DELETE, "checkout.token is missing"),
    ("carts_update.json", "line_items.0", "shirt", "cart.line_items[0] must be an object"),
    ("customers_create.json", "created_at", _DELETE, None),  # falls back to updated_at
    ("products_update.json", "variants.1.price", [19.99], "product.variants[1].price must be a decimal amount"),
])
def test_bad_payloads_say_what_is_wrong(name: str, path: str, value: Any, message: str | None) -> None:
    def change(doc: dict[str, Any]) -> None:
        if name == "orders_paid.json":  # as really paid, so that every order field is read
            paid_order(doc)
        _set(path, value)(doc)
    body = edited(name, change)
    if message is None:
        assert deliver(body, TOPICS[name]).events
        return
    with pytest.raises(BadPayload) as info:
        deliver(body, TOPICS[name])
    assert message in info.value.message


# --- nothing but Rejected, whatever comes in ---------------------------------------------------

KNOWN_TOPICS = sorted(set(TOPICS.values()) | {"orders/updated", "orders/delete", "customers/enable",
                                              "products/create", "app/uninstalled"})
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["", "0.00", "-1", "1e9999", "NaN", "2021-12-31T19:00:00-05:00", "2021-13-45T99:00:00Z",
                     "USD", "XXX", "refund", "success", "paid", "sale"]),
)
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _paths(v, prefix + (i,))


def _handle_only_rejects(body: bytes, hdrs: dict[str, str]) -> None:
    try:
        out = shopify.handle(Delivery(body, hdrs), STORE, 1_800_000_000.0)
    except Rejected:
        return
    assert isinstance(out, Outcome)
    for event in out.events:
        assert isinstance(event, Event) and event.id.startswith(f"{P}:")
        event.to_json()


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), topic=st.sampled_from(KNOWN_TOPICS))
def test_random_signed_bytes_never_raise_anything_but_rejected(body: bytes, topic: str) -> None:
    _handle_only_rejects(body, headers(body, topic))


@settings(max_examples=300, deadline=None)
@given(hdrs=st.dictionaries(st.sampled_from(
    ["x-shopify-topic", "x-shopify-hmac-sha256", "x-shopify-event-id", "x-shopify-webhook-id",
     "x-shopify-triggered-at", "content-type"]) | st.text(max_size=20), st.text(max_size=60), max_size=8),
    body=st.sampled_from([b"", b"{}", b'{"id": 1}', b"[]", b"null"]))
def test_random_headers_never_raise_anything_but_rejected(hdrs: dict[str, str], body: bytes) -> None:
    _handle_only_rejects(body, hdrs)
    # The same headers with a valid signature reach the parser and the handlers.
    _handle_only_rejects(body, {**hdrs, "x-shopify-hmac-sha256": shopify.sign(body, SECRET)})


@needs_shared
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), name=st.sampled_from(sorted(TOPICS)))
def test_mutated_fixtures_never_raise_anything_but_rejected(data: st.DataObject, name: str) -> None:
    doc = orjson.loads(fixture(name))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        paths = list(_paths(doc))
        path = data.draw(st.sampled_from(paths))
        if not path:
            doc = data.draw(json_value)
            continue
        parent = doc
        for part in path[:-1]:
            parent = parent[part]
        if isinstance(parent, dict) and data.draw(st.booleans()):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_value)
    body = orjson.dumps(doc)
    topic = data.draw(st.sampled_from([TOPICS[name]] + KNOWN_TOPICS))
    extra = data.draw(st.dictionaries(st.sampled_from(["x-shopify-triggered-at", "x-shopify-event-id"]),
                                      st.text(max_size=30), max_size=2))
    _handle_only_rejects(body, {**headers(body, topic), **extra})


# --- over real HTTP: a running storepulse counts the order once and the refund exactly ----------

E2E_SECRET = "shpss_snowdevil_e2e_secret"
E2E_TOKEN = "snow-token-0123456789"
E2E_CONFIG = f"""
[orgs.snow]
timezone = "America/New_York"
currency = "USD"
token = "{E2E_TOKEN}"

[orgs.snow.stores.snowdevil]
provider = "shopify"
secret = "{E2E_SECRET}"
"""


@pytest.fixture(params=["sqlite", "redis"])
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storepulse]:
    redis_url = None
    if request.param == "redis":
        server = RedisServer(tmp_path / "redis")
        request.addfinalizer(server.stop)
        redis_url = server.url
    (tmp_path / "sp").mkdir()
    sp = Storepulse(tmp_path / "sp", redis_url, config=E2E_CONFIG)
    sp.start()
    yield sp
    sp.ensure_stopped()


def _post(sp: Storepulse, body: bytes, topic: str, event_id: str, secret: str = E2E_SECRET) -> httpx.Response:
    hdrs = headers(body, topic, secret=secret, x_shopify_event_id=event_id)
    return httpx.post(f"{sp.base}/webhooks/shopify/snowdevil", content=body, headers=hdrs, timeout=10)


def _figures(sp: Storepulse, check: Callable[[dict[str, Any]], bool], timeout: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        r = httpx.get(f"{sp.base}/api/v1/orgs/snow/figures", params={"period": "all", "store": "snowdevil"},
                      headers={"Authorization": f"Bearer {E2E_TOKEN}"}, timeout=10)
        body = r.json()
        if r.status_code == 200 and check(body):
            return body
        time.sleep(0.05)
    raise AssertionError(f"figures never matched within {timeout} s; last: {body}")


@needs_shared
def test_signed_shopify_deliveries_move_the_figures_exactly(running: Storepulse) -> None:
    sp = running
    # The three order samples as they are: one voided, cancelled order; one event, then repeats.
    created = _post(sp, fixture("orders_create.json"), "orders/create", "ev-create")
    assert created.status_code == 200, created.text
    assert created.json()["events"] == [CANCELLED.id] and created.json()["status"] == "accepted"
    for name in ("orders_paid.json", "orders_cancelled.json"):
        again = _post(sp, fixture(name), TOPICS[name], f"ev-{name}")
        assert again.status_code == 200 and again.json()["status"] == "duplicate", again.text
    refunded = _post(sp, fixture("refunds_create.json"), "refunds/create", "ev-refund")
    assert refunded.status_code == 200 and refunded.json()["events"] == [REFUND.id], refunded.text
    got = _figures(sp, lambda b: b["refunds"]["amount"] == 8500)
    assert got["paid_orders"] == 0 and got["gross_revenue"] == {"amount": 0, "currency": "USD", "exponent": 2}

    # The same order as real orders/paid and orders/updated deliveries show it: paid, counted once.
    body = edited("orders_paid.json", paid_order)
    paid = _post(sp, body, "orders/paid", "ev-paid")
    assert paid.status_code == 200 and paid.json()["events"] == [PAID.id] and paid.json()["new"] == 1
    assert _post(sp, body, "orders/paid", "ev-paid").json()["status"] == "duplicate"  # Shopify's retry
    assert _post(sp, body, "orders/updated", "ev-updated").json()["status"] == "duplicate"
    forged = _post(sp, fixture("refunds_create.json"), "refunds/create", "ev-forged", secret="not-the-app-secret")
    assert forged.status_code == 400 and "X-Shopify-Hmac-Sha256 does not match" in forged.json()["error"]

    got = _figures(sp, lambda b: b["paid_orders"] == 1)
    assert got["gross_revenue"] == {"amount": 40495, "currency": "USD", "exponent": 2}
    assert got["refunds"] == {"amount": 8500, "currency": "USD", "exponent": 2}
    assert got["net_revenue"] == {"amount": 31995, "currency": "USD", "exponent": 2}
    assert got["paid_orders"] == 1


def test_a_store_bound_to_its_shop_domain_refuses_another_shops_delivery() -> None:
    import dataclasses

    bound = dataclasses.replace(STORE, shop_domain="snowdevil.myshopify.com")
    body = b'{"id": 1, "email": "a@b.c", "updated_at": "2022-01-01T00:00:00Z"}'
    ok = shopify.handle(Delivery(body, headers(body, "customers/update")), bound, 1_800_000_000.0)
    assert ok.topic == "customers/update"
    other = headers(body, "customers/update", x_shopify_shop_domain="someone-else.myshopify.com")
    with pytest.raises(BadSignature, match="someone-else.myshopify.com.*is not this store's shop 'snowdevil.myshopify.com'"):
        shopify.handle(Delivery(body, other), bound, 1_800_000_000.0)
