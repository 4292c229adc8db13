"""WooCommerce: signature, normalisation of every fixture, bad input, fuzzing, and real HTTP.

The fixtures in ../shared/fixtures/webhooks/woocommerce are the REST v3 docs examples (pretty-printed);
each test signs the exact bytes it hands over. `wire()` turns one into the shape WooCommerce really
sends (compact `wp_json_encode`: `\\/` slashes, `\\uXXXX` for non-ASCII) to show both verify the same.
"""

from __future__ import annotations

import base64
import copy
import hmac
import json
import time
from hashlib import sha256
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.config import Store
from core.events import Event, Item, Kind
from flows.revenue import RevenueLedger
from ingest import woocommerce
from ingest.adapter import Delivery, Outcome
from ingest.errors import BadPayload, BadSignature, Rejected
from tests.helpers import SHARED, Storepulse, wait_for

FIXTURES = SHARED / "fixtures" / "webhooks" / "woocommerce"
needs_shared = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"../shared is absent: no vendor fixtures at {FIXTURES}")

SECRET = "wc_secret_5f2b8c1d"
STORE = Store(id="woo1", org="shop", provider="woocommerce", secret=SECRET, currency="USD")
NOW = 1_700_000_000.5
NOW_MS = 1_700_000_000_500


def sign(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, sha256).digest()).decode()


def delivery(body: bytes, topic: str | None, signature: str | None = None, delivery_id: str | None = "d41d8cd98f00",
             **extra: str) -> Delivery:
    headers = {"content-type": "application/json", "x-wc-webhook-source": "https://example.com/",
               "x-wc-webhook-id": "7", "x-wc-webhook-signature": signature or sign(body)}
    if topic is not None:
        headers["x-wc-webhook-topic"] = topic
        headers["x-wc-webhook-resource"], _, headers["x-wc-webhook-event"] = topic.partition(".")
    if delivery_id is not None:
        headers["x-wc-webhook-delivery-id"] = delivery_id
    headers.update({k.replace("_", "-"): v for k, v in extra.items()})
    return Delivery(body, headers)


def handle(body: bytes, topic: str | None, **kw: Any) -> Outcome:
    return woocommerce.handle(delivery(body, topic, **kw), STORE, NOW)


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def wire(payload: Any) -> bytes:
    """What WooCommerce puts on the wire: trim(wp_json_encode($payload))."""
    return json.dumps(payload, ensure_ascii=True, separators=(",", ":")).replace("/", "\\/").encode()


def events(payload: dict[str, Any], topic: str = "order.updated") -> list[Event]:
    return handle(wire(payload), topic).events


def ids(evts: list[Event]) -> list[str]:
    return [e.id for e in evts]


# --- every fixture, exactly ----------------------------------------------------------------------

ORDER_727_ITEMS = (
    Item(product="93", qty=2, unit_price=300, name="Woo Single #1"),
    # variation 23 of product 22; the HTML entity WooCommerce stores in the name is decoded
    Item(product="23", qty=1, unit_price=1200, name="Ship Your Idea \u2013 Color: Black, Size: M Test"),
)
PAID_727 = Event(
    id="woocommerce:woo1:order:727:paid", kind=Kind.ORDER_PAID, org="shop", store="woo1",
    time=1490210888000,  # date_paid_gmt 2017-03-22T19:28:08 (UTC)
    amount=2935, currency="USD", customer="john.doe@example.com",  # customer_id 0: a guest, keyed by e-mail
    order="727", items=ORDER_727_ITEMS, raw_id="727",
    attrs={"email": "john.doe@example.com", "customer_name": "John Doe"},  # billing: what the guest typed
)
ORDER_723 = {"org": "shop", "store": "woo1", "currency": "USD", "customer": "26", "order": "723", "raw_id": "723"}
MODIFIED_723 = 1490126091000  # date_modified_gmt 2017-03-21T19:54:51
PAID_723 = Event(
    id="woocommerce:woo1:order:723:paid", kind=Kind.ORDER_PAID,
    time=MODIFIED_723,  # "completed" with date_paid_gmt null: paid, at the last modification
    amount=3900,
    items=(Item(product="87", qty=1, unit_price=900, name="Woo Album #2"),
           Item(product="34", qty=1, unit_price=2000, name="Woo Ninja")),
    attrs={"email": "joao.silva@example.com", "customer_name": "Jo\u00e3o Silva"},
    **ORDER_723,
)
REFUND_726 = Event(id="woocommerce:woo1:refund:726", kind=Kind.ORDER_REFUNDED, time=MODIFIED_723, amount=1000,
                   refund="726", **ORDER_723)
