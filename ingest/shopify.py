"""Shopify: verify `X-Shopify-Hmac-Sha256` and turn Shopify webhooks into canonical events. Pure.

The topic is in the `X-Shopify-Topic` header; the body is the object itself (order, refund,
checkout, cart, customer, product), with no envelope. What we emit is derived from the STATE of
that object, never from which messages came before, and each fact gets an id of its own:

| topic                                  | events (id suffix after `shopify:<store>:`)                           |
|----------------------------------------|-----------------------------------------------------------------------|
| orders/create, /updated, /paid,        | ORDER_PAID `order:<id>:paid` when financial_status is paid,           |
| /cancelled, /fulfilled,                |   partially_refunded or refunded (whatever the topic says);           |
| /partially_fulfilled                   | ORDER_CANCELLED `order:<id>:cancelled` when cancelled_at is set;      |
|                                        | ORDER_PLACED `order:<id>:placed` when neither (pending, authorized,   |
|                                        |   partially_paid, voided, expired);                                   |
|                                        | CHECKOUT_COMPLETED `checkout:<token>:completed` when it names its     |
|                                        |   checkout_token; ORDER_REFUNDED for each of its refunds[] (below)    |
| orders/delete (body: only the id)      | ORDER_CANCELLED `order:<id>:cancelled`                                |
| refunds/create                         | ORDER_REFUNDED `refund:<refund id>` (none if it moved no money)       |
| checkouts/create, /update              | CHECKOUT_STARTED `checkout:<token>:started`; then CART_UPDATED        |
|                                        |   `checkout:<token>:<delivery>` while open, or CHECKOUT_COMPLETED     |
|                                        |   `checkout:<token>:completed` once it has completed_at               |
| carts/create, /update                  | CART_UPDATED `cart:<token>:<delivery>`                                |
| customers/create                       | CUSTOMER_CREATED `customer:<id>:created`                              |
| customers/update, /enable, /disable    | CUSTOMER_UPDATED `customer:<id>:updated:<delivery>`                   |
| products/create, /update               | PRODUCT_UPDATED `product:<id>:updated:<delivery>`                     |

`<delivery>` is `X-Shopify-Event-Id` (the same for every delivery of one event), else
`X-Shopify-Webhook-Id`, else `at<updated_at ms>`: those facts are one per delivery. Order facts
are one per order, so orders/create + orders/paid + orders/updated of one paid order give one
ORDER_PAID, and a refund has the same id whether refunds/create or an order's refunds[] told us.

The HMAC covers the body only: the topic header is unsigned, so no figure depends on it (an
orders/create body relabelled orders/paid stays unpaid; one relabelled orders/delete is refused).

Money is in the SHOP currency (`*_set.shop_money`); `presentment_amount`/`presentment_currency`
are set only when the buyer's currency differs. Shopify ids are above 2**53: orjson parses them
as exact ints and we only ever str() them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from core.clock import NoOffset, ms_from_iso
from core.config import Store
from core.events import Event, Item, Kind, buyer_attrs, full_name
from core.limits import amount_problem
from core.money import UnknownCurrency, normalise_currency, to_minor
from ingest.adapter import Delivery, Outcome
from ingest.errors import BadPayload, BadSignature, Rejected
from ingest.fields import parse_json, required

HMAC_HEADER = "X-Shopify-Hmac-Sha256"
TOPIC_HEADER = "X-Shopify-Topic"
SHOP_DOMAIN_HEADER = "X-Shopify-Shop-Domain"

# financial_status values that mean the money was taken (refunds are reported on their own).
PAID_STATUSES = frozenset({"paid", "partially_refunded", "refunded"})


def handle(delivery: Delivery, store: Store, now: float) -> Outcome:
    """Verifies, parses and normalises one Shopify delivery; raises BadSignature/BadPayload only."""
    verify(delivery.body, delivery.header(HMAC_HEADER), store.secret)
    if store.shop_domain is not None:
        # A public app's shops all sign with the app's one secret: the domain says whose delivery it is.
        domain = (delivery.header(SHOP_DOMAIN_HEADER) or "").strip().lower()
        if domain != store.shop_domain:
            raise BadSignature(f"{SHOP_DOMAIN_HEADER} {domain or '(missing)'!r} is not this store's shop {store.shop_domain!r}")
    topic = delivery.header(TOPIC_HEADER)
    if not isinstance(topic, str) or not topic.strip():
        raise BadPayload(f"missing {TOPIC_HEADER} header: it names what the body is (e.g. orders/paid)")
    topic = topic.strip().lower()
    payload = parse_json(delivery.body)
    handler = _HANDLERS.get(topic)
    if handler is None:
        return Outcome(topic, [], ignored=f"topic {topic!r} is not used")
    if not isinstance(payload, dict):
        raise BadPayload(f"the body of a {topic} webhook must be a JSON object, got {type(payload).__name__}")
    ctx = _Context(store, topic, _delivery_key(delivery), delivery.header("X-Shopify-Triggered-At"), now)
    try:
        result = handler(payload, ctx)
    except Rejected:
        raise
    except (TypeError, ValueError, KeyError, AttributeError, IndexError, ArithmeticError) as exc:
        # Every field we read is checked; this is the net under shapes nobody foresaw.
        raise BadPayload(f"{topic} body has an unexpected shape: {type(exc).__name__}: {exc}") from None
    if isinstance(result, str):
        return Outcome(topic, [], ignored=result)
    return Outcome(topic, result)


def verify(body: bytes, header: str | None, secret: str) -> None:
    """`X-Shopify-Hmac-Sha256` is base64(HMAC-SHA256(secret, raw body)); compared in constant time."""
    if not header or not isinstance(header, str):
        raise BadSignature(f"missing {HMAC_HEADER} header")
    try:
        given = base64.b64decode(header.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise BadSignature(f"{HMAC_HEADER} is not base64: expected base64(HMAC-SHA256(secret, body))") from None
    expected = hmac.new(secret.encode(), body, hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise BadSignature(
            f"{HMAC_HEADER} does not match the body: sign the raw body bytes with the app's client secret"
        )


def sign(body: bytes, secret: str) -> str:
    """The header value Shopify would send for `body` (for tests and replay tools)."""
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def _delivery_key(delivery: Delivery) -> str | None:
    for name in ("X-Shopify-Event-Id", "X-Shopify-Webhook-Id"):
        value = delivery.header(name)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


@dataclass(frozen=True, slots=True)
class _Context:
    store: Store
    topic: str
    delivery: str | None  # X-Shopify-Event-Id, else X-Shopify-Webhook-Id
    triggered_at: str | None  # X-Shopify-Triggered-At, only read where the body has no time
    now: float

    def id(self, suffix: str) -> str:
        return f"shopify:{self.store.id}:{suffix}"

    def per_delivery(self, updated_ms: int) -> str:
        return self.delivery or f"at{updated_ms}"

    @property
    def base(self) -> dict[str, Any]:
        return {"org": self.store.org, "store": self.store.id}


# --- field readers: each names the field and what was wrong ------------------------------------


def _dict(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadPayload(f"{where} must be an object, got {_show(value)}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise BadPayload(f"{where} must be a list, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _id(value: Any, where: str) -> str:
    """A Shopify id as a string, exact: ints are str()-ed, never passed through float."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    if isinstance(value, float):
        raise BadPayload(f"{where} must be an integer id, got the number {value!r}, which has lost its digits")
    raise BadPayload(f"{where} must be an integer id, got {_show(value)}")


