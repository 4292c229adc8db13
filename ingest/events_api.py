"""The site events API: `POST /v1/events`, one event or a batch of up to 1,000, per-store API key.

Feeds what webhooks cannot: visits, product views, carts, e-mail engagement, identity. A batch is
all or nothing: one invalid event refuses the batch with every problem listed, so a client never
has to guess which half landed. Ids are the client's own, so a retried batch is a duplicate.

Two readers of one event, one meaning: `_checked_event` is the specification, every check with its
message; `_fast_event` only recognises well-formed events of the common shapes and builds them
without the dataclass __init__, and gives up (None) on anything else, so every refusal and every odd
shape is decided, and worded, by the checked reader. tests/test_events_api.py holds them equal.
"""

from __future__ import annotations

import hmac
from dataclasses import MISSING
from dataclasses import fields as dataclass_fields
from typing import Any

import orjson

from core.clock import ms_from_iso
from core.config import Config, Store
from core.events import Event, Item, Kind, Source
from core.limits import MAX_AMOUNT, MAX_TIME_MS, amount_problem, depth_problem
from core.money import EXPONENTS, UnknownCurrency, normalise_currency, to_minor
from ingest.adapter import Outcome
from ingest.errors import BadPayload, BadSignature
from ingest.fields import parse_json

MAX_BATCH = 1000
MAX_PROPERTIES = 8192  # bytes of an event's properties, as JSON

TYPES: dict[str, Kind] = {
    "page_view": Kind.PAGE_VIEWED,
    "product_view": Kind.PRODUCT_VIEWED,
    "add_to_cart": Kind.CART_ITEM_ADDED,
    "remove_from_cart": Kind.CART_ITEM_REMOVED,
    "cart_updated": Kind.CART_UPDATED,
    "checkout_started": Kind.CHECKOUT_STARTED,
    "email_open": Kind.EMAIL_ENGAGED,
    "email_click": Kind.EMAIL_ENGAGED,
    "email_sent": Kind.EMAIL_SENT,
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


_TIME_FORMS = "give ISO 8601 with an offset or Unix milliseconds"
_TIME_RANGE = "give an instant after 1970-01-01 and before the year 5000"


def _time(d: dict[str, Any]) -> int:
    v = d.get("time")
    if isinstance(v, int) and not isinstance(v, bool):
        ms = v
    elif isinstance(v, str):
        try:
            ms = ms_from_iso(v)
        except ValueError as exc:
            raise Invalid(f"time {exc}") from None
    elif v is None:
        raise Invalid(f"time is missing: {_TIME_FORMS}")
    elif isinstance(v, float) and v.is_integer():  # orjson reads an integer beyond 64 bits as a float
        raise Invalid(f"time {v!r} is out of range: {_TIME_RANGE}")
    else:
        raise Invalid(f"time must be ISO 8601 with an offset or Unix milliseconds (an integer), got {v!r}")
    if not 0 < ms < MAX_TIME_MS:
        raise Invalid(f"time {v!r} is out of range: {_TIME_RANGE}")
    return ms


def _money(d: dict[str, Any], key: str, currency: str) -> int:
    """d[key] in minor units: a plain decimal string with at most the currency's decimals ("12.34";
    "1980" JPY) or an integer of major units, within core.limits' range."""
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, str | int):
        raise Invalid(f"{key} must be a decimal string such as \"12.34\" (or an integer), got {v!r}")
    try:
        minor = to_minor(v, currency)
    except ValueError as exc:
        raise Invalid(f"{key}: {exc}") from None
    if (why := amount_problem(minor, key)) is not None:
        raise Invalid(why)
    return minor


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
            if qty * price > MAX_AMOUNT:
                raise Invalid(f"qty x price is over the largest amount storepulse takes ({MAX_AMOUNT} minor units)")
            out.append(Item(product=product or "", qty=qty, unit_price=price, name=_text(it, "name") or "",
                            category=_text(it, "category") or "", brand=_text(it, "brand") or ""))
        except Invalid as exc:
            raise Invalid(f"items[{i}].{exc}") from None
    return tuple(out)