REFUND_724 = Event(id="woocommerce:woo1:refund:724", kind=Kind.ORDER_REFUNDED, time=MODIFIED_723, amount=900,
                   refund="724", **ORDER_723)
CUSTOMER_25_ATTRS = {
    "email": "john.doe@example.com", "first_name": "John", "last_name": "Doe", "username": "john.doe",
    "role": "customer", "created_at": 1490123368000, "country": "US", "is_paying_customer": False,
}

FIXTURE_EVENTS: dict[tuple[str, str], list[Event]] = {
    ("order.created.json", "order.created"): [PAID_727],
    # status completed: the same fact (paid) as order.created said, so the same id: the log keeps one
    ("order.updated.json", "order.updated"): [PAID_727],
    ("order.updated.with-refunds.json", "order.updated"): [PAID_723, REFUND_726, REFUND_724],
    ("customer.created.json", "customer.created"): [Event(
        id="woocommerce:woo1:customer:25:created", kind=Kind.CUSTOMER_CREATED, org="shop", store="woo1",
        time=1490123368000, customer="25", raw_id="25", attrs=CUSTOMER_25_ATTRS,
    )],
    ("customer.updated.json", "customer.updated"): [Event(
        id="woocommerce:woo1:customer:25:updated:1490123548000", kind=Kind.CUSTOMER_UPDATED, org="shop",
        store="woo1", time=1490123548000, customer="25", raw_id="25",
        attrs={**CUSTOMER_25_ATTRS, "first_name": "James"},
    )],
    ("product.updated.json", "product.updated"): [Event(
        id="woocommerce:woo1:product:794:updated:1490299274000", kind=Kind.PRODUCT_UPDATED, org="shop",
        store="woo1", time=1490299274000, currency="USD", raw_id="794",
        attrs={"name": "Premium Quality", "sku": "", "price": 2454, "regular_price": 2454, "sale_price": None,
               "categories": ["Clothing", "T-shirts"], "brand": "", "status": "publish", "type": "simple",
               "parent": None},
    )],
}


@needs_shared
@pytest.mark.parametrize(("name", "topic"), sorted(FIXTURE_EVENTS))
def test_fixture_normalises_exactly(name: str, topic: str) -> None:
    body = (FIXTURES / name).read_bytes()  # the file's own bytes, signed as they are
    outcome = handle(body, topic)
    assert outcome == Outcome(topic, FIXTURE_EVENTS[(name, topic)], None)


@needs_shared
@pytest.mark.parametrize(("name", "topic"), sorted(FIXTURE_EVENTS))
def test_fixture_in_its_wire_form_gives_the_same_events(name: str, topic: str) -> None:
    body = wire(fixture(name))
    if name == "order.updated.with-refunds.json":
        assert b"Jo\\u00e3o" in body and b"https:\\/\\/example.com" in body
    assert handle(body, topic).events == FIXTURE_EVENTS[(name, topic)]


@needs_shared
def test_refund_object_agrees_with_the_refund_listed_on_its_order() -> None:
    refund = fixture("order_refund.object.json")  # GET /orders/723/refunds/726: "amount" positive
    assert refund["id"] == 726 and refund["amount"] == "10.00"
    [listed] = [e for e in events(fixture("order.updated.with-refunds.json")) if e.refund == "726"]
    assert listed.amount == 1000  # from "total": "-10.00", made positive
    # There is no refund topic: a refund object posted as an order update is refused, not guessed at.
    with pytest.raises(BadPayload, match=r"^order\.status is missing$"):
        handle(wire(refund), "order.updated")


@needs_shared
def test_backfill_of_an_order_gives_the_webhook_ids() -> None:
    assert woocommerce.order_events(fixture("order.updated.with-refunds.json"), STORE) == [PAID_723, REFUND_726, REFUND_724]


# --- exactly once across repeated updates ---------------------------------------------------------

def later_update_with_one_more_refund(order: dict[str, Any]) -> dict[str, Any]:
    later = copy.deepcopy(order)
    later["date_modified"], later["date_modified_gmt"] = "2017-03-23T09:00:00", "2017-03-23T12:00:00"
    later["refunds"] = [{"id": 731, "reason": "scratched", "total": "-5.50"}, *later["refunds"]]
    return later