def _opt_id(value: Any, where: str) -> str | None:
    return None if value is None or value == "" else _id(value, where)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadPayload(f"{where} must be a non-negative integer, got {_show(value)}")
    return value


def _time(value: Any, where: str) -> int:
    """ISO 8601 with an offset (2021-12-31T19:00:00-05:00, ...Z) -> exact ms since the epoch, UTC."""
    if not isinstance(value, str):
        raise BadPayload(f"{where} must be an ISO 8601 timestamp, got {_show(value)}")
    try:
        return ms_from_iso(value)
    except NoOffset:
        raise BadPayload(f"{where} {value!r} has no UTC offset, so its instant is unknown") from None
    except ValueError:
        raise BadPayload(f"{where} is not an ISO 8601 timestamp: {_show(value)}") from None


def _first_time(obj: Mapping[str, Any], keys: tuple[str, ...], where: str) -> int:
    for key in keys:
        if obj.get(key) is not None:
            return _time(obj[key], f"{where}.{key}")
    raise BadPayload(f"{where}.{keys[0]} is missing")


def _currency(value: Any, where: str) -> str:
    try:
        return normalise_currency(value)
    except UnknownCurrency as exc:
        raise BadPayload(f"{where}: {exc}") from None


def _valid_currency(value: Any) -> str | None:
    try:
        return normalise_currency(value)
    except UnknownCurrency:
        return None


