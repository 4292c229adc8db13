"""The demo's happenings as the HTTP requests the vendors would send, signed as they sign them:
Stripe-Signature (t=now, HMAC of "t.body"), X-WC-Webhook-Signature and X-Shopify-Hmac-Sha256
(base64 HMAC of the body), and events-API batches with the store's key. Pure: `now` is an argument."""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from core.config import Store
from storepulse.demo.shop import CATALOGUE, DAY_MS, Order, Registration, SiteEvent, person

BATCH = 1000  # the events API's largest batch (ingest/events_api.py MAX_BATCH)
CATALOGUE_INDEX = {p.id: i for i, p in enumerate(CATALOGUE)}  # vendors number their products


@dataclass(frozen=True, slots=True)
class Post:
    path: str
    body: bytes
    headers: dict[str, str]


def _b64_hmac(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _iso(ms: int, naive: bool = False) -> str:
    t = datetime.fromtimestamp(ms / 1000, UTC).replace(microsecond=0)
    return t.replace(tzinfo=None).isoformat() if naive else t.isoformat()


def _decimal(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def site_batches(events: Iterable[SiteEvent], store: Store) -> list[Post]:
    """Events-API requests of at most BATCH events each, in time order."""
    ordered = sorted(events, key=lambda e: (e.time, str(e.fields["id"])))
    headers = {"Authorization": f"Bearer {store.secret}", "Content-Type": "application/json"}
    return [Post("/v1/events", orjson.dumps({"events": [e.fields for e in ordered[i:i + BATCH]]}), headers)
            for i in range(0, len(ordered), BATCH)]


def _buyer(order: Order) -> tuple[str, str]:
    """The e-mail and name the buyer of `order` types at the checkout (a guest's by the order's number)."""
    if order.customer is None:
        return f"guest{order.number}@example.com", person(order.number)
    return f"customer{order.customer}@example.com", person(order.customer)


def stripe(order: Order, store: Store, now_s: int, until: int) -> list[Post]:
    """checkout.session.completed (old shape, with display_items: products reach the lists), and
    charge.refunded a day later when the order is refunded and that day is before `until` (ms)."""
    pi, cs = f"pi_demo{order.number}", f"cs_demo{order.number}"
    currency = store.currency.lower()
    customer = f"cus_demo{order.customer}" if order.customer is not None else None
    email, name = _buyer(order)
    paid = {"id": f"evt_demo{order.number}p", "object": "event", "api_version": "2020-08-27", "created": order.time // 1000,
            "type": "checkout.session.completed", "livemode": False, "pending_webhooks": 1,
            "data": {"object": {"id": cs, "object": "checkout.session", "customer": customer,
                                "customer_details": {"email": email, "name": name},
                                "payment_intent": pi, "payment_status": "paid", "mode": "payment",
                                "display_items": [{"amount": ln.product.price, "currency": currency, "quantity": ln.qty,
                                                   "type": "custom", "custom": {"name": ln.product.name}}
                                                  for ln in order.lines]}}}
    bodies = [paid]
    if order.refund and order.time + DAY_MS < until:
        bodies.append({"id": f"evt_demo{order.number}r", "object": "event", "api_version": "2020-08-27",
                       "created": (order.time + DAY_MS) // 1000, "type": "charge.refunded",
                       "data": {"object": {"id": f"ch_demo{order.number}", "object": "charge", "amount": order.total,
                                           "amount_refunded": order.refund, "currency": currency, "payment_intent": pi,
                                           "refunded": order.refund == order.total}}})
    posts = []
    for doc in bodies:
        body = orjson.dumps(doc)
        mac = hmac.new(store.secret.encode(), f"{now_s}.".encode() + body, hashlib.sha256).hexdigest()
        posts.append(Post(f"/webhooks/stripe/{store.id}", body,
                          {"Stripe-Signature": f"t={now_s},v1={mac}", "Content-Type": "application/json"}))
    return posts


def _woo_order(order: Order, store: Store, modified: int, refunds: list[dict[str, object]]) -> dict[str, object]:
    customer = order.customer if order.customer is not None else 0
    email, name = _buyer(order)
    first, last = name.split(" ", 1)
    return {
        "id": order.number, "status": "processing", "currency": store.currency, "total": _decimal(order.total),
        "date_created_gmt": _iso(order.time, naive=True), "date_modified_gmt": _iso(modified, naive=True),
        "date_paid_gmt": _iso(order.time, naive=True), "customer_id": 1000 + customer if customer else 0,
        "billing": {"email": email, "first_name": first, "last_name": last},
        "line_items": [{"id": i + 1, "name": ln.product.name, "product_id": 100 + CATALOGUE_INDEX[ln.product.id],
                        "variation_id": 0, "quantity": ln.qty, "subtotal": _decimal(ln.total), "total": _decimal(ln.total),
                        "price": ln.product.price / 100, "sku": ln.product.id} for i, ln in enumerate(order.lines)],
        "refunds": refunds,
    }


def woocommerce(order: Order, store: Store, until: int) -> list[Post]:
    """order.updated as paid; with a refund, a later order.updated listing it (WooCommerce coalesces)."""
    docs = [_woo_order(order, store, order.time, [])]
    if order.refund and order.time + DAY_MS < until:
        docs.append(_woo_order(order, store, order.time + DAY_MS,
                               [{"id": order.number, "reason": "damaged", "total": f"-{_decimal(order.refund)}"}]))
    return [_woo_post(store, "order.updated", orjson.dumps(d)) for d in docs]


def woo_registration(reg: Registration, store: Store) -> Post:
    doc = {"id": reg.customer, "date_created_gmt": _iso(reg.time, naive=True), "email": f"member{reg.customer}@example.com",
           "first_name": person(reg.customer).split(" ", 1)[0], "last_name": person(reg.customer).split(" ", 1)[1],
           "role": "customer", "username": f"member{reg.customer}",
           "billing": {"country": "DE"}, "is_paying_customer": False}
    return _woo_post(store, "customer.created", orjson.dumps(doc))


def _woo_post(store: Store, topic: str, body: bytes) -> Post:
    return Post(f"/webhooks/woocommerce/{store.id}", body,
                {"X-WC-Webhook-Topic": topic, "X-WC-Webhook-Signature": _b64_hmac(store.secret, body),
                 "Content-Type": "application/json"})


def shopify(order: Order, store: Store) -> list[Post]:
    """orders/paid with the checkout token (Shopify's proof the checkout completed)."""
    money = {"amount": _decimal(order.total), "currency_code": store.currency}
    email, name = _buyer(order)
    first, last = name.split(" ", 1)
    doc = {
        "id": 5_000_000_000 + order.number, "name": f"#D{order.number % 100_000}", "financial_status": "paid",
        "currency": store.currency, "total_price": _decimal(order.total),
        "total_price_set": {"shop_money": money, "presentment_money": money},
        "created_at": _iso(order.time), "processed_at": _iso(order.time), "checkout_token": f"chk{order.number}",
        "customer": {"id": 7_000_000 + order.customer, "email": email, "first_name": first, "last_name": last}
        if order.customer is not None else None,
        "email": email, "billing_address": {"first_name": first, "last_name": last, "name": name},
        "source_name": "web", "test": False,
        "line_items": [{"id": order.number * 10 + i, "product_id": 8_000 + CATALOGUE_INDEX[ln.product.id],
                        "variant_id": 9_000 + CATALOGUE_INDEX[ln.product.id], "title": ln.product.name,
                        "vendor": ln.product.brand, "quantity": ln.qty, "price": _decimal(ln.product.price)}
                       for i, ln in enumerate(order.lines)],
    }
    body = orjson.dumps(doc)
    return [Post(f"/webhooks/shopify/{store.id}", body,
                 {"X-Shopify-Topic": "orders/paid", "X-Shopify-Hmac-Sha256": _b64_hmac(store.secret, body),
                  "X-Shopify-Webhook-Id": f"demo-{order.number}", "Content-Type": "application/json"})]