@needs_shared
def test_repeated_updates_give_each_fact_exactly_once() -> None:
    order = fixture("order.updated.with-refunds.json")
    bodies = [(FIXTURES / "order.updated.with-refunds.json").read_bytes()] * 3 + [wire(later_update_with_one_more_refund(order))]
    log: dict[str, Event] = {}  # what the log keeps: the first event of each id
    for i, body in enumerate(bodies):
        for e in handle(body, "order.updated", delivery_id=f"delivery{i}").events:
            log.setdefault(e.id, e)
    assert set(log) == {"woocommerce:woo1:order:723:paid", "woocommerce:woo1:refund:726",
                        "woocommerce:woo1:refund:724", "woocommerce:woo1:refund:731"}
    assert log["woocommerce:woo1:refund:731"].amount == 550
    assert log["woocommerce:woo1:refund:731"].time == 1490270400000  # the update that first listed it
    assert log["woocommerce:woo1:refund:731"].attrs == {"reason": "scratched"}
    assert log["woocommerce:woo1:refund:726"] == REFUND_726  # kept from the first delivery
    # Folded into the revenue ledger: 39.00 gross, 24.50 refunded, one order.
    ledger = RevenueLedger("shop", "UTC")
    for e in sorted(log.values(), key=lambda e: (e.time, e.id)):
        ledger.apply(e)
    days = [v for k, v in ledger.buckets.items() if k[0] == "day"]  # [gross, refunds, orders, paid, items]
    assert sum(t[0] for t in days) == 3900
    assert sum(t[1] for t in days) == 2450
    assert sum(t[3] for t in days) == 1


# --- order state, not the previous message --------------------------------------------------------

def order_727(**changes: Any) -> dict[str, Any]:
    """The order.created docs example, with some fields changed (no fixture needed: built here)."""
    order: dict[str, Any] = {
        "id": 727, "status": "processing", "currency": "USD", "total": "29.35", "customer_id": 0,
        "date_created_gmt": "2017-03-22T19:28:02", "date_modified_gmt": "2017-03-22T19:30:35",
        "date_paid_gmt": "2017-03-22T19:28:08", "billing": {"email": "john.doe@example.com"},
        "line_items": [
            {"id": 315, "name": "Woo Single #1", "product_id": 93, "variation_id": 0, "quantity": 2,
             "subtotal": "6.00", "total": "6.00", "price": 3},
            {"id": 316, "name": "Ship Your Idea &ndash; Color: Black, Size: M Test", "product_id": 22,
             "variation_id": 23, "quantity": 1, "subtotal": "12.00", "total": "12.00", "price": 12},
        ],
        "refunds": [],
    }
    order.update(changes)
    return order


CREATED_727, MODIFIED_727, PAID_AT_727 = 1490210882000, 1490211035000, 1490210888000
TYPED_727 = {"email": "john.doe@example.com"}  # order_727's billing names no one
BASE_727 = {"org": "shop", "store": "woo1", "order": "727", "raw_id": "727", "currency": "USD",
            "customer": "john.doe@example.com", "amount": 2935}


def test_pending_and_on_hold_are_placed_not_paid() -> None:
    for status in ("pending", "on-hold"):
        assert events(order_727(status=status, date_paid_gmt=None), "order.created") == [
            Event(id="woocommerce:woo1:order:727:placed", kind=Kind.ORDER_PLACED, time=CREATED_727,
                  items=ORDER_727_ITEMS, attrs=TYPED_727, **BASE_727)
        ]


@pytest.mark.parametrize(("status", "paid_at", "want_time"), [
    ("processing", "2017-03-22T19:28:08", PAID_AT_727),
    ("completed", None, MODIFIED_727),  # coalesced: never saw "processing", still paid
    ("refunded", None, MODIFIED_727),
    ("on-hold", "2017-03-22T19:28:08", PAID_AT_727),  # date_paid_gmt set: it was paid
    ("shipped", "2017-03-22T19:28:08", PAID_AT_727),  # a plugin's own status, after payment
])
def test_paid_is_derived_from_the_state(status: str, paid_at: str | None, want_time: int) -> None:
    assert events(order_727(status=status, date_paid_gmt=paid_at)) == [
        Event(id="woocommerce:woo1:order:727:paid", kind=Kind.ORDER_PAID, time=want_time, items=ORDER_727_ITEMS,
              attrs=TYPED_727, **BASE_727)
    ]