def _properties(d: dict[str, Any]) -> dict[str, Any]:
    props = d.get("properties", {})
    if not isinstance(props, dict):
        raise Invalid(f"properties must be an object of at most {MAX_PROPERTIES // 1024} KiB")
    # Depth first: orjson cannot even write an object nested 254 levels deep to measure it.
    if (why := depth_problem(props, "properties")) is not None:
        raise Invalid(why)
    if len(orjson.dumps(props)) > MAX_PROPERTIES:
        raise Invalid(f"properties must be an object of at most {MAX_PROPERTIES // 1024} KiB")
    return props


def _checked_event(d: Any, store: Store) -> Event:
    if not isinstance(d, dict):
        raise Invalid("must be an object")
    etype = d.get("type")
    if not isinstance(etype, str) or etype not in TYPES:  # a list or object is unhashable
        raise Invalid(f"type {etype!r} is not one of {', '.join(TYPES)}")
    kind = TYPES[etype]
    client_id = _text(d, "id", required=True)
    assert client_id is not None  # required=True raises instead
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
    visitor, customer = _text(d, "visitor"), _text(d, "customer")
    if visitor is None and customer is None:
        raise Invalid("give visitor (anonymous id) or customer, or both")
    campaign = _text(d, "campaign") or _text(d, "automation")
    source = Source.WEB
    if kind in (Kind.EMAIL_ENGAGED, Kind.EMAIL_SENT):
        if campaign is None:
            raise Invalid("campaign (or automation) is missing: e-mail engagement names what was opened or clicked")
        source = Source.AUTOMATION if d.get("automation") is not None else Source.EMAIL_CAMPAIGN
    order = _text(d, "order")
    if kind in (Kind.ORDER_PAID, Kind.ORDER_REFUNDED) and order is None:
        raise Invalid("order is missing")
    props = _properties(d)
    name = _EMAIL_NAMES.get(etype) or _text(d, "name") or _text(d, "url") or ""
    return Event(
        id=f"events:{store.id}:{client_id}", kind=kind, org=store.org, store=store.id, time=_time(d),
        amount=amount, currency=currency or "", customer=customer, order=order,
        refund=_text(d, "refund") or (client_id if kind is Kind.ORDER_REFUNDED else None),
        items=_items(d, currency), source=source, raw_id=client_id, cart=_text(d, "cart"), visitor=visitor,
        campaign=campaign, name=name, attrs=props,
    )


def to_event(d: Any, store: Store, id_prefix: str | None = None, template: dict[str, Any] | None = None) -> Event:
    """One event of a batch, or Invalid saying what is wrong with it: the fast reader when it can,
    the checked one (which words every refusal) otherwise. A batch passes the store's id prefix and
    template once for all its events."""
    if d.__class__ is dict:
        fast = _fast_event(d, id_prefix or f"events:{store.id}:", template or _template(store))
        if fast is not None:
            return fast
    return _checked_event(d, store)


# --- the fast reader ------------------------------------------------------------------------------
# Same meaning as _checked_event for every event it accepts (exact type checks where that one uses
# isinstance: bool is not int, and a subclass only takes the checked road). An Event is built as
# core.events._restore does, without the frozen dataclass __init__: a copy of a per-batch template
# (every field at its default, in declaration order, so to_json writes the same bytes) with the
# event's own values set: 0.76 µs instead of 2.75 µs for Event(...) with a page view's fields.

_new = object.__new__
_set = object.__setattr__
_GIVE_UP = object()
_EMAIL_NAMES = {"email_open": "open", "email_click": "click", "email_sent": "sent"}
_PAID, _REFUNDED, _EMAIL, _SENT = Kind.ORDER_PAID, Kind.ORDER_REFUNDED, Kind.EMAIL_ENGAGED, Kind.EMAIL_SENT
# Types whose event is complete with no field beyond type, id, time, visitor/customer, name/url and
# properties; the others need currency, amount, order or campaign.
_PLAIN_TYPES = frozenset(t for t, k in TYPES.items() if k not in (_PAID, _REFUNDED, _EMAIL, _SENT))


