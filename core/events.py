"""The canonical event: one versioned, typed schema for everything a shop tells us.

Vendor adapters in ingest/ turn webhooks into these; the log stores them as orjson bytes; the
dataflow reads them back. Field meanings are in DESIGN.md ("Canonical event").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

SCHEMA_VERSION = 1


class Kind(StrEnum):
    ORDER_PLACED = "order.placed"  # created, not (yet) paid
    ORDER_PAID = "order.paid"
    ORDER_REFUNDED = "order.refunded"  # `refund` names it, `amount` is its total so far
    ORDER_CANCELLED = "order.cancelled"  # cancelled, failed or deleted before/after payment
    ORDER_RESTORED = "order.restored"  # a cancelled/deleted order brought back (its state follows)
    CART_UPDATED = "cart.updated"  # a cart or checkout with its current items and value
    CART_ITEM_ADDED = "cart.item_added"
    CART_ITEM_REMOVED = "cart.item_removed"
    CHECKOUT_STARTED = "checkout.started"
    CHECKOUT_COMPLETED = "checkout.completed"
    CHECKOUT_EXPIRED = "checkout.expired"  # the vendor itself says the checkout was abandoned
    CUSTOMER_CREATED = "customer.created"
    CUSTOMER_UPDATED = "customer.updated"
    PRODUCT_UPDATED = "product.updated"
    PAGE_VIEWED = "page.viewed"
    PRODUCT_VIEWED = "product.viewed"
    EMAIL_ENGAGED = "email.engaged"  # `name` is "open" or "click", `campaign` the campaign/automation
    EMAIL_SENT = "email.sent"  # an e-mail of `campaign` sent to the person: counted for open rates, nothing else
    IDENTIFIED = "identified"  # anonymous `visitor` is `customer` from now on
    CUSTOM = "custom"  # `name` is the shop's own event name
    # Control events (core/definitions.py): `name` is "<type>/<id>", attrs the definition's body
    DEFINITION_PUT = "definition.put"
    DEFINITION_DELETED = "definition.deleted"


class Source(StrEnum):
    WEB = "web"
    EMAIL_CAMPAIGN = "email_campaign"
    AUTOMATION = "automation"


# No slots on Item and Event: orjson serialises plain dataclasses on its fast path (7x faster per
# item), and these objects are transient.
@dataclass(frozen=True)
class Item:
    product: str
    qty: int
    unit_price: int  # minor units of the event's currency
    name: str = ""
    category: str = ""
    brand: str = ""


@dataclass(frozen=True)
class Event:
    """One fact from a shop.

    `id` is deterministic from the source (a redelivery carries the same id), so the log can drop
    duplicates. `order` links the events of one order (paid, refunded) whatever vendor object they
    came from. For ORDER_REFUNDED, `refund` names the refund and `amount` is the total refunded so
    far under that name: a later event for the same refund replaces, never adds to, an earlier one.
    """

    id: str
    kind: Kind
    org: str
    store: str
    time: int  # event time, milliseconds since the Unix epoch, UTC
    amount: int = 0  # integer minor units of `currency`
    currency: str = ""
    customer: str | None = None
    order: str | None = None
    refund: str | None = None
    items: tuple[Item, ...] = ()
    source: Source = Source.WEB
    raw_id: str = ""  # the vendor's own id of the object
    cart: str | None = None  # cart, checkout or session id
    visitor: str | None = None  # anonymous visitor id (site events)
    campaign: str | None = None  # e-mail campaign or automation id
    name: str = ""  # custom event name; "open"/"click" for e-mail; page URL for page views
    presentment_amount: int | None = None  # what the buyer saw, when it differs from the shop currency
    presentment_currency: str | None = None
    attrs: dict[str, Any] = field(default_factory=dict)  # customer fields, product fields, custom properties
    v: int = field(default=SCHEMA_VERSION)

    def to_json(self) -> bytes:
        return orjson.dumps(self)


# What an order, cart or checkout event says of its buyer, as typed at the checkout: attrs written by
# buyer_attrs (the vendor adapters; the events API's properties), read by buyer_of (order and cart
# records) and flows/profiles.py (a profile's e-mail and name when no account event gives them).
BUYER_EMAIL, BUYER_NAME = "email", "customer_name"


def buyer_attrs(email: Any, name: Any) -> dict[str, str]:
    """The buyer's e-mail and name as attrs: text only, trimmed (a name's inner spaces made single);
    empty ones left out."""
    out = {}
    if isinstance(email, str) and email.strip():
        out[BUYER_EMAIL] = email.strip()
    if isinstance(name, str) and name.strip():
        out[BUYER_NAME] = " ".join(name.split())
    return out


def buyer_of(e: Event) -> str:
    """Who an order's, cart's or checkout's event says the buyer is: the name typed at the checkout, else
    the e-mail, trimmed and cut to 128 characters; "" when it says neither."""
    for key in (BUYER_NAME, BUYER_EMAIL):
        value = e.attrs.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()[:128]
    return ""


def full_name(first: Any, last: Any) -> str:
    """First and last name joined by a space, either left out when missing or not text."""
    return " ".join(n.strip() for n in (first, last) if isinstance(n, str) and n.strip())


class SchemaError(ValueError):
    pass


_EVENT_FIELDS = frozenset(Event.__dataclass_fields__)
_ITEM_FIELDS = frozenset(Item.__dataclass_fields__)


def _restore(cls: type, fields: frozenset[str], d: dict[str, Any]) -> Any:
    # The log holds only what Event.to_json wrote: rebuilding without __init__ (and frozen's
    # __setattr__) is several times faster, which matters at 20 items an order.
    if d.keys() != fields:
        raise SchemaError(f"{cls.__name__} fields {sorted(d.keys() ^ fields)} do not match the schema")
    obj: Any = object.__new__(cls)
    obj.__dict__.update(d)
    return obj


def event_from_json(data: bytes | str) -> Event:
    """Inverse of Event.to_json; refuses events of a schema version it does not know."""
    d = orjson.loads(data)
    if d.get("v") != SCHEMA_VERSION:
        raise SchemaError(f"event schema version {d.get('v')!r} is not supported (expected {SCHEMA_VERSION})")
    d["kind"] = Kind(d["kind"])
    d["source"] = Source(d["source"])
    d["items"] = tuple([_restore(Item, _ITEM_FIELDS, i) for i in d["items"]])
    event: Event = _restore(Event, _EVENT_FIELDS, d)
    return event