def _minor(value: Any, currency: str, where: str) -> int:
    """A decimal amount (Shopify sends strings) in minor units, exactly, within core.limits' range.

    Shopify writes amounts in the currency's own precision ("23600" JPY, "414.95" USD), sometimes
    shorter ("0.0"); extra decimals are taken only when they are zeros, so nothing is rounded: a
    non-zero one means the amount is not in the currency it names.
    """
    if isinstance(value, float):
        # A JSON number with a fraction (refund_line_items[].subtotal is one): orjson made it a
        # float; its shortest repr is the text Shopify wrote. Only reached when no string field exists.
        value = Decimal(repr(value))
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise BadPayload(f"{where} must be a decimal amount such as \"12.34\", got {_show(value)}")
    try:
        minor = to_minor(value, currency, "zeros")
    except (ValueError, ArithmeticError) as exc:
        raise BadPayload(f"{where} is not a decimal amount of {currency}: {exc}") from None
    if (why := amount_problem(minor, where)) is not None:
        raise BadPayload(why)
    return minor


@dataclass(frozen=True, slots=True)
class _Money:
    amount: int
    currency: str
    presentment_amount: int | None = None
    presentment_currency: str | None = None

    def fields(self) -> dict[str, Any]:
        return {"amount": self.amount, "currency": self.currency, "presentment_amount": self.presentment_amount,
                "presentment_currency": self.presentment_currency}


def _money(obj: Mapping[str, Any], key: str, where: str, currency: str) -> _Money:
    """`<key>_set.shop_money` (+ presentment_money when it is another currency), else `<key>` in `currency`."""
    bag = obj.get(f"{key}_set")
    if bag is not None:
        bw = f"{where}.{key}_set"
        shop = _dict(required(_dict(bag, bw), "shop_money", bw), f"{bw}.shop_money")
        shop_currency = _currency(required(shop, "currency_code", f"{bw}.shop_money"), f"{bw}.shop_money.currency_code")
        amount = _minor(required(shop, "amount", f"{bw}.shop_money"), shop_currency, f"{bw}.shop_money.amount")
        pres = bag.get("presentment_money")
        if isinstance(pres, dict):
            pres_currency = _valid_currency(pres.get("currency_code"))
            if pres_currency is not None and pres_currency != shop_currency and pres.get("amount") is not None:
                pres_amount = _minor(pres["amount"], pres_currency, f"{bw}.presentment_money.amount")
                return _Money(amount, shop_currency, pres_amount, pres_currency)
        return _Money(amount, shop_currency)
    if obj.get(key) is not None:
        return _Money(_minor(obj[key], currency, f"{where}.{key}"), currency)
    raise BadPayload(f"{where}.{key}_set.shop_money.amount is missing (and so is {where}.{key})")


def _shop_currency(obj: Mapping[str, Any], store: Store) -> str:
    """The shop currency of an order: its shop_money currency, else `currency`, else the store's."""
    bag = obj.get("total_price_set")
    if isinstance(bag, dict) and isinstance(bag.get("shop_money"), dict):
        code = _valid_currency(bag["shop_money"].get("currency_code"))
        if code:
            return code
    if obj.get("currency") is not None:
        return _currency(obj["currency"], "order.currency")
    return store.currency


