"""WooCommerce: verify `X-WC-Webhook-Signature` and turn webhook bodies into canonical events. Pure.

A WooCommerce webhook body is the REST v3 resource as it is at delivery time (GET /wc/v3/orders/N,
.../customers/N, .../products/N); the topic (`order.updated`, ...) comes only in a header. Deliveries
are coalesced (one per request, whatever changed), so every order event is derived from the STATE in
the body, never from the previous message:

    status processing | completed | refunded, or date_paid_gmt set  -> ORDER_PAID  (once per order)
    status pending | on-hold | any other non-cancelled status       -> ORDER_PLACED (once per order)
    status cancelled | failed | trash                                -> ORDER_CANCELLED (once per status;
                                                                        after ORDER_PAID if it was paid)
    status checkout-draft                                            -> nothing: not placed yet
    topic order.deleted (body is only {"id": N})                     -> ORDER_CANCELLED (per delivery)
    topic order.restored                                             -> ORDER_RESTORED, then the above
    each element of refunds[]                                        -> ORDER_REFUNDED (once per refund)

Ids name the fact, so a later update repeating it (every update lists every refund again) gets the
same id and the log drops it.
"""

from __future__ import annotations

import base64
import hmac
import html
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from decimal import Decimal
from hashlib import sha256
from typing import Any

from core.clock import ms_from_iso
from core.config import Store
from core.events import Event, Item, Kind, buyer_attrs, full_name
from core.limits import amount_problem
from core.money import UnknownCurrency, divide_half_up, normalise_currency, to_minor
from ingest.adapter import Delivery, Outcome, media_type
from ingest.errors import BadPayload, BadSignature
from ingest.fields import integer, parse_json, required

VENDOR = "woocommerce"
PAID_STATUSES = frozenset({"processing", "completed", "refunded"})
CANCELLED_STATUSES = frozenset({"cancelled", "failed", "trash"})
# Orders the shopper has not placed yet (block checkout drafts); WooCommerce itself skips some of them.
DRAFT_STATUSES = frozenset({"checkout-draft", "draft", "auto-draft"})

_PING = re.compile(rb"webhook_id=(\d{1,20})")
# wc_format_decimal's output, in ASCII digits (`\d` would take "٥"); bounded so 64 bits hold it.
_AMOUNT = re.compile(r"-?[0-9]{1,15}(?:\.[0-9]{1,12})?")
_DELIVERY_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True, slots=True)
class _Context:
    store: Store
    event: str  # the topic's event part: created, updated, deleted, restored
    delivery_id: str | None  # X-WC-Webhook-Delivery-ID, when it is usable in an event id
    now_ms: int

    def base(self, raw_id: str) -> dict[str, Any]:
        return {"org": self.store.org, "store": self.store.id, "raw_id": raw_id}

    def prefix(self, resource: str, raw_id: str) -> str:
        return f"{VENDOR}:{self.store.id}:{resource}:{raw_id}"

    def once(self) -> str:
        """An id part for facts that happen once per delivery and carry no timestamp of their own."""
        return f"delivery:{self.delivery_id}" if self.delivery_id else f"received:{self.now_ms}"


def handle(delivery: Delivery, store: Store, now: float) -> Outcome:
    """Canonical events for one WooCommerce delivery; raises BadSignature or BadPayload."""
    signature = delivery.header("x-wc-webhook-signature")
    if not signature:
        webhook_id = _ping(delivery)
        if webhook_id is not None:
            return Outcome("ping", [], ignored=f"WooCommerce webhook ping for webhook {webhook_id}")
        raise BadSignature(
            "missing X-WC-Webhook-Signature header: WooCommerce signs every delivery except the "
            "creation ping (a form body webhook_id=N)"
        )
    verify(delivery.body, signature, store.secret)
    topic = _topic(delivery)
    payload = parse_json(delivery.body)
    handler = _HANDLERS.get(topic)
    if handler is None:
        return Outcome(topic, [], ignored=f"topic {topic!r} is not used")
    resource, _, event = topic.partition(".")
    if not isinstance(payload, dict):
        raise BadPayload(f"the body of a {topic} delivery must be a JSON object (a WooCommerce {resource})")
    delivery_id = delivery.header("x-wc-webhook-delivery-id")
    usable_id = delivery_id if delivery_id and _DELIVERY_ID.fullmatch(delivery_id) else None
    events, note = handler(payload, _Context(store, event, usable_id, int(now * 1000)))
    return Outcome(topic, events, None if events else note)