_DEFAULTS: dict[str, Any] = {f.name: None if f.default is MISSING else f.default for f in dataclass_fields(Event)}


def _template(store: Store) -> dict[str, Any]:
    fields = {**_DEFAULTS, "org": store.org, "store": store.id}
    return fields


def _fast_text(v: Any) -> Any:
    """A present (not null) text field as _text reads it, or _GIVE_UP."""
    if v.__class__ is str:
        return v if 0 < len(v) <= 512 else _GIVE_UP
    return str(v) if v.__class__ is int else _GIVE_UP


def _fast_amount(v: Any, currency: str) -> Any:
    """_money(v, currency) for a str or int, or _GIVE_UP. Plain amounts ("12.5", "7", 12) with no
    more decimals than the currency has are exact in integers; to_minor reads the rest."""
    digits = EXPONENTS[currency]
    if v.__class__ is str:
        whole, dot, frac = v.partition(".")
        if (0 < len(whole) <= 15 and whole.isascii() and whole.isdigit() and len(frac) <= digits
                and (not dot or (frac.isascii() and frac.isdigit()))):
            minor = int(whole + frac) * 10 ** (digits - len(frac))
            return minor if minor <= MAX_AMOUNT else _GIVE_UP
    elif v.__class__ is int:
        if 0 <= v <= MAX_AMOUNT:
            minor = v * 10**digits
            return minor if minor <= MAX_AMOUNT else _GIVE_UP
        return _GIVE_UP
    else:
        return _GIVE_UP
    try:
        minor = to_minor(v, currency)
    except Exception:  # whatever it is, the checked reader words it
        return _GIVE_UP
    return minor if 0 <= minor <= MAX_AMOUNT else _GIVE_UP


def _fast_item(product: Any, qty: Any, price: Any, name: Any, category: Any, brand: Any,
               currency: str | None) -> Item | None:
    if product is None or (product := _fast_text(product)) is _GIVE_UP:
        return None
    if qty.__class__ is not int or not 0 < qty < 1_000_000:
        return None
    if price is None or not currency:
        price = 0
    elif (price := _fast_amount(price, currency)) is _GIVE_UP or qty * price > MAX_AMOUNT:
        return None
    if name is None:
        name = ""
    elif (name := _fast_text(name)) is _GIVE_UP:
        return None
    if category is None:
        category = ""
    elif (category := _fast_text(category)) is _GIVE_UP:
        return None
    if brand is None:
        brand = ""
    elif (brand := _fast_text(brand)) is _GIVE_UP:
        return None
    item = _new(Item)
    _set(item, "__dict__", {"product": product, "qty": qty, "unit_price": price, "name": name,
                            "category": category, "brand": brand})
    return item


def _fast_items(raw: Any, currency: str | None) -> tuple[Item, ...] | None:
    if raw.__class__ is not list or len(raw) > 500:
        return None
    out = []
    for it in raw:
        if it.__class__ is not dict:
            return None
        get = it.get
        item = _fast_item(get("product"), get("qty", 1), get("price"), get("name"), get("category"), get("brand"),
                          currency)
        if item is None:
            return None
        out.append(item)
    return tuple(out)