def _customer_key(obj: Mapping[str, Any], where: str) -> str | None:
    """str(customer.id), else the e-mail (lower-cased) for guests, else None."""
    customer = obj.get("customer")
    if isinstance(customer, dict) and customer.get("id") is not None:
        return _id(customer["id"], f"{where}.customer.id")
    emails = [obj.get("email"), obj.get("contact_email")]
    if isinstance(customer, dict):
        emails.append(customer.get("email"))
    for email in emails:
        if isinstance(email, str) and email.strip():
            return email.strip().lower()
    return None


def _buyer(obj: Mapping[str, Any]) -> dict[str, str]:
    """What an order or checkout says of its buyer: the customer's e-mail and name as it carries them,
    else the order's e-mail and the billing address's name."""
    customer, billing = (obj[k] if isinstance(obj.get(k), dict) else {} for k in ("customer", "billing_address"))
    emails = [e for e in (customer.get("email"), obj.get("email"), obj.get("contact_email"))
              if isinstance(e, str) and e.strip()]
    name = full_name(customer.get("first_name"), customer.get("last_name")) or (
        billing.get("name") if isinstance(billing.get("name"), str) else "") or full_name(
        billing.get("first_name"), billing.get("last_name"))
    return buyer_attrs(emails[0] if emails else None, name)


def _cart_key(order: Mapping[str, Any], where: str) -> str | None:
    """The cart an order came from, keyed as its checkout events are: cart_token, else checkout_token."""
    return (_opt_id(order.get("cart_token"), f"{where}.cart_token")
            or _opt_id(order.get("checkout_token"), f"{where}.checkout_token"))


def _product_key(line: Mapping[str, Any], where: str) -> str:
    for key in ("variant_id", "product_id"):
        if line.get(key) is not None:
            return _id(line[key], f"{where}.{key}")
    # Custom line items (a warranty plan, a gift wrap) name no product: fall back to what they have.
    if _text(line.get("sku")).strip():
        return f"sku:{line['sku'].strip()}"
    if _text(line.get("title")).strip():
        return f"title:{line['title'].strip()}"
    if line.get("id") is not None:
        return f"line:{_id(line['id'], f'{where}.id')}"
    raise BadPayload(f"{where} names no variant_id, product_id, sku or title")


def _item(line: Mapping[str, Any], where: str, currency: str, qty: Any) -> Item:
    return Item(
        product=_product_key(line, where),
        qty=_count(qty, f"{where}.quantity"),
        unit_price=_money(line, "price", where, currency).amount,
        name=_text(line.get("title")) or _text(line.get("name")),
        brand=_text(line.get("vendor")),
    )


def _items(lines: Any, where: str, currency: str) -> tuple[Item, ...]:
    out = []
    for i, line in enumerate(_list(lines, where)):
        lw = f"{where}[{i}]"
        line = _dict(line, lw)
        out.append(_item(line, lw, currency, required(line, "quantity", lw)))
    return tuple(out)


def _attrs(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None and v != ""}


# --- orders and refunds ------------------------------------------------------------------------


