"""Stripe: verify `Stripe-Signature` and turn Stripe objects into canonical events. Pure.

Event ids come from the fact, not from the Stripe event: one payment reaches us as a checkout
session, a payment intent, a charge and maybe an invoice, and a backfill finds the same objects
again; all of them name the payment intent, so all become `stripe:<store>:paid:<pi>` and the log
keeps the first. Object-level functions (`paid_from_*`, ...) serve webhooks and backfill alike.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from typing import Any

from core.config import Store
from core.events import Event, Item, Kind, buyer_attrs
from core.limits import MAX_TIME_MS, amount_problem
from core.money import UnknownCurrency, divide_half_up, exponent, normalise_currency
from ingest.adapter import Delivery, Outcome
from ingest.errors import BadPayload, BadSignature
from ingest.fields import integer, parse_json, required

TOLERANCE_SECONDS = 300

# Stripe's "smallest unit" differs from ISO 4217's for a few currencies (docs.stripe.com/currencies).
_STRIPE_ZERO_DECIMAL = frozenset("BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split())
_STRIPE_THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())

Obj = Mapping[str, Any]


def handle(delivery: Delivery, store: Store, now: float) -> Outcome:
    verify(delivery.body, delivery.header("stripe-signature"), store.secret, now)
    payload = parse_json(delivery.body)
    events = normalise(payload, store)
    topic = str(payload.get("type"))
    return Outcome(topic, events, None if events else f"event type {topic!r} is not used")


def verify(body: bytes, header: str | None, secret: str, now: float) -> None:
    """Checks a v1 HMAC-SHA256 of "<t>.<raw body>" (Stripe's scheme, on the raw bytes, constant-time
    compare), and the timestamp against `now` (not the wall clock). Any v1 entry may match: Stripe
    sends one per active secret while a secret is being rolled."""
    if not header:
        raise BadSignature("missing Stripe-Signature header")
    timestamp: str | None = None
    candidates = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and timestamp is None:
            timestamp = value
        elif key == "v1":
            candidates.append(value.encode())
    if timestamp is None or not (timestamp.isascii() and timestamp.isdigit()):
        raise BadSignature("Stripe-Signature does not verify: no t=<unix time> in the header")
    if not candidates:
        raise BadSignature("Stripe-Signature does not verify: no v1 signature in the header")
    expected = hmac.digest(secret.encode(), timestamp.encode() + b"." + body, "sha256").hex().encode()
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        raise BadSignature("Stripe-Signature does not verify: no signature matches the body and this store's secret")
    if int(timestamp) < now - TOLERANCE_SECONDS:
        raise BadSignature(
            f"Stripe-Signature timestamp {timestamp} is more than {TOLERANCE_SECONDS} s old: a replay, or a clock far off"
        )


def to_iso_minor(amount: int, currency: str) -> int:
    """Stripe's integer amount in ISO 4217 minor units."""
    if currency in _STRIPE_ZERO_DECIMAL:
        stripe_exp = 0
    elif currency in _STRIPE_THREE_DECIMAL:
        stripe_exp = 3
    else:
        stripe_exp = 2
    shift = exponent(currency) - stripe_exp
    if shift >= 0:
        factor: int = 10**shift  # int ** int is typed Any (a negative power is a float)
        return amount * factor
    return divide_half_up(amount, 10**-shift)


def normalise(payload: Any, store: Store) -> list[Event]:
    """Canonical events for one Stripe event; [] for a type we do not use."""
    if not isinstance(payload, dict):
        raise BadPayload("the body must be a JSON object (a Stripe event)")
    event_id, etype, created = payload.get("id"), payload.get("type"), payload.get("created")
    if not isinstance(event_id, str) or not isinstance(etype, str):
        raise BadPayload("not a Stripe event: 'id' and 'type' must be strings")
    if not isinstance(created, int) or isinstance(created, bool):
        raise BadPayload("event.created must be an integer (Unix seconds)")
    if not 0 <= created * 1000 < MAX_TIME_MS:
        raise BadPayload(f"event.created must be Unix seconds from 1970 to before the year 5000, got {created}")
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise BadPayload("event.data.object is missing")
    handler = _HANDLERS.get(etype)
    if handler is None:
        return []
    return handler(obj, store, created * 1000, event_id)


# --- field access with messages that say what is wrong --------------------------------------------

def _minor(amount: int, currency: str, what: str) -> int:
    """A Stripe amount in ISO minor units, or BadPayload naming `what` when it is outside core.limits'
    range: never negative (a refund is charge.refunded, never a negative payment), never over MAX_AMOUNT."""
    minor = to_iso_minor(amount, currency)
    if (why := amount_problem(minor, what)) is not None:
        raise BadPayload(why)
    return minor


def _amount(obj: Obj, moved: str, where: str, currency: str) -> int:
    """What moved (`amount_received`, `amount_captured`) when it is a positive integer, else `amount`,
    in ISO minor units."""
    value = obj.get(moved)
    key = moved if isinstance(value, int) and not isinstance(value, bool) and value > 0 else "amount"
    return _minor(integer(obj, key, where), currency, f"{where}.{key}")