def test_paid_time_falls_back_to_creation_without_modification_date() -> None:
    [paid] = events(order_727(status="completed", date_paid_gmt=None, date_modified_gmt=None))
    assert paid.time == CREATED_727


def test_refunded_status_without_a_listed_refund_invents_none() -> None:
    assert [e.kind for e in events(order_727(status="refunded", refunds=[]))] == [Kind.ORDER_PAID]


@pytest.mark.parametrize("status", ["cancelled", "failed", "trash"])
def test_cancelled_failed_and_trashed_orders_are_cancelled(status: str) -> None:
    assert events(order_727(status=status, date_paid_gmt=None)) == [
        Event(id=f"woocommerce:woo1:order:727:{status}", kind=Kind.ORDER_CANCELLED, time=MODIFIED_727, **BASE_727)
    ]


def test_an_order_cancelled_after_payment_was_paid_and_cancelled() -> None:
    assert ids(events(order_727(status="cancelled"))) == [
        "woocommerce:woo1:order:727:paid", "woocommerce:woo1:order:727:cancelled"]


def test_failed_then_paid_on_retry_then_cancelled_keeps_every_fact() -> None:
    seen = [ids(events(order_727(status=s, date_paid_gmt=p)))
            for s, p in [("failed", None), ("processing", "2017-03-22T19:28:08"), ("cancelled", "2017-03-22T19:28:08")]]
    assert seen == [["woocommerce:woo1:order:727:failed"], ["woocommerce:woo1:order:727:paid"],
                    ["woocommerce:woo1:order:727:paid", "woocommerce:woo1:order:727:cancelled"]]


def test_order_deleted_carries_only_the_id() -> None:
    # WooCommerce's build_payload(): a deleted resource's body is {"id": N}; the time is when we got it.
    want = Event(id="woocommerce:woo1:order:727:deleted:delivery:d41d8cd98f00", kind=Kind.ORDER_CANCELLED,
                 org="shop", store="woo1", time=NOW_MS, order="727", raw_id="727")
    assert handle(b'{"id":727}', "order.deleted").events == [want]
    assert handle(b'{"id":"727"}', "order.deleted").events == [want]
    [no_delivery_id] = handle(b'{"id":727}', "order.deleted", delivery_id=None).events
    assert no_delivery_id.id == f"woocommerce:woo1:order:727:deleted:received:{NOW_MS}"


def test_order_deleted_topic_on_a_live_order_body_is_refused() -> None:
    # The topic header is not signed: a captured order body relabelled as a deletion must not cancel it.
    with pytest.raises(BadPayload, match="order 727 in status 'processing', not a deleted order"):
        events(order_727(), "order.deleted")


def test_order_restored_then_its_state() -> None:
    restored = events(order_727(), "order.restored")
    assert [(e.id, e.kind, e.time) for e in restored] == [
        (f"woocommerce:woo1:order:727:restored:{MODIFIED_727}", Kind.ORDER_RESTORED, MODIFIED_727),
        ("woocommerce:woo1:order:727:paid", Kind.ORDER_PAID, PAID_AT_727),
    ]


def test_checkout_draft_is_not_an_order_yet() -> None:
    outcome = handle(wire(order_727(status="checkout-draft", date_paid_gmt=None)), "order.created")
    assert outcome == Outcome("order.created", [], "order 727 is a checkout draft (status 'checkout-draft'), not placed yet")


def test_customer_key() -> None:
    assert events(order_727(customer_id=26))[0].customer == "26"
    assert events(order_727(billing={"email": ""}))[0].customer is None
    assert events(order_727(billing=None))[0].customer is None


def test_unit_prices_are_exact() -> None:
    lines = [
        {"product_id": 1, "quantity": 2, "price": "2.50", "subtotal": "6.00"},  # a string price is taken as is
        {"product_id": 2, "quantity": 3, "price": 3.3333333333333335, "subtotal": "10.00"},  # 10.00 / 3
        {"product_id": 3, "quantity": 1, "price": 19.99},  # no subtotal: the float's shortest text
        {"product_id": 0, "variation_id": 0, "quantity": 1, "name": "Gone &amp; deleted", "subtotal": "1.00"},
        {"product_id": 0, "quantity": 1, "subtotal": "1.00"},
    ]
    [paid] = events(order_727(line_items=lines))
    assert paid.items == (
        Item(product="1", qty=2, unit_price=250), Item(product="2", qty=3, unit_price=333),
        Item(product="3", qty=1, unit_price=1999), Item(product="Gone & deleted", qty=1, unit_price=100,
                                                        name="Gone & deleted"),
        Item(product="line-4", qty=1, unit_price=100),
    )