def _order(payload: dict[str, Any], ctx: _Context) -> list[Event] | str:
    where = "order"
    oid = _id(required(payload, "id", where), f"{where}.id")
    total = _money(payload, "total_price", where, _shop_currency(payload, ctx.store))
    items = _items(required(payload, "line_items", where), f"{where}.line_items", total.currency)
    status = payload.get("financial_status")
    if status is not None and not isinstance(status, str):
        raise BadPayload(f"{where}.financial_status must be a string such as \"paid\", got {_show(status)}")
    common = {
        **ctx.base, **total.fields(), "order": oid, "raw_id": oid, "customer": _customer_key(payload, where),
        "cart": _cart_key(payload, where),
        "attrs": {**_attrs(name=_text(payload.get("name")), source_name=_text(payload.get("source_name")),
                           test=payload.get("test") if isinstance(payload.get("test"), bool) else None),
                  **_buyer(payload)},
    }
    paid = status in PAID_STATUSES
    events = []
    if paid:
        events.append(Event(id=ctx.id(f"order:{oid}:paid"), kind=Kind.ORDER_PAID, time=_paid_time(payload, where),
                            items=items, **common))
    if payload.get("cancelled_at") is not None:
        attrs = {**common["attrs"], **_attrs(reason=_text(payload.get("cancel_reason")))}
        events.append(Event(id=ctx.id(f"order:{oid}:cancelled"), kind=Kind.ORDER_CANCELLED,
                            time=_time(payload["cancelled_at"], f"{where}.cancelled_at"), items=items,
                            **{**common, "attrs": attrs}))
    elif not paid:
        events.append(Event(id=ctx.id(f"order:{oid}:placed"), kind=Kind.ORDER_PLACED,
                            time=_first_time(payload, ("created_at", "processed_at"), where), items=items, **common))
    checkout = _opt_id(payload.get("checkout_token"), f"{where}.checkout_token")
    if checkout is not None:
        # Shopify does not reliably send checkouts/update on completion: the order is the proof.
        events.append(Event(id=ctx.id(f"checkout:{checkout}:completed"), kind=Kind.CHECKOUT_COMPLETED,
                            time=_first_time(payload, ("created_at", "processed_at"), where),
                            **{**common, "raw_id": checkout, "attrs": {"checkout": checkout}}))
    for i, refund in enumerate(_list(payload.get("refunds"), f"{where}.refunds")):
        event = _refund_event(_dict(refund, f"{where}.refunds[{i}]"), f"{where}.refunds[{i}]", ctx, total.currency, oid)
        if isinstance(event, Event):
            events.append(event)
    return events


def _paid_time(order: Mapping[str, Any], where: str) -> int:
    """When the money was taken: the first successful sale/capture, else the order's processed_at."""
    times = []
    for i, tx in enumerate(_list(order.get("transactions"), f"{where}.transactions")):
        if isinstance(tx, dict) and tx.get("kind") in ("sale", "capture") and tx.get("status") == "success":
            times.append(_first_time(tx, ("processed_at", "created_at"), f"{where}.transactions[{i}]"))
    if times:
        return min(times)
    return _first_time(order, ("processed_at", "created_at"), where)


def _order_deleted(payload: dict[str, Any], ctx: _Context) -> list[Event] | str:
    oid = _id(required(payload, "id", "order"), "order.id")
    if "line_items" in payload or "financial_status" in payload:
        # The topic header is not signed: a captured order body relabelled as a deletion is refused.
        raise BadPayload(f"orders/delete body describes the whole order {oid}, not a deletion (only its id)")
    # The body is only {"id": ...}: the time is when Shopify triggered the webhook, else when it reached us.
    when = (_time(ctx.triggered_at, "X-Shopify-Triggered-At header") if ctx.triggered_at
            else int(ctx.now * 1000))
    return [Event(id=ctx.id(f"order:{oid}:cancelled"), kind=Kind.ORDER_CANCELLED, time=when, order=oid, raw_id=oid,
                  attrs={"reason": "deleted"}, **ctx.base)]


def _refund(payload: dict[str, Any], ctx: _Context) -> list[Event] | str:
    event = _refund_event(payload, "refund", ctx, None, None)
    return [event] if isinstance(event, Event) else event


def _refund_currency(refund: Mapping[str, Any], kind: str) -> str | None:
    """The shop (kind='shop_money') or buyer ('presentment_money') currency a refund's own amounts name."""
    bags = [refund.get("total_duties_set")]
    for key, set_key in (("refund_line_items", "subtotal_set"), ("refund_shipping_lines", "subtotal_amount_set"),
                         ("order_adjustments", "amount_set")):
        lines = refund.get(key)
        if isinstance(lines, list):
            bags += [line.get(set_key) for line in lines if isinstance(line, dict)]
    for bag in bags:
        if isinstance(bag, dict) and isinstance(bag.get(kind), dict):
            code = _valid_currency(bag[kind].get("currency_code"))
            if code:
                return code
    return None