def _str(obj: Obj, key: str, where: str) -> str:
    value = required(obj, key, where)
    if not isinstance(value, str) or not value:
        raise BadPayload(f"{where}.{key} must be a non-empty string, got {value!r}")
    return value


def _currency(obj: Obj, where: str) -> str:
    try:
        return normalise_currency(required(obj, "currency", where))
    except UnknownCurrency as exc:
        raise BadPayload(f"{where}.currency: {exc}") from None


def _id(value: Any) -> str | None:
    """Stripe fields hold either an id or, when expanded, the object with its id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def _base(obj: Obj, store: Store, time_ms: int, event_id: str) -> dict[str, Any]:
    return {
        "id": f"stripe:{store.id}:{event_id}",
        "org": store.org,
        "store": store.id,
        "time": time_ms,
        "customer": _id(obj.get("customer")),
        "raw_id": obj["id"] if isinstance(obj.get("id"), str) else "",
    }


def _paid(store: Store, base: dict[str, Any], order: str, amount: int, currency: str, **extra: Any) -> list[Event]:
    """ORDER_PAID of `amount` ISO minor units."""
    fields = {**base, "id": f"stripe:{store.id}:paid:{order}", **extra}
    return [Event(kind=Kind.ORDER_PAID, amount=amount, currency=currency, order=order, **fields)]


# --- objects -> events (webhooks and backfill) -----------------------------------------------------

def paid_from_checkout_session(obj: Obj, store: Store, time_ms: int, event_id: str = "") -> list[Event]:
    where = "checkout.session"
    if obj.get("mode") not in (None, "payment"):
        return []  # subscriptions are counted from their invoices
    if obj.get("payment_status", "paid") != "paid":
        return []  # delayed payment methods: the payment intent reports success later
    items: tuple[Item, ...] = ()
    if obj.get("amount_total") is not None:
        currency = _currency(obj, where)
        amount = _minor(integer(obj, "amount_total", where), currency, f"{where}.amount_total")
    else:
        # API versions before 2020: no totals, only display_items.
        lines = obj.get("display_items")
        if not isinstance(lines, list) or not lines or not all(isinstance(x, dict) for x in lines):
            raise BadPayload(f"{where} has neither amount_total nor display_items")
        currency = _currency(lines[0], f"{where}.display_items[0]")
        total, parsed = 0, []
        for i, line in enumerate(lines):
            lw = f"{where}.display_items[{i}]"
            qty, unit = integer(line, "quantity", lw), integer(line, "amount", lw)
            total += qty * unit
            custom = line.get("custom") or line.get("price") or {}
            name = custom.get("name", "") if isinstance(custom, dict) else ""
            name = name if isinstance(name, str) else ""
            parsed.append(Item(product=name or f"line-{i}", qty=qty, unit_price=_minor(unit, currency, f"{lw}.amount"),
                               name=name))
        amount = _minor(total, currency, f"{where}.display_items (quantity x amount, summed)")
        items = tuple(parsed)
    order = _id(obj.get("payment_intent")) or _str(obj, "id", where)
    base = _base(obj, store, time_ms, event_id)
    customer, attrs = _session_buyer(obj, base.pop("customer"))
    return _paid(store, base, order, amount, currency, customer=customer, items=items, cart=obj.get("id"),
                 attrs=attrs)


def _session_buyer(obj: Obj, customer: str | None) -> tuple[str | None, dict[str, str]]:
    """A checkout session's customer (a guest: the e-mail typed at the checkout, so that the session's
    cart and its order are one person) and the details typed there."""
    details = obj.get("customer_details")
    details = details if isinstance(details, dict) else {}
    email = details.get("email") or obj.get("customer_email")
    attrs = buyer_attrs(email, details.get("name"))
    return customer or attrs.get("email"), attrs


def paid_from_payment_intent(obj: Obj, store: Store, time_ms: int, event_id: str = "") -> list[Event]:
    where = "payment_intent"
    if obj.get("status") not in (None, "succeeded"):
        return []
    currency = _currency(obj, where)
    amount = _amount(obj, "amount_received", where, currency)
    return _paid(store, _base(obj, store, time_ms, event_id), _str(obj, "id", where), amount, currency,
                 attrs=buyer_attrs(obj.get("receipt_email"), None))


def paid_from_charge(obj: Obj, store: Store, time_ms: int, event_id: str = "") -> list[Event]:
    where = "charge"
    if obj.get("paid") is False or obj.get("captured") is False or obj.get("status") not in (None, "succeeded"):
        return []  # authorised only, or failed: not (yet) money
    currency = _currency(obj, where)
    amount = _amount(obj, "amount_captured", where, currency)
    order = _id(obj.get("payment_intent")) or _str(obj, "id", where)
    billing = obj.get("billing_details")
    billing = billing if isinstance(billing, dict) else {}
    attrs = buyer_attrs(billing.get("email") or obj.get("receipt_email"), billing.get("name"))
    return _paid(store, _base(obj, store, time_ms, event_id), order, amount, currency, attrs=attrs)


def paid_from_invoice(obj: Obj, store: Store, time_ms: int, event_id: str = "") -> list[Event]:
    where = "invoice"
    if obj.get("status") not in (None, "paid") or obj.get("paid") is False:
        return []
    currency = _currency(obj, where)
    amount = _minor(integer(obj, "amount_paid", where), currency, f"{where}.amount_paid")
    if amount == 0:
        return []  # a free or fully credited invoice is no order
    order = _invoice_payment_intent(obj) or _str(obj, "id", where)
    return _paid(store, _base(obj, store, time_ms, event_id), order, amount, currency,
                 attrs=buyer_attrs(obj.get("customer_email"), obj.get("customer_name")))


def _invoice_payment_intent(obj: Obj) -> str | None:
    """The payment intent that paid an invoice, which the intent's own events share.

    Older API versions name it on the invoice; since 2025-03 it sits in `payments` (when included).
    An invoice with neither is counted under its own id: subscribe to invoice.paid or to
    payment_intent.succeeded for such accounts, not both, or one payment counts twice.
    """
    direct = _id(obj.get("payment_intent"))
    if direct:
        return direct
    payments = obj.get("payments")
    data = payments.get("data") if isinstance(payments, dict) else None
    for p in data if isinstance(data, list) else []:
        payment = p.get("payment") if isinstance(p, dict) else None
        if isinstance(payment, dict) and p.get("status") in (None, "paid"):
            pi = _id(payment.get("payment_intent"))
            if pi:
                return pi
    return None


def refund_from_charge(obj: Obj, store: Store, time_ms: int, event_id: str = "") -> list[Event]:
    where = "charge"
    currency = _currency(obj, where)
    charge = _str(obj, "id", where)
    refunded = integer(obj, "amount_refunded", where)
    if refunded == 0:
        return []
    order = _id(obj.get("payment_intent")) or charge
    # amount_refunded is the charge's running total, in every API version: the refund is named after
    # the charge, so a later, larger total replaces the earlier one rather than adding to it.
    base = {**_base(obj, store, time_ms, event_id), "id": f"stripe:{store.id}:refunded:{charge}:{refunded}"}
    return [Event(kind=Kind.ORDER_REFUNDED, amount=_minor(refunded, currency, f"{where}.amount_refunded"),
                  currency=currency, order=order, refund=f"charge:{charge}", **base)]


def expired_checkout(obj: Obj, store: Store, time_ms: int, event_id: str = "") -> list[Event]:
    where = "checkout.session"
    cs = _str(obj, "id", where)
    amount, currency = obj.get("amount_total"), obj.get("currency")
    fields = {**_base(obj, store, time_ms, event_id), "id": f"stripe:{store.id}:checkout:{cs}:expired"}
    fields["customer"], fields["attrs"] = _session_buyer(obj, fields["customer"])
    if isinstance(amount, int) and not isinstance(amount, bool) and currency is not None:
        cur = _currency(obj, where)
        fields.update(amount=_minor(integer(obj, "amount_total", where), cur, f"{where}.amount_total"), currency=cur)
    return [Event(kind=Kind.CHECKOUT_EXPIRED, cart=cs, **fields)]


def _customer_attrs(obj: Obj) -> dict[str, Any]:
    return {k: obj[k] for k in ("email", "name", "created", "currency") if isinstance(obj.get(k), str | int) and not isinstance(obj.get(k), bool)}


def customer_created(obj: Obj, store: Store, time_ms: int, event_id: str = "") -> list[Event]:
    cus = _str(obj, "id", "customer")
    base = {**_base(obj, store, time_ms, event_id), "id": f"stripe:{store.id}:customer:{cus}:created", "customer": cus}
    return [Event(kind=Kind.CUSTOMER_CREATED, attrs=_customer_attrs(obj), **base)]


def customer_updated(obj: Obj, store: Store, time_ms: int, event_id: str) -> list[Event]:
    cus = _str(obj, "id", "customer")
    return [Event(kind=Kind.CUSTOMER_UPDATED, attrs=_customer_attrs(obj), **{**_base(obj, store, time_ms, event_id), "customer": cus})]


def product_updated(obj: Obj, store: Store, time_ms: int, event_id: str) -> list[Event]:
    _str(obj, "id", "product")
    attrs = {k: obj[k] for k in ("name", "description", "active") if isinstance(obj.get(k), str | bool)}
    return [Event(kind=Kind.PRODUCT_UPDATED, attrs=attrs, **{**_base(obj, store, time_ms, event_id), "customer": None})]


_HANDLERS: dict[str, Callable[[Obj, Store, int, str], list[Event]]] = {
    "checkout.session.completed": paid_from_checkout_session,
    "checkout.session.async_payment_succeeded": paid_from_checkout_session,
    "checkout.session.expired": expired_checkout,
    "payment_intent.succeeded": paid_from_payment_intent,
    "charge.succeeded": paid_from_charge,
    "charge.refunded": refund_from_charge,
    "invoice.paid": paid_from_invoice,
    "customer.created": customer_created,
    "customer.updated": customer_updated,
    "product.updated": product_updated,
}