@pytest.mark.parametrize(("currency", "total", "minor"), [
    ("JPY", "1980", 1980), ("KWD", "12.345", 12345), ("EUR", 29.35, 2935), ("USD", 40, 4000), ("eur", "0.005", 1),
])
def test_money_in_any_currency(currency: str, total: Any, minor: int) -> None:
    [paid] = events(order_727(currency=currency, total=total))
    assert (paid.amount, paid.currency) == (minor, currency.upper())


def test_refund_amounts_are_positive_whatever_the_sign() -> None:
    evts = events(order_727(refunds=[{"id": 9, "reason": "", "total": "-1.10"}, {"id": 10, "total": "2.20"}]))
    assert [(e.refund, e.amount, e.attrs) for e in evts[1:]] == [("9", 110, {}), ("10", 220, {})]


def test_product_and_customer_variants() -> None:
    product = {"id": 5, "name": "Tee &amp; Co", "price": "", "regular_price": 12, "sale_price": None,
               "date_created_gmt": "2017-03-23T20:01:14", "brands": [{"id": 1, "name": "Acme"}], "parent_id": 4}
    [e] = handle(wire(product), "product.created").events
    assert e.id == "woocommerce:woo1:product:5:updated:1490299274000"
    assert e.attrs == {"name": "Tee & Co", "sku": "", "price": None, "regular_price": 1200, "sale_price": None,
                       "categories": [], "brand": "Acme", "status": "", "type": "", "parent": "4"}
    [c] = handle(wire({"id": 3, "date_created_gmt": "2017-03-21T19:09:28", "date_modified_gmt": None,
                       "orders_count": 2, "total_spent": "49.90"}), "customer.updated").events
    assert c.id == "woocommerce:woo1:customer:3:updated:delivery:d41d8cd98f00" and c.time == NOW_MS
    assert (c.attrs["orders_count"], c.attrs["total_spent"]) == (2, 4990)


@pytest.mark.parametrize(("topic", "reason"), [
    ("customer.deleted", "customer.deleted is not used (customer 25): there is no deletion event yet"),
    ("product.deleted", "product.deleted is not used (product 25): there is no deletion event yet"),
    ("coupon.created", "topic 'coupon.created' is not used"),
    ("action.woocommerce_add_to_cart", "topic 'action.woocommerce_add_to_cart' is not used"),
])
def test_topics_not_used_are_acknowledged(topic: str, reason: str) -> None:
    assert handle(b'{"id":25}', topic) == Outcome(topic, [], reason)


def test_topic_from_resource_and_event_headers_when_the_topic_header_is_absent() -> None:
    d = delivery(b'{"id":727}', None, x_wc_webhook_resource="order", x_wc_webhook_event="deleted")
    assert woocommerce.handle(d, STORE, NOW).topic == "order.deleted"


# --- the ping, and bad deliveries -----------------------------------------------------------------

def test_creation_ping_is_acknowledged_unsigned() -> None:
    for content_type in ("application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=UTF-8"):
        ping = Delivery(b"webhook_id=12", {"content-type": content_type, "user-agent": "WooCommerce/9.0 Hookshot"})
        assert woocommerce.handle(ping, STORE, NOW) == Outcome("ping", [], ignored="WooCommerce webhook ping for webhook 12")


@pytest.mark.parametrize(("body", "headers", "message"), [
    (b'{"id":727}', {"x-wc-webhook-topic": "order.deleted"}, "missing X-WC-Webhook-Signature header"),
    (b"webhook_id=12", {"content-type": "application/json"}, "missing X-WC-Webhook-Signature header"),
    (b"webhook_id=12&x=1", {"content-type": "application/x-www-form-urlencoded"}, "missing X-WC-Webhook-Signature"),
    (b'{"id":727}', {"x-wc-webhook-topic": "order.deleted", "x-wc-webhook-signature": sign(b'{"id":728}')},
     "X-WC-Webhook-Signature does not match the body"),
    (b'{"id":727}', {"x-wc-webhook-topic": "order.deleted", "x-wc-webhook-signature": sign(b'{"id":727}', "other")},
     "X-WC-Webhook-Signature does not match the body"),
    (b'{"id":727}', {"x-wc-webhook-signature": "\u00e9t\u00e9\U0001f600"}, "does not match the body"),
    (b'{"id":727}', {"x-wc-webhook-signature": sign(b'{"id":727}').rstrip("=")}, "does not match the body"),
])
def test_bad_signatures(body: bytes, headers: dict[str, str], message: str) -> None:
    with pytest.raises(BadSignature, match=message):
        woocommerce.handle(Delivery(body, headers), STORE, NOW)