def _refund_event(refund: dict[str, Any], where: str, ctx: _Context, order_currency: str | None,
                  order_id: str | None) -> Event | str:
    """One ORDER_REFUNDED per Shopify refund, identical from refunds/create and from an order's refunds[]."""
    rid = _id(required(refund, "id", where), f"{where}.id")
    oid = _opt_id(refund.get("order_id"), f"{where}.order_id") or order_id
    if oid is None:
        raise BadPayload(f"{where}.order_id is missing")
    currency = _refund_currency(refund, "shop_money") or order_currency or ctx.store.currency
    money = _refund_money(refund, where, currency)
    if money is None:
        return f"refund {rid} moved no money (no successful refund transaction)"
    items = []
    for i, rli in enumerate(_list(refund.get("refund_line_items"), f"{where}.refund_line_items")):
        rw = f"{where}.refund_line_items[{i}]"
        rli = _dict(rli, rw)
        if isinstance(rli.get("line_item"), dict):
            items.append(_item(rli["line_item"], f"{rw}.line_item", currency, required(rli, "quantity", rw)))
    return Event(
        id=ctx.id(f"refund:{rid}"), kind=Kind.ORDER_REFUNDED,
        time=_first_time(refund, ("processed_at", "created_at"), where),
        order=oid, refund=rid, raw_id=rid, items=tuple(items),
        attrs=_attrs(note=_text(refund.get("note"))), **money.fields(), **ctx.base,
    )


def _refund_money(refund: Mapping[str, Any], where: str, currency: str) -> _Money | None:
    """The money a refund returned, in the shop currency; None when it returned none.

    It is the successful `kind: refund` transactions. A transaction's `amount` is in its own
    `currency`, which Shopify makes the PRESENTMENT currency (null in the sample payloads: then the
    refund's presentment currency, else the shop's). When that is the shop currency the sum is
    exact. When it is not and the transactions carry no `amount_set.shop_money`, the shop amount
    is what the refund's lines say (line subtotals + shipping + duties, in shop money) and the
    transactions' sum is kept as the presentment amount. A refund without a `transactions` list at
    all is valued by its lines too.
    """
    txs = refund.get("transactions")
    if txs is None:
        return _Money(_refund_lines_total(refund, where, currency), currency)
    done = [(i, tx) for i, tx in enumerate(_list(txs, f"{where}.transactions"))
            if isinstance(tx, dict) and tx.get("kind") == "refund" and tx.get("status") == "success"]
    if not done:
        return None
    shop_sets = [tx.get("amount_set") for _, tx in done]
    if all(isinstance(s, dict) and isinstance(s.get("shop_money"), dict) for s in shop_sets):
        parts = [_money(tx, "amount", f"{where}.transactions[{i}]", currency) for i, tx in done]
        shop_total = sum(p.amount for p in parts)
        buyer_currencies = {p.presentment_currency for p in parts}
        if len(buyer_currencies) == 1 and None not in buyer_currencies:
            buyer_total = sum(p.presentment_amount or 0 for p in parts)
            return _Money(shop_total, currency, buyer_total, buyer_currencies.pop())
        return _Money(shop_total, currency)
    default = _refund_currency(refund, "presentment_money") or currency
    tx_currencies = {
        _currency(tx["currency"], f"{where}.transactions[{i}].currency") if tx.get("currency") is not None else default
        for i, tx in done
    }
    if len(tx_currencies) != 1:
        raise BadPayload(f"{where}.transactions are in several currencies: {sorted(tx_currencies)}")
    tx_currency = tx_currencies.pop()
    total = sum(_minor(required(tx, "amount", f"{where}.transactions[{i}]"), tx_currency,
                       f"{where}.transactions[{i}].amount") for i, tx in done)
    if tx_currency == currency:
        return _Money(total, currency)
    return _Money(_refund_lines_total(refund, where, currency), currency, total, tx_currency)


