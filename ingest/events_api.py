"""The site events API: `POST /v1/events`, one event or a batch of up to 1,000, per-store API key.

Feeds what webhooks cannot: visits, product views, carts, e-mail engagement, identity. A batch is
all or nothing: one invalid event refuses the batch with every problem listed, so a client never
has to guess which half landed. Ids are the client's own, so a retried batch is a duplicate.
"""

from __future__ import annotations

import hmac
from typing import Any

import orjson

from core.clock import ms_from_iso
from core.config import Config, Store
from core.events import Event, Item, Kind, Source
from core.money import UnknownCurrency, normalise_currency, to_minor
from ingest.adapter import Outcome
from ingest.errors import BadPayload, BadSignature
from ingest.fields import parse_json

MAX_BATCH = 1000

TYPES: dict[str, Kind] = {
    "page_view": Kind.PAGE_VIEWED,
    "product_view": Kind.PRODUCT_VIEWED,
    "add_to_cart": Kind.CART_ITEM_ADDED,
    "remove_from_cart": Kind.CART_ITEM_REMOVED,
    "cart_updated": Kind.CART_UPDATED,
    "checkout_started": Kind.CHECKOUT_STARTED,
    "email_open": Kind.EMAIL_ENGAGED,
    "email_click": Kind.EMAIL_ENGAGED,
    "identify": Kind.IDENTIFIED,
    "order_paid": Kind.ORDER_PAID,
    "order_refunded": Kind.ORDER_REFUNDED,
    "custom": Kind.CUSTOM,
}


class Invalid(Exception):
    pass


def store_for_key(config: Config, key: str | None) -> Store:
    """The events store whose API key this is (compared in constant time)."""
    if not key:
        raise BadSignature("missing API key: send 'Authorization: Bearer <store API key>'")
    found = None
    for org in config.orgs.values():
        for store in org.stores.values():
            if store.provider == "events" and hmac.compare_digest(store.secret.encode(), key.encode()):
                found = store
    if found is None:
        raise BadSignature("the API key is not valid for any events store")
    return found


def _text(d: dict[str, Any], key: str, required: bool = False) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise Invalid(f"{key} is missing")
        return None
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str) or not v or len(v) > 512:
        raise Invalid(f"{key} must be a non-empty string of at most 512 characters")
    return v


def _time(d: dict[str, Any]) -> int:
    v = d.get("time")
    if isinstance(v, int) and not isinstance(v, bool) and 0 < v < 10**14:
        return v
    if isinstance(v, str):
        try:
            return ms_from_iso(v)
        except ValueError as exc:
            raise Invalid(f"time {exc}") from None
    raise Invalid("time is missing: give ISO 8601 with an offset or Unix milliseconds")


def _money(d: dict[str, Any], key: str, currency: str) -> int:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise Invalid(f"{key} must be a decimal string such as \"12.34\" (or an integer), got {v!r}")
    try:
        return to_minor(v, currency)
    except (ValueError, TypeError) as exc:
        raise Invalid(f"{key}: {exc}") from None


def _items(d: dict[str, Any], currency: str | None) -> tuple[Item, ...]:
    raw = d.get("items")
    if raw is None and d.get("product") is not None:
        raw = [{"product": d["product"], "qty": d.get("qty", 1), "price": d.get("price"), "name": d.get("product_name"),
                "category": d.get("category"), "brand": d.get("brand")}]
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > 500:
        raise Invalid("items must be a list of at most 500 objects")
    out = []
    for i, it in enumerate(raw):
        if not isinstance(it, dict):
            raise Invalid(f"items[{i}] must be an object")
        try:
            product = _text(it, "product", required=True)
            qty = it.get("qty", 1)
            if not isinstance(qty, int) or isinstance(qty, bool) or not 0 < qty < 10**6:
                raise Invalid(f"qty must be a positive integer, got {qty!r}")
            price = _money(it, "price", currency) if it.get("price") is not None and currency else 0
            out.append(Item(product=product or "", qty=qty, unit_price=price, name=_text(it, "name") or "",
                            category=_text(it, "category") or "", brand=_text(it, "brand") or ""))
        except Invalid as exc:
            raise Invalid(f"items[{i}].{exc}") from None
    return tuple(out)


def to_event(d: Any, store: Store) -> Event:
    if not isinstance(d, dict):
        raise Invalid("must be an object")
    etype = d.get("type")
    if etype not in TYPES:
        raise Invalid(f"type {etype!r} is not one of {', '.join(TYPES)}")
    kind = TYPES[etype]
    client_id = _text(d, "id", required=True)
    currency = None
    if d.get("currency") is not None:
        try:
            currency = normalise_currency(d["currency"])
        except UnknownCurrency as exc:
            raise Invalid(f"currency: {exc}") from None
    amount = 0
    if kind in (Kind.ORDER_PAID, Kind.ORDER_REFUNDED) or d.get("amount") is not None:
        if currency is None:
            raise Invalid("currency is missing (ISO 4217, e.g. \"EUR\")")
        amount = _money(d, "amount", currency)
        if amount < 0:
            raise Invalid("amount must not be negative")
    visitor, customer = _text(d, "visitor"), _text(d, "customer")
    if visitor is None and customer is None:
        raise Invalid("give visitor (anonymous id) or customer, or both")
    campaign = _text(d, "campaign") or _text(d, "automation")
    source = Source.WEB
    if kind is Kind.EMAIL_ENGAGED:
        if campaign is None:
            raise Invalid("campaign (or automation) is missing: e-mail engagement names what was opened or clicked")
        source = Source.AUTOMATION if d.get("automation") is not None else Source.EMAIL_CAMPAIGN
    order = _text(d, "order")
    if kind in (Kind.ORDER_PAID, Kind.ORDER_REFUNDED) and order is None:
        raise Invalid("order is missing")
    props = d.get("properties", {})
    if not isinstance(props, dict) or len(orjson.dumps(props)) > 8192:
        raise Invalid("properties must be an object of at most 8 KiB")
    name = {"email_open": "open", "email_click": "click"}.get(etype) or _text(d, "name") or _text(d, "url") or ""
    return Event(
        id=f"events:{store.id}:{client_id}", kind=kind, org=store.org, store=store.id, time=_time(d),
        amount=amount, currency=currency or "", customer=customer, order=order,
        refund=_text(d, "refund") or (client_id if kind is Kind.ORDER_REFUNDED else None),
        items=_items(d, currency), source=source, raw_id=client_id, cart=_text(d, "cart"), visitor=visitor,
        campaign=campaign, name=name, attrs=props,
    )


def parse_batch(body: bytes, store: Store) -> Outcome:
    doc = parse_json(body)
    if isinstance(doc, dict) and "events" in doc:
        doc = doc["events"]
    batch = doc if isinstance(doc, list) else [doc]
    if not batch:
        raise BadPayload("no events in the body")
    if len(batch) > MAX_BATCH:
        raise BadPayload(f"a batch of {len(batch)} events is over the limit of {MAX_BATCH}: split it")
    events, problems = [], []
    for i, d in enumerate(batch):
        try:
            events.append(to_event(d, store))
        except Invalid as exc:
            problems.append(f"events[{i}]: {exc}")
    if problems:
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise BadPayload("nothing was recorded; " + "; ".join(problems[:20]) + more)
    return Outcome("events", events)