# C901: flat on purpose, the hot path of /v1/events (one pass, no calls: 1.4 us/event, bench/RESULTS.md);
# tests/test_events_api.py holds it equal to _checked_event, the readable specification.
def _fast_event(d: dict[str, Any], id_prefix: str, template: dict[str, Any]) -> Event | None:  # noqa: C901
    """The event when it is valid and of a common shape; None leaves it to _checked_event."""
    get = d.get
    etype: Any = get("type")
    kind = TYPES.get(etype) if etype.__class__ is str else None
    if kind is None:
        return None
    client_id = get("id")
    if client_id.__class__ is not str or not 0 < len(client_id) <= 512:
        if client_id.__class__ is not int:
            return None
        client_id = str(client_id)
    time = get("time")
    if time.__class__ is str:
        try:
            time = ms_from_iso(time)
        except Exception:
            return None
    elif time.__class__ is not int:
        return None
    if not 0 < time < MAX_TIME_MS:
        return None
    f = template.copy()
    f["id"], f["kind"], f["time"], f["raw_id"] = id_prefix + client_id, kind, time, client_id
    unread = len(d) - 3  # keys not looked at yet: none left means every other field is absent
    visitor, customer = get("visitor"), get("customer")
    if visitor is not None:
        if visitor.__class__ is not str or not 0 < len(visitor) <= 512:
            if (visitor := _fast_text(visitor)) is _GIVE_UP:
                return None
        f["visitor"] = visitor
        unread -= 1
    if customer is not None:
        if (customer := _fast_text(customer)) is _GIVE_UP:
            return None
        f["customer"] = customer
        unread -= 1
    elif visitor is None:
        return None
    name = _EMAIL_NAMES.get(etype)
    if name is None:
        name = get("name")
        if name is None:
            name = get("url")
        if name is not None:
            if name.__class__ is not str or not 0 < len(name) <= 512:
                if (name := _fast_text(name)) is _GIVE_UP:
                    return None
            unread -= 1
            f["name"] = name
        else:
            f["name"] = ""
    else:
        f["name"] = name
    props = get("properties", _GIVE_UP)
    if props is _GIVE_UP:
        f["attrs"] = {}
    elif props.__class__ is not dict or (props and (depth_problem(props) is not None
                                                    or len(orjson.dumps(props)) > MAX_PROPERTIES)):
        return None
    else:
        f["attrs"] = props
        unread -= 1
    if unread or etype not in _PLAIN_TYPES:
        currency = get("currency")
        if currency is not None:
            if currency.__class__ is not str or (currency := currency.upper()) not in EXPONENTS:
                return None
            f["currency"] = currency
        if kind is _PAID or kind is _REFUNDED or get("amount") is not None:
            if currency is None or (amount := _fast_amount(get("amount"), currency)) is _GIVE_UP:
                return None
            f["amount"] = amount
        campaign = get("campaign")
        if campaign is None:
            campaign = get("automation")
        if campaign is not None:
            if (campaign := _fast_text(campaign)) is _GIVE_UP:
                return None
            f["campaign"] = campaign
        if kind is _EMAIL or kind is _SENT:
            if campaign is None:
                return None
            f["source"] = Source.AUTOMATION if get("automation") is not None else Source.EMAIL_CAMPAIGN
        for key in ("order", "refund", "cart"):  # the template holds None for each
            if (value := get(key)) is not None:
                if (value := _fast_text(value)) is _GIVE_UP:
                    return None
                f[key] = value
        if f["order"] is None and (kind is _PAID or kind is _REFUNDED):
            return None
        if f["refund"] is None and kind is _REFUNDED:
            f["refund"] = client_id
        raw_items = get("items")
        if raw_items is not None:
            if (items := _fast_items(raw_items, currency)) is None:
                return None
            f["items"] = items
        elif (product := get("product")) is not None:  # one product named on the event itself
            item = _fast_item(product, get("qty", 1), get("price"), get("product_name"), get("category"),
                              get("brand"), currency)
            if item is None:
                return None
            f["items"] = (item,)
    event = _new(Event)
    _set(event, "__dict__", f)
    return event


def parse_batch(body: bytes, store: Store) -> Outcome:
    doc = parse_json(body)
    if isinstance(doc, dict) and "events" in doc:
        doc = doc["events"]
    batch = doc if isinstance(doc, list) else [doc]
    if not batch:
        raise BadPayload("no events in the body")
    if len(batch) > MAX_BATCH:
        raise BadPayload(f"a batch of {len(batch)} events is over the limit of {MAX_BATCH}: split it")
    id_prefix, template = f"events:{store.id}:", _template(store)
    events: list[Event] = []
    problems: list[str] = []
    for i, d in enumerate(batch):
        try:
            events.append(to_event(d, store, id_prefix, template))
        except Invalid as exc:
            problems.append(f"events[{i}]: {exc}")
    if problems:
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise BadPayload("nothing was recorded; " + "; ".join(problems[:20]) + more)
    return Outcome("events", events)