def _refund_lines_total(refund: Mapping[str, Any], where: str, currency: str) -> int:
    total = 0
    for i, rli in enumerate(_list(refund.get("refund_line_items"), f"{where}.refund_line_items")):
        total += _money(_dict(rli, f"{where}.refund_line_items[{i}]"), "subtotal",
                        f"{where}.refund_line_items[{i}]", currency).amount
    for i, line in enumerate(_list(refund.get("refund_shipping_lines"), f"{where}.refund_shipping_lines")):
        total += _money(_dict(line, f"{where}.refund_shipping_lines[{i}]"), "subtotal_amount",
                        f"{where}.refund_shipping_lines[{i}]", currency).amount
    if isinstance(refund.get("total_duties_set"), dict):
        total += _money(refund, "total_duties", where, currency).amount
    return total


# --- checkouts and carts -----------------------------------------------------------------------


def _checkout(payload: dict[str, Any], ctx: _Context) -> list[Event] | str:
    where = "checkout"
    token = _id(required(payload, "token", where), f"{where}.token")
    cart = _opt_id(payload.get("cart_token"), f"{where}.cart_token") or token
    # Checkout payloads carry no shop/presentment pairs: their amounts are what the buyer sees.
    code = payload.get("presentment_currency") or payload.get("currency")
    currency = _currency(code, f"{where}.presentment_currency") if code is not None else ctx.store.currency
    total = _money(payload, "total_price", where, currency)
    items = _items(payload.get("line_items"), f"{where}.line_items", total.currency)
    common = {**ctx.base, **total.fields(), "cart": cart, "raw_id": token, "items": items,
              "customer": _customer_key(payload, where)}
    attrs = {**_attrs(checkout=token, recovery_url=_text(payload.get("abandoned_checkout_url"))), **_buyer(payload)}
    events = [Event(id=ctx.id(f"checkout:{token}:started"), kind=Kind.CHECKOUT_STARTED,
                    time=_first_time(payload, ("created_at", "updated_at"), where), attrs=attrs, **common)]
    if payload.get("completed_at") is not None:
        events.append(Event(id=ctx.id(f"checkout:{token}:completed"), kind=Kind.CHECKOUT_COMPLETED,
                            time=_time(payload["completed_at"], f"{where}.completed_at"), attrs=attrs, **common))
    else:
        updated = _first_time(payload, ("updated_at", "created_at"), where)
        events.append(Event(id=ctx.id(f"checkout:{token}:{ctx.per_delivery(updated)}"), kind=Kind.CART_UPDATED,
                            time=updated, attrs=attrs, **common))
    return events


def _cart(payload: dict[str, Any], ctx: _Context) -> list[Event] | str:
    where = "cart"
    token = _id(payload.get("token") or required(payload, "id", where), f"{where}.token")
    lines = _list(payload.get("line_items"), f"{where}.line_items")
    currency = ctx.store.currency
    for line in lines:
        bag = line.get("price_set") if isinstance(line, dict) else None
        if isinstance(bag, dict) and isinstance(bag.get("shop_money"), dict):
            currency = _valid_currency(bag["shop_money"].get("currency_code")) or currency
            break
    items = _items(lines, f"{where}.line_items", currency)
    value = sum(_money(line, "line_price", f"{where}.line_items[{i}]", currency).amount
                if line.get("line_price_set") is not None or line.get("line_price") is not None
                else item.unit_price * item.qty
                for i, (line, item) in enumerate(zip(lines, items)))
    updated = _first_time(payload, ("updated_at", "created_at"), where)
    return [Event(id=ctx.id(f"cart:{token}:{ctx.per_delivery(updated)}"), kind=Kind.CART_UPDATED, time=updated,
                  amount=value, currency=currency, cart=token, raw_id=token, items=items, **ctx.base)]


# --- customers and products --------------------------------------------------------------------


