"""Stripe: verify `Stripe-Signature` and turn Stripe events into canonical events. Pure.

One payment reaches us as several events (checkout session, payment intent, charge); they all
name the payment intent, which becomes the order key, so the dataflow counts the order once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe

from core.config import Store
from core.events import Event, Item, Kind
from core.money import UnknownCurrency, divide_half_up, exponent, normalise_currency
from ingest.errors import BadPayload, BadSignature

TOLERANCE_SECONDS = 300

# Stripe's "smallest unit" differs from ISO 4217's for a few currencies (docs.stripe.com/currencies).
_STRIPE_ZERO_DECIMAL = frozenset(
    "BIF CLP DJF GNF JPY KMF KRW MGA PYG RWF UGX VND VUV XAF XOF XPF".split()
)
_STRIPE_THREE_DECIMAL = frozenset("BHD JOD KWD OMR TND".split())
_STRIPE_TWO_DECIMAL_ZERO_ISO = frozenset({"ISK"})  # sent with two (zero) decimals for compatibility


def verify(body: bytes, header: str | None, secret: str, now: float) -> None:
    """Checks the v1 HMAC with the stripe library, and the timestamp against `now` (not the wall clock)."""
    if not header:
        raise BadSignature("missing Stripe-Signature header")
    try:
        stripe.WebhookSignature.verify_header(body, header, secret, tolerance=None)
    except stripe.SignatureVerificationError as exc:
        raise BadSignature(f"Stripe-Signature does not verify: {exc.user_message or exc}") from None
    except UnicodeDecodeError:
        raise BadSignature("Stripe-Signature does not verify: the body is not UTF-8") from None
    timestamp = int(next(p for p in header.split(",") if p.startswith("t="))[2:])
    if timestamp < now - TOLERANCE_SECONDS:
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
        return amount * 10**shift
    return divide_half_up(amount, 10**-shift)


def _field(obj: Mapping[str, Any], key: str, where: str) -> Any:
    value = obj.get(key)
    if value is None:
        raise BadPayload(f"{where}.{key} is missing")
    return value


def _int(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = _field(obj, key, where)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadPayload(f"{where}.{key} must be an integer, got {value!r}")
    return value


def _currency(obj: Mapping[str, Any], where: str) -> str:
    try:
        return normalise_currency(_field(obj, "currency", where))
    except UnknownCurrency as exc:
        raise BadPayload(f"{where}.currency: {exc}") from None


def _id(value: Any) -> str | None:
    """Stripe fields hold either an id or, when expanded, the object with its id."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def normalise(payload: Any, store: Store) -> list[Event]:
    """Canonical events for one Stripe event; [] for a type we do not use."""
    if not isinstance(payload, dict):
        raise BadPayload("the body must be a JSON object (a Stripe event)")
    event_id = payload.get("id")
    etype = payload.get("type")
    created = payload.get("created")
    if not isinstance(event_id, str) or not isinstance(etype, str):
        raise BadPayload("not a Stripe event: 'id' and 'type' must be strings")
    if not isinstance(created, int) or isinstance(created, bool):
        raise BadPayload("event.created must be an integer (Unix seconds)")
    data = payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        raise BadPayload("event.data.object is missing")
    handler = _HANDLERS.get(etype)
    if handler is None:
        return []
    base = {
        "id": f"stripe:{store.id}:{event_id}",
        "org": store.org,
        "store": store.id,
        "time": created * 1000,
        "customer": _id(obj.get("customer")),
        "raw_id": obj.get("id") if isinstance(obj.get("id"), str) else "",
    }
    return handler(obj, base)


def _checkout_completed(obj: Mapping[str, Any], base: dict[str, Any]) -> list[Event]:
    where = "checkout.session"
    if obj.get("mode") not in (None, "payment"):
        return []  # subscriptions and setups are counted from their invoices
    if obj.get("payment_status", "paid") != "paid":
        return []  # delayed payment methods: the payment intent reports success later
    items: tuple[Item, ...] = ()
    if "amount_total" in obj:
        currency = _currency(obj, where)
        amount = _int(obj, "amount_total", where)
    else:
        # API versions before 2020: no totals, only display_items.
        lines = obj.get("display_items")
        if not isinstance(lines, list) or not lines:
            raise BadPayload(f"{where} has neither amount_total nor display_items")
        currency = _currency(lines[0], f"{where}.display_items[0]")
        amount = 0
        parsed = []
        for i, line in enumerate(lines):
            lw = f"{where}.display_items[{i}]"
            qty, unit = _int(line, "quantity", lw), _int(line, "amount", lw)
            amount += qty * unit
            custom = line.get("custom") or line.get("price") or {}
            name = custom.get("name", "") if isinstance(custom, dict) else ""
            parsed.append(Item(product=name or f"line-{i}", qty=qty, unit_price=to_iso_minor(unit, currency), name=name))
        items = tuple(parsed)
    order = _id(obj.get("payment_intent")) or _field(obj, "id", where)
    details = obj.get("customer_details")
    email = details.get("email") if isinstance(details, dict) else obj.get("customer_email")
    customer = base["customer"] or (email if isinstance(email, str) and email else None)
    return [
        Event(
            kind=Kind.ORDER_PAID,
            amount=to_iso_minor(amount, currency),
            currency=currency,
            order=order,
            items=items,
            **{**base, "customer": customer},
        )
    ]


def _payment_intent_succeeded(obj: Mapping[str, Any], base: dict[str, Any]) -> list[Event]:
    where = "payment_intent"
    currency = _currency(obj, where)
    received = obj.get("amount_received")
    amount = received if isinstance(received, int) and received > 0 else _int(obj, "amount", where)
    order = _field(obj, "id", where)
    return [Event(kind=Kind.ORDER_PAID, amount=to_iso_minor(amount, currency), currency=currency, order=order, **base)]


def _charge_refunded(obj: Mapping[str, Any], base: dict[str, Any]) -> list[Event]:
    where = "charge"
    currency = _currency(obj, where)
    charge = _field(obj, "id", where)
    refunded = _int(obj, "amount_refunded", where)
    order = _id(obj.get("payment_intent")) or charge
    # amount_refunded is the charge's running total, present in every API version: the refund is
    # named after the charge, so each later event replaces the total instead of adding to it.
    return [
        Event(
            kind=Kind.ORDER_REFUNDED,
            amount=to_iso_minor(refunded, currency),
            currency=currency,
            order=order,
            refund=f"charge:{charge}",
            **base,
        )
    ]


_HANDLERS = {
    "checkout.session.completed": _checkout_completed,
    "payment_intent.succeeded": _payment_intent_succeeded,
    "charge.refunded": _charge_refunded,
}