def test_a_signed_body_with_spaces_is_not_the_same_body() -> None:
    body = b'{"id":727}'
    with pytest.raises(BadSignature):
        woocommerce.handle(Delivery(b'{"id": 727}', {"x-wc-webhook-signature": sign(body)}), STORE, NOW)


def broken(path: list[Any], value: Any = KeyError) -> dict[str, Any]:
    """order_727() with the field at `path` replaced by `value` (KeyError: removed)."""
    order = order_727()
    target: Any = order
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return order


@pytest.mark.parametrize(("payload", "message"), [
    (broken(["total"]), "order.total is missing"),
    (broken(["total"], "29,35"), "order.total must be a decimal amount such as \"12.50\", got '29,35'"),
    (broken(["total"], "1e400"), "order.total must be a decimal amount"),
    (broken(["total"], 10**18), "order.total is out of range"),
    (broken(["total"], 1e300), "order.total is out of range"),
    (broken(["total"], True), "order.total must be a decimal amount"),
    (broken(["currency"], "ZZZ"), "order.currency: unknown currency 'ZZZ'"),
    (broken(["currency"]), "order.currency is missing"),
    (broken(["id"], -5), "order.id must be a positive integer id, got -5"),
    (broken(["id"], 12345678901234567890123), "order.id must be a positive integer id"),  # orjson: a float
    (broken(["status"], 3), "order.status must be a string, got 3"),
    (broken(["date_created_gmt"], "yesterday"), "order.date_created_gmt is not a timestamp"),
    (broken(["date_paid_gmt"], 1490210888), "order.date_paid_gmt must be a timestamp"),
    (broken(["customer_id"], "abc"), "order.customer_id must be an integer"),
    (broken(["billing"], "john@example.com"), "order.billing must be an object"),
    (broken(["line_items"]), "order.line_items is missing"),
    (broken(["line_items"], {}), "order.line_items must be a list"),
    (broken(["line_items", 1], "x"), "line_items[1] must be an object, got 'x'"),
    (broken(["line_items", 1, "quantity"]), "line_items[1].quantity is missing"),
    (broken(["line_items", 1, "quantity"], 1.5), "line_items[1].quantity must be an integer, got 1.5"),
    (broken(["line_items", 0, "subtotal"], "six"), "line_items[0].subtotal must be a decimal amount"),
    (broken(["line_items", 0, "product_id"], "93"), "line_items[0].product_id must be an integer"),
    (broken(["refunds"], [{"id": 726}]), "refunds[0].total is missing"),
    (broken(["refunds"], [{"id": "x", "total": "-1.00"}]), "refunds[0].id must be a positive integer id"),
    (broken(["refunds"], "none"), "order.refunds must be a list"),
])
def test_bad_order_fields_are_named(payload: dict[str, Any], message: str) -> None:
    body = json.dumps(payload).encode()
    with pytest.raises(BadPayload) as err:
        handle(body, "order.updated")
    assert message in err.value.message


def test_line_item_price_missing_without_subtotal_is_named() -> None:
    lines = [{"product_id": 1, "quantity": 1, "subtotal": "1.00"}, {"product_id": 1, "quantity": 1},
             {"product_id": 2, "quantity": 1, "price": None}]
    with pytest.raises(BadPayload, match=r"^line_items\[1\]\.subtotal is missing \(and there is no price\)$"):
        events(order_727(line_items=lines))