def _customer(payload: dict[str, Any], ctx: _Context) -> list[Event] | str:
    where = "customer"
    cid = _id(required(payload, "id", where), f"{where}.id")
    default_address = payload.get("default_address")
    address = default_address if isinstance(default_address, dict) else {}
    consent = payload.get("email_marketing_consent")
    marketing = consent.get("state") == "subscribed" if isinstance(consent, dict) else payload.get("accepts_marketing")
    attrs = _attrs(
        email=_text(payload.get("email")).strip().lower(), first_name=_text(payload.get("first_name")),
        last_name=_text(payload.get("last_name")), phone=_text(payload.get("phone")), state=_text(payload.get("state")),
        created_at=_time(payload["created_at"], f"{where}.created_at") if payload.get("created_at") else None,
        tags=[t.strip() for t in _text(payload.get("tags")).split(",") if t.strip()] or None,
        country=_text(address.get("country_code")),
        verified_email=payload.get("verified_email") if isinstance(payload.get("verified_email"), bool) else None,
        accepts_marketing=marketing if isinstance(marketing, bool) else None,
        orders_count=_count(payload["orders_count"], f"{where}.orders_count") if payload.get("orders_count") is not None
        else None,
        total_spent=_minor(payload["total_spent"], ctx.store.currency, f"{where}.total_spent")
        if payload.get("total_spent") is not None else None,
    )
    if "total_spent" in attrs:
        attrs["currency"] = ctx.store.currency
    common = {**ctx.base, "customer": cid, "raw_id": cid, "attrs": attrs}
    if ctx.topic == "customers/create":
        created = _first_time(payload, ("created_at", "updated_at"), where)
        return [Event(id=ctx.id(f"customer:{cid}:created"), kind=Kind.CUSTOMER_CREATED, time=created, **common)]
    updated = _first_time(payload, ("updated_at", "created_at"), where)
    return [Event(id=ctx.id(f"customer:{cid}:updated:{ctx.per_delivery(updated)}"), kind=Kind.CUSTOMER_UPDATED,
                  time=updated, **common)]


def _product(payload: dict[str, Any], ctx: _Context) -> list[Event] | str:
    where = "product"
    pid = _id(required(payload, "id", where), f"{where}.id")
    currency = ctx.store.currency  # product prices are in the shop currency
    variants = []
    for i, variant in enumerate(_list(payload.get("variants"), f"{where}.variants")):
        vw = f"{where}.variants[{i}]"
        variant = _dict(variant, vw)
        variants.append(_attrs(
            id=_opt_id(variant.get("id"), f"{vw}.id"), sku=_text(variant.get("sku")), title=_text(variant.get("title")),
            price=_minor(variant["price"], currency, f"{vw}.price") if variant.get("price") is not None else None,
        ))
    prices = [v["price"] for v in variants if "price" in v]
    category = payload.get("category")
    categories = [c for c in (_text(payload.get("product_type")),
                              _text(category.get("name")) if isinstance(category, dict) else "") if c]
    attrs = {
        "name": _text(payload.get("title")),
        "sku": next((v["sku"] for v in variants if v.get("sku")), ""),
        "price": min(prices) if prices else None,
        "categories": categories,
        "brand": _text(payload.get("vendor")),
        **_attrs(status=_text(payload.get("status")), handle=_text(payload.get("handle")),
                 tags=[t.strip() for t in _text(payload.get("tags")).split(",") if t.strip()] or None,
                 variants=variants or None),
    }
    updated = _first_time(payload, ("updated_at", "created_at"), where)
    return [Event(id=ctx.id(f"product:{pid}:updated:{ctx.per_delivery(updated)}"), kind=Kind.PRODUCT_UPDATED,
                  time=updated, raw_id=pid, amount=min(prices) if prices else 0, currency=currency, attrs=attrs,
                  **ctx.base)]


_HANDLERS: dict[str, Callable[[dict[str, Any], _Context], list[Event] | str]] = {
    **{f"orders/{t}": _order for t in ("create", "updated", "paid", "cancelled", "fulfilled", "partially_fulfilled")},
    "orders/delete": _order_deleted,
    "refunds/create": _refund,
    "checkouts/create": _checkout,
    "checkouts/update": _checkout,
    "carts/create": _cart,
    "carts/update": _cart,
    **{f"customers/{t}": _customer for t in ("create", "update", "enable", "disable")},
    "products/create": _product,
    "products/update": _product,
}