def order_events(order: Mapping[str, Any], store: Store) -> list[Event]:
    """Canonical events for one REST v3 order as GET /wc/v3/orders/N returns it (backfill).

    The same ids as the webhooks give, so a backfill of orders already seen adds nothing.
    """
    if not isinstance(order, dict):
        raise BadPayload(f"an order must be a JSON object, got {order!r}")
    return _order(order, _Context(store, "updated", None, 0))[0]


def customer_events(customer: Mapping[str, Any], store: Store) -> list[Event]:
    """A REST v3 customer (from a backfill) as the events its customer.created webhook gives."""
    return _customer(customer, _Context(store, "created", None, 0))[0]


def verify(body: bytes, signature: str, secret: str) -> None:
    """X-WC-Webhook-Signature is base64(HMAC-SHA256(secret, raw body)); compared in constant time."""
    expected = base64.b64encode(hmac.new(secret.encode(), body, sha256).digest())
    if not hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace")):
        raise BadSignature(
            "X-WC-Webhook-Signature does not match the body: check that the webhook's secret in "
            "WooCommerce (Settings > Advanced > Webhooks) is this store's secret, and that nothing "
            "re-encodes the body on the way"
        )


def _ping(delivery: Delivery) -> str | None:
    """The webhook id of WooCommerce's unsigned creation ping (`webhook_id=N`, a form post), else None."""
    match = _PING.fullmatch(delivery.body.strip())
    if match is None or media_type(delivery.header("content-type")) not in ("", "application/x-www-form-urlencoded"):
        return None
    return match.group(1).decode()


def _topic(delivery: Delivery) -> str:
    topic = (delivery.header("x-wc-webhook-topic") or "").strip()
    if not topic:
        resource = (delivery.header("x-wc-webhook-resource") or "").strip()
        event = (delivery.header("x-wc-webhook-event") or "").strip()
        if not resource or not event:
            raise BadPayload("missing X-WC-Webhook-Topic header (e.g. order.updated)")
        topic = f"{resource}.{event}"
    return topic


# --- field readers: each names the field and what is wrong with it -----------------------------

def _id(obj: Mapping[str, Any], key: str, where: str) -> str:
    """A WooCommerce object id (a positive integer; hooks sometimes pass it as a digit string)."""
    value = required(obj, key, where)
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise BadPayload(f"{where}.{key} must be a positive integer id, got {value!r}")
    return str(value)


def _str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = required(obj, key, where)
    if not isinstance(value, str):
        raise BadPayload(f"{where}.{key} must be a string, got {value!r}")
    return value


def _opt_str(obj: Mapping[str, Any], key: str, where: str) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadPayload(f"{where}.{key} must be a string, got {value!r}")
    return value