@pytest.mark.parametrize(("body", "topic", "message"), [
    (b"{not json", "order.updated", "body is not JSON"),
    (b"", "order.updated", "body is not JSON"),
    (b"[1,2]", "order.updated", "the body of a order.updated delivery must be a JSON object (a WooCommerce order)"),
    (b'{"id":727}', None, "missing X-WC-Webhook-Topic header"),
    (b'{"email":"x@example.com"}', "customer.created", "customer.id is missing"),
    (b'{"id":25}', "customer.created", "customer.date_created_gmt is missing"),
    (b'{"id":7,"categories":[1]}', "product.updated", "product.categories[0] must be an object, got 1"),
    (b'{"id":7,"price":"cheap"}', "product.updated", "product.price must be a decimal amount"),
    (b'{}', "order.deleted", "order.id is missing"),
])
def test_bad_bodies_are_named(body: bytes, topic: str | None, message: str) -> None:
    d = delivery(body, topic)
    if topic is None:
        d = Delivery(body, {k: v for k, v in d.headers.items() if not k.startswith("x-wc-webhook-")}
                     | {"x-wc-webhook-signature": sign(body)})
    with pytest.raises(BadPayload) as err:
        woocommerce.handle(d, STORE, NOW)
    assert message in err.value.message


# --- fuzzing: nothing but Rejected, whatever comes in ---------------------------------------------

TOPICS = [f"order.{e}" for e in ("created", "updated", "deleted", "restored")] + \
         [f"customer.{e}" for e in ("created", "updated", "deleted")] + \
         [f"product.{e}" for e in ("created", "updated", "deleted", "restored")] + ["coupon.created", ""]
HEADER_NAMES = ["x-wc-webhook-signature", "x-wc-webhook-topic", "x-wc-webhook-resource", "x-wc-webhook-event",
                "x-wc-webhook-delivery-id", "content-type"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70) | st.floats() | st.text(max_size=20)
    | st.sampled_from(["", "0", "-10.00", "2017-03-22T19:28:02", "processing", "cancelled", "refunded", "USD", "JPY"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=20,
)


def never_anything_but_rejected(d: Delivery) -> None:
    try:
        outcome = woocommerce.handle(d, STORE, NOW)
    except Rejected as exc:
        assert isinstance(exc, BadSignature | BadPayload) and exc.message
        return
    assert isinstance(outcome, Outcome)
    assert all(isinstance(e, Event) and e.id.startswith("woocommerce:woo1:") for e in outcome.events)
    for e in outcome.events:
        e.to_json()


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), headers=st.dictionaries(st.sampled_from(HEADER_NAMES) | st.text(max_size=10),
                                                              st.text(max_size=40), max_size=6))
def test_fuzz_random_bytes_and_headers(body: bytes, headers: dict[str, str]) -> None:
    never_anything_but_rejected(Delivery(body, headers))


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
       topic=st.sampled_from(TOPICS) | st.text(max_size=20), delivery_id=st.none() | st.text(max_size=70))
def test_fuzz_signed_random_bodies(body: bytes, topic: str, delivery_id: str | None) -> None:
    never_anything_but_rejected(delivery(body, topic, delivery_id=delivery_id))


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += paths(v, (*prefix, i))
    return out


MUTABLE = {
    "order.updated": order_727(refunds=[{"id": 9, "refund": "", "total": "-1.00"}]),
    "order.restored": order_727(status="cancelled"),
    "customer.updated": {"id": 3, "date_created_gmt": "2017-03-21T19:09:28", "date_modified_gmt": "2017-03-21T19:12:28",
                         "email": "a@example.com", "billing": {"country": "US"}, "total_spent": "1.00",
                         "orders_count": 1, "is_paying_customer": True},
    "product.updated": {"id": 5, "name": "Tee", "price": "1.00", "regular_price": "1.00", "sale_price": "",
                        "categories": [{"id": 1, "name": "C"}], "brands": [{"name": "B"}], "parent_id": 0,
                        "date_modified_gmt": "2017-03-23T20:01:14"},
}
if FIXTURES.is_dir():
    MUTABLE |= {f"{topic}@{name}": fixture(name) for name, topic in FIXTURE_EVENTS}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), key=st.sampled_from(sorted(MUTABLE)))
def test_fuzz_mutated_bodies(data: st.DataObject, key: str) -> None:
    payload = copy.deepcopy(MUTABLE[key])
    topic = key.split("@")[0]
    for _ in range(data.draw(st.integers(1, 4))):
        where = paths(payload)
        if not where:
            break
        path = data.draw(st.sampled_from(where))
        parent: Any = payload
        for step in path[:-1]:
            parent = parent[step]
        if data.draw(st.booleans()) and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = data.draw(json_values)
    if data.draw(st.booleans()):
        topic = data.draw(st.sampled_from(TOPICS))
    never_anything_but_rejected(delivery(json.dumps(payload).encode(), topic))


# --- over real HTTP -------------------------------------------------------------------------------

ORG_TOKEN = "wooshop-token-0123456789"
HTTP_CONFIG = f"""
[orgs.wooshop]
timezone = "UTC"
currency = "USD"
token = "{ORG_TOKEN}"

[orgs.wooshop.stores.woo-main]
provider = "woocommerce"
secret = "{SECRET}"
"""


def post(sp: Storepulse, body: bytes, topic: str | None, signature: str | None = None,
         content_type: str = "application/json") -> httpx.Response:
    headers = {"Content-Type": content_type, "User-Agent": "WooCommerce/9.9.0 Hookshot (WordPress/6.8)"}
    if topic is not None:
        headers |= {"X-WC-Webhook-Topic": topic, "X-WC-Webhook-Signature": signature or sign(body),
                    "X-WC-Webhook-Source": "https://example.com/", "X-WC-Webhook-ID": "7",
                    "X-WC-Webhook-Delivery-ID": f"{time.monotonic_ns():x}"}
    return httpx.post(f"{sp.base}/webhooks/woocommerce/woo-main", content=body, headers=headers, timeout=10)


@needs_shared
def test_deliveries_over_http_move_the_figures_exactly(tmp_path: Path) -> None:
    sp = Storepulse(tmp_path, config=HTTP_CONFIG)
    sp.start()
    try:
        ping = post(sp, b"webhook_id=7", None, content_type="application/x-www-form-urlencoded")
        assert ping.status_code == 200 and ping.json() == {"status": "ignored",
                                                           "reason": "WooCommerce webhook ping for webhook 7"}
        created = post(sp, (FIXTURES / "order.created.json").read_bytes(), "order.created")
        assert created.status_code == 200 and created.json()["events"] == ["woocommerce:woo-main:order:727:paid"]
        assert created.json()["status"] == "accepted"
        updated = post(sp, wire(fixture("order.updated.json")), "order.updated")
        assert updated.json()["status"] == "duplicate"  # completed: the same paid fact
        refunds = (FIXTURES / "order.updated.with-refunds.json").read_bytes()
        first = post(sp, refunds, "order.updated").json()
        assert (first["status"], first["new"]) == ("accepted", 3)
        for _ in range(2):
            assert post(sp, refunds, "order.updated").json() == {
                "status": "duplicate", "new": 0, "duplicates": 3, "events": first["events"]}
        later = post(sp, wire(later_update_with_one_more_refund(fixture("order.updated.with-refunds.json"))),
                     "order.updated").json()
        assert (later["status"], later["new"], later["duplicates"]) == ("accepted", 1, 3)
        for name, topic in [("customer.created.json", "customer.created"), ("customer.updated.json", "customer.updated"),
                            ("product.updated.json", "product.updated")]:
            r = post(sp, (FIXTURES / name).read_bytes(), topic)
            assert r.status_code == 200 and r.json()["status"] == "accepted", r.text
        tampered = post(sp, refunds.replace(b"-10.00", b"-99.00"), "order.updated", signature=sign(refunds))
        assert tampered.status_code == 400 and tampered.json()["error"].startswith(
            "X-WC-Webhook-Signature does not match the body")
        unsigned = httpx.post(f"{sp.base}/webhooks/woocommerce/woo-main", content=refunds,
                              headers={"Content-Type": "application/json", "X-WC-Webhook-Topic": "order.updated"})
        assert unsigned.status_code == 400 and "missing X-WC-Webhook-Signature" in unsigned.json()["error"]

        # 29.35 + 39.00 gross; 10.00 + 9.00 + 5.50 refunded; two paid orders.
        want = {"gross_revenue": {"amount": 6835, "currency": "USD", "exponent": 2}, "refunds": {"amount": 2450, "currency": "USD", "exponent": 2},
                "net_revenue": {"amount": 4385, "currency": "USD", "exponent": 2}, "paid_orders": 2}
        last: dict[str, Any] = {}

        def figures_match() -> bool:
            nonlocal last
            last = sp.figures("wooshop", "all", token=ORG_TOKEN).json()
            return {k: last.get(k) for k in want} == want

        try:
            wait_for(figures_match, 20, "the figures of the WooCommerce deliveries")
        except AssertionError:
            raise AssertionError(f"figures never matched {want}; last: {last}") from None
        per_store = sp.figures("wooshop", "all", store="woo-main", token=ORG_TOKEN).json()
        assert {k: per_store.get(k) for k in want} == want
    finally:
        sp.ensure_stopped()