def _dict(obj: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadPayload(f"{where}.{key} must be an object, got {value!r}")
    return value


def _list(obj: Mapping[str, Any], key: str, where: str, required: bool = False) -> list[Any]:
    value = obj.get(key)
    if value is None:
        if required:
            raise BadPayload(f"{where}.{key} is missing")
        return []
    if not isinstance(value, list):
        raise BadPayload(f"{where}.{key} must be a list, got {value!r}")
    return value


def _currency(obj: Mapping[str, Any], where: str) -> str:
    try:
        return normalise_currency(required(obj, "currency", where))
    except UnknownCurrency as exc:
        raise BadPayload(f"{where}.currency: {exc}") from None


def _money(value: Any, currency: str, where: str, listed_refund: bool = False) -> int:
    """Minor units of a WooCommerce amount, a decimal string ("12.50") or sometimes a JSON number,
    within core.limits' range. An order lists its refunds negative ("-10.00"): `listed_refund` takes
    their size. Any other negative amount is refused: a refund is a refund event, never a negative order.

    Decimals beyond the currency's are rounded half up, deliberately: WooCommerce writes every amount
    with the shop's own "Number of decimals" setting (wc_get_price_decimals, the REST API's `dp`),
    which a shop may set above ISO 4217's (4 for EUR, to price below a cent). Refusing them would
    refuse every delivery of such a shop, and WooCommerce disables a webhook that keeps failing.
    """
    amount: str | int | Decimal
    if isinstance(value, str):
        if not _AMOUNT.fullmatch(value):
            raise BadPayload(f"{where} must be a decimal amount such as \"12.50\", got {value!r}")
        amount = value
    elif isinstance(value, int) and not isinstance(value, bool):
        if abs(value) >= 10**15:
            raise BadPayload(f"{where} is out of range: {value!r}")
        amount = value
    elif isinstance(value, float):
        # Last resort: the REST API sends some amounts as JSON numbers and orjson hands us a float;
        # repr() is the shortest text that reads back as the same float, which is what PHP encoded.
        amount = Decimal(repr(value))
        if not amount.is_finite() or abs(amount) >= 10**15:
            raise BadPayload(f"{where} is out of range: {value!r}")
    else:
        raise BadPayload(f"{where} must be a decimal amount such as \"12.50\", got {value!r}")
    minor = to_minor(amount, currency, "round")
    if listed_refund:
        minor = abs(minor)
    if (why := amount_problem(minor, where)) is not None:
        raise BadPayload(why)
    return minor


def _time(value: Any, where: str) -> int:
    """Milliseconds since the epoch of a WooCommerce `_gmt` timestamp (UTC, written without a zone)."""
    if not isinstance(value, str):
        raise BadPayload(f"{where} must be a timestamp such as \"2017-03-22T19:28:02\", got {value!r}")
    try:
        return ms_from_iso(value, naive=UTC)
    except ValueError:
        raise BadPayload(f"{where} is not a timestamp such as \"2017-03-22T19:28:02\": {value!r}") from None


def _opt_time(obj: Mapping[str, Any], key: str, where: str) -> int | None:
    value = obj.get(key)
    if value is None or value == "":
        return None
    return _time(value, f"{where}.{key}")


def _text(value: str) -> str:
    """WooCommerce stores names HTML-escaped ("Ship Your Idea &ndash; Color: Black")."""
    return html.unescape(value)


# --- orders ---------------------------------------------------------------------------------------

def _order(payload: Mapping[str, Any], ctx: _Context) -> tuple[list[Event], str]:
    if ctx.event == "deleted":
        return _order_deleted(payload, ctx)
    where = "order"
    order_id = _id(payload, "id", where)
    status = _str(payload, "status", where)
    if status in DRAFT_STATUSES:
        return [], f"order {order_id} is a checkout draft (status {status!r}), not placed yet"
    currency = _currency(payload, where)
    total = _money(required(payload, "total", where), currency, f"{where}.total")
    created = _time(required(payload, "date_created_gmt", where), f"{where}.date_created_gmt")
    modified = _opt_time(payload, "date_modified_gmt", where)
    if modified is None:
        modified = created
    paid_at = _opt_time(payload, "date_paid_gmt", where)
    base = {
        **ctx.base(order_id),
        "order": order_id,
        "customer": _order_customer(payload),
        "currency": currency,
    }
    prefix = ctx.prefix("order", order_id)
    events: list[Event] = []
    if ctx.event == "restored":
        events.append(Event(id=f"{prefix}:restored:{modified}", kind=Kind.ORDER_RESTORED, time=modified,
                            amount=total, **base))
    billing = _dict(payload, "billing", "order")
    typed = buyer_attrs(billing.get("email"), full_name(billing.get("first_name"), billing.get("last_name")))
    paid = status in PAID_STATUSES or paid_at is not None
    cancelled = status in CANCELLED_STATUSES
    if paid:
        # A coalesced delivery may be the first we hear of the order: "completed" means it was paid.
        time = paid_at if paid_at is not None else modified
        events.append(Event(id=f"{prefix}:paid", kind=Kind.ORDER_PAID, time=time, amount=total,
                            items=_items(payload, currency), attrs=typed, **base))
    elif not cancelled:
        events.append(Event(id=f"{prefix}:placed", kind=Kind.ORDER_PLACED, time=created, amount=total,
                            items=_items(payload, currency), attrs=typed, **base))
    if cancelled:
        # Once per status: failed, then paid on a retry, then cancelled is two distinct cancellations.
        events.append(Event(id=f"{prefix}:{status}", kind=Kind.ORDER_CANCELLED, time=modified, amount=total,
                            **base))
    # Refunds are facts of their own whatever the status says. An order marked "refunded" with no
    # refund listed gets no invented refund: WooCommerce records one for the remainder when an
    # order is marked refunded, and that record arrives with a later update.
    events.extend(_refunds(payload, currency, modified, ctx, base))
    return events, f"order {order_id} in status {status!r} has nothing to record"


def _order_deleted(payload: Mapping[str, Any], ctx: _Context) -> tuple[list[Event], str]:
    """order.deleted (moved to the trash): WooCommerce sends only {"id": N}."""
    order_id = _id(payload, "id", "order")
    status = payload.get("status")
    if status is not None and (not isinstance(status, str) or status not in CANCELLED_STATUSES):
        # The topic header is not signed: a captured order body relabelled as a deletion is refused.
        raise BadPayload(f"order.deleted delivery describes order {order_id} in status {status!r}, not a deleted order")
    modified = _opt_time(payload, "date_modified_gmt", "order")
    # No timestamp in the body: the time we received it is the best one there is.
    time = modified if modified is not None else ctx.now_ms
    return [
        Event(id=f"{ctx.prefix('order', order_id)}:deleted:{ctx.once()}", kind=Kind.ORDER_CANCELLED, time=time,
              order=order_id, **ctx.base(order_id))
    ], ""


def _order_customer(payload: Mapping[str, Any]) -> str | None:
    """The customer's user id; a guest's billing e-mail; else None."""
    customer_id = payload.get("customer_id")
    if isinstance(customer_id, str) and customer_id.isascii() and customer_id.isdigit():
        customer_id = int(customer_id)
    if customer_id is not None and (not isinstance(customer_id, int) or isinstance(customer_id, bool)):
        raise BadPayload(f"order.customer_id must be an integer (0 for a guest), got {customer_id!r}")
    if customer_id:
        return str(customer_id)
    email = _opt_str(_dict(payload, "billing", "order"), "email", "order.billing").strip()
    return email or None


def _items(payload: Mapping[str, Any], currency: str) -> tuple[Item, ...]:
    items = []
    for i, line in enumerate(_list(payload, "line_items", "order", required=True)):
        where = f"line_items[{i}]"
        if not isinstance(line, dict):
            raise BadPayload(f"{where} must be an object, got {line!r}")
        product_id = integer(line, "product_id", where, default=0)
        variation_id = integer(line, "variation_id", where, default=0)
        qty = integer(line, "quantity", where)
        name = _text(_opt_str(line, "name", where))
        price = line.get("price")
        if isinstance(price, str):
            unit_price = _money(price, currency, f"{where}.price")
        elif line.get("subtotal") is not None:
            # The v3 `price` is a float: the exact unit price is the decimal subtotal over the quantity.
            unit_price = divide_half_up(_money(line["subtotal"], currency, f"{where}.subtotal"), qty)
        elif price is not None:
            unit_price = _money(price, currency, f"{where}.price")
        else:
            raise BadPayload(f"{where}.subtotal is missing (and there is no price)")
        # A deleted product leaves product_id 0: its name is all that identifies it.
        product = str(variation_id or product_id) if (variation_id or product_id) else (name or f"line-{i}")
        items.append(Item(product=product, qty=qty, unit_price=unit_price, name=name))
    return tuple(items)


def _refunds(payload: Mapping[str, Any], currency: str, time: int, ctx: _Context,
             base: Mapping[str, Any]) -> list[Event]:
    events = []
    for i, refund in enumerate(_list(payload, "refunds", "order")):
        where = f"refunds[{i}]"
        if not isinstance(refund, dict):
            raise BadPayload(f"{where} must be an object, got {refund!r}")
        refund_id = _id(refund, "id", where)
        # Listed as negative totals ("-10.00"); the canonical refund amount is positive.
        amount = _money(required(refund, "total", where), currency, f"{where}.total", listed_refund=True)
        # The property table calls it `reason`; the docs example (and some versions) say `refund`.
        reason = refund.get("reason", refund.get("refund"))
        events.append(Event(
            id=f"{VENDOR}:{ctx.store.id}:refund:{refund_id}", kind=Kind.ORDER_REFUNDED, time=time, amount=amount,
            refund=refund_id, attrs={"reason": reason} if isinstance(reason, str) and reason else {}, **base,
        ))
    return events


# --- customers and products -----------------------------------------------------------------------

def _customer(payload: Mapping[str, Any], ctx: _Context) -> tuple[list[Event], str]:
    where = "customer"
    customer_id = _id(payload, "id", where)
    if ctx.event == "deleted":
        return [], f"customer.deleted is not used (customer {customer_id}): there is no deletion event yet"
    created = _time(required(payload, "date_created_gmt", where), f"{where}.date_created_gmt")
    billing = _dict(payload, "billing", where)
    attrs: dict[str, Any] = {
        "email": _opt_str(payload, "email", where),
        "first_name": _opt_str(payload, "first_name", where),
        "last_name": _opt_str(payload, "last_name", where),
        "username": _opt_str(payload, "username", where),
        "role": _opt_str(payload, "role", where),
        "created_at": created,
        "country": _opt_str(billing, "country", f"{where}.billing"),
    }
    paying = payload.get("is_paying_customer")
    if isinstance(paying, bool):
        attrs["is_paying_customer"] = paying
    # REST v1/v2 bodies still carry these two; v3 dropped them.
    if payload.get("orders_count") is not None:
        attrs["orders_count"] = integer(payload, "orders_count", where)
    if payload.get("total_spent") is not None:
        attrs["total_spent"] = _money(payload["total_spent"], ctx.store.currency, f"{where}.total_spent")
    prefix = ctx.prefix("customer", customer_id)
    base = {**ctx.base(customer_id), "customer": customer_id, "attrs": attrs}
    if ctx.event == "created":
        return [Event(id=f"{prefix}:created", kind=Kind.CUSTOMER_CREATED, time=created, **base)], ""
    modified = _opt_time(payload, "date_modified_gmt", where)
    if modified is None:
        return [Event(id=f"{prefix}:updated:{ctx.once()}", kind=Kind.CUSTOMER_UPDATED, time=ctx.now_ms, **base)], ""
    return [Event(id=f"{prefix}:updated:{modified}", kind=Kind.CUSTOMER_UPDATED, time=modified, **base)], ""


def _product(payload: Mapping[str, Any], ctx: _Context) -> tuple[list[Event], str]:
    where = "product"
    product_id = _id(payload, "id", where)
    if ctx.event == "deleted":
        return [], f"product.deleted is not used (product {product_id}): there is no deletion event yet"
    currency = ctx.store.currency  # products carry no currency: prices are in the shop's own

    def price(key: str) -> int | None:
        value = payload.get(key)
        return None if value is None or value == "" else _money(value, currency, f"{where}.{key}")

    categories = []
    for i, category in enumerate(_list(payload, "categories", where)):
        if not isinstance(category, dict):
            raise BadPayload(f"{where}.categories[{i}] must be an object, got {category!r}")
        categories.append(_text(_opt_str(category, "name", f"{where}.categories[{i}]")))
    brands = _list(payload, "brands", where)  # WooCommerce 9.6+ core brands
    brand = brands[0].get("name") if brands and isinstance(brands[0], dict) else None
    parent_id = integer(payload, "parent_id", where, default=0)  # a variation's product
    attrs = {
        "name": _text(_opt_str(payload, "name", where)),
        "sku": _opt_str(payload, "sku", where),
        "price": price("price"),
        "regular_price": price("regular_price"),
        "sale_price": price("sale_price"),
        "categories": categories,
        "brand": _text(brand) if isinstance(brand, str) else "",
        "status": _opt_str(payload, "status", where),
        "type": _opt_str(payload, "type", where),
        "parent": str(parent_id) if parent_id > 0 else None,
    }
    modified = _opt_time(payload, "date_modified_gmt", where)
    if modified is None:
        modified = _opt_time(payload, "date_created_gmt", where)
    stamp, time = (str(modified), modified) if modified is not None else (ctx.once(), ctx.now_ms)
    return [Event(id=f"{ctx.prefix('product', product_id)}:updated:{stamp}", kind=Kind.PRODUCT_UPDATED, time=time,
                  currency=currency, attrs=attrs, **ctx.base(product_id))], ""


_Handler = Callable[[Mapping[str, Any], _Context], tuple[list[Event], str]]
_HANDLERS: dict[str, _Handler] = {
    **{f"order.{e}": _order for e in ("created", "updated", "deleted", "restored")},
    **{f"customer.{e}": _customer for e in ("created", "updated", "deleted")},
    **{f"product.{e}": _product for e in ("created", "updated", "deleted", "restored")},
}
