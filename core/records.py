"""The record kinds the dataflow keeps in the read model: one enum member and one class per kind.

A record is the current state of one entity (an order, a cart, a day of carts, a customer, ...), as
an absolute value: `core.changes.Record` carries one of these values with its organisation, version,
key and day. The dataflow (flows/) builds them, the read models (state/) store them as JSON, the
gateway (ws_gateway/) reads their attributes.

Each value is a msgspec Struct: built in C, encoded to and decoded from JSON in C, typed
(bench/records.py measured it against dicts, slotted dataclasses and NamedTuples). The JSON field
names are the stored format: records written by earlier versions decode as long as a field is
never renamed (a new field needs a default). Adding a kind: a member of RecordKind and a class
here with `KIND` set to it; decoding finds it by its kind.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

import msgspec
from msgspec import Raw, Struct

__all__ = ["LATE_BOOKS", "AbandonedProduct", "Attribution", "Cart", "CartDay", "Customer", "CustomerMoney", "EmailDay", "JourneyDay", "OpenCarts",
           "Late", "LateBook", "Order", "OrderAttribution", "OrderLine", "Quarantined", "QuotaAlert", "RecordKind", "Value", "value_types"]


class RecordKind(StrEnum):
    ORDER = "order"
    QUOTA_ALERT = "quota_alert"
    CART = "cart"
    CART_DAY = "cart_day"
    OPEN_CARTS = "open_carts"
    ABANDONED_PRODUCT = "abandoned_product"
    JOURNEY_DAY = "journey_day"
    ATTRIBUTION = "attribution"
    ORDER_ATTRIBUTION = "order_attribution"
    EMAIL_DAY = "email_day"
    CUSTOMER = "customer"
    QUARANTINE = "quarantine"
    LATE = "late"
    SEGMENT = "segment"  # core/segment_records.py
    SEGMENT_MEMBER = "segment_member"
    SEGMENT_CHANGE = "segment_change"
    SEGMENT_CLOCK = "segment_clock"
    AUTOMATION = "automation"  # core/automation_records.py


# gc=False (inherited): values hold no reference cycles, so the garbage collector need not track them
# (the read side decodes a period's orders by the ten thousand). Frozen: a value is a fact of one
# version; a newer state is a new value (each class says frozen=True again for type checkers).
class Value(Struct, frozen=True, gc=False):
    """The value of a record of kind `KIND`."""

    KIND: ClassVar[RecordKind]


OrderLine = tuple[str, int, int, str]  # (product, qty, unit price, name)
_LINES = msgspec.json.Decoder(list[OrderLine])


class Order(Value, frozen=True, omit_defaults=True):  # a record without a buyer is written as before it had one
    """An order (flows/revenue.py). Key "<store>:<order>"; day: the local day it was paid, else placed."""

    KIND = RecordKind.ORDER
    store: str
    order: str
    customer: str | None
    source: str
    placed: int | None  # ms of its earliest placed-or-paid report
    paid: int | None  # ms of its earliest paid report
    currency: str
    amount: int  # minor units
    refunded: int
    cancelled: bool
    items: Raw  # JSON [[product, qty, unit price, name], ...]: the ledger keeps it serialised
    buyer: str = ""  # the buyer's name (else e-mail) as the order's report typed it at the checkout

    def lines(self) -> list[OrderLine]:
        return _LINES.decode(self.items)


class QuotaAlert(Value, frozen=True):
    """The plan quota crossed a threshold (flows/quota.py). Key "<percent>:<at>"."""

    KIND = RecordKind.QUOTA_ALERT
    percent: int
    count: int
    limit: int
    at: int  # ms: the paid time that made the count reach the threshold


class Cart(Value, frozen=True, omit_defaults=True):  # likewise without names
    """A cart (flows/carts.py). Key "<store>:<cart>"; day: the local day of its first activity."""

    KIND = RecordKind.CART
    store: str
    cart: str
    person: str | None
    status: str  # open, abandoned, recovered, purchased, empty
    currency: str
    value: int
    items: list[tuple[str, int, int]]  # (product, qty, unit price)
    first: int
    last: int
    due: int | None
    paid: int | None
    names: dict[str, str] = {}  # product -> its name, as the cart's events gave it (absent: none given)
    buyer: str = ""  # the name (else e-mail) the latest activity naming one typed at the checkout


class CartDay(Value, frozen=True):
    """The carts first active on one local day, by status (counts and values). Key "<store>|<day>|<currency>"."""

    KIND = RecordKind.CART_DAY
    store: str
    currency: str
    carts: int
    value: int
    open: int
    open_value: int
    abandoned: int
    abandoned_value: int
    recovered: int
    recovered_value: int
    purchased: int
    purchased_value: int


class OpenCarts(Value, frozen=True):
    """The carts open now. Key "<store>|<currency>", day ""."""

    KIND = RecordKind.OPEN_CARTS
    store: str
    currency: str
    carts: int
    value: int


class AbandonedProduct(Value, frozen=True):
    """Abandoned carts of one day holding a product. Key "<store>|<day>|<product>"."""

    KIND = RecordKind.ABANDONED_PRODUCT
    store: str
    product: str
    carts: int


class JourneyDay(Value, frozen=True):
    """The customer journey of one store and local day (flows/journey.py). Key "<store>|<day>"."""

    KIND = RecordKind.JOURNEY_DAY
    store: str
    visitors: int
    added_to_cart: int
    purchased: int
    purchased_again: int
    final: bool


class Attribution(Value, frozen=True):
    """Orders of one store and day attributed to an e-mail campaign (flows/attribution.py).
    Key "<store>|<day>|<campaign>|<currency>"."""

    KIND = RecordKind.ATTRIBUTION
    store: str
    campaign: str
    currency: str
    orders: int
    revenue: int


class EmailDay(Value, frozen=True):
    """Who engaged with one campaign or automation at one store on one day (flows/email_engagement.py).
    Key "<store>|<day>|<campaign>"."""

    KIND = RecordKind.EMAIL_DAY
    store: str
    campaign: str
    type: str  # "campaign" or "automation"
    opened: int  # distinct persons with an open or a click
    clicked: int  # distinct persons with a click
    last: int  # the latest engagement, ms (0: none)
    sent: int = 0  # distinct persons sent one (`email.sent`)
    last_sent: int = 0  # the latest send, ms (0: none)


class OrderAttribution(Value, frozen=True):
    """The campaign an order is attributed to (None: it lost it). Key "<store>:<order>", as its order's."""

    KIND = RecordKind.ORDER_ATTRIBUTION
    store: str
    order: str
    campaign: str | None
    touch_time: int | None
    touch: str | None  # open, click


class CustomerMoney(Struct, frozen=True, gc=False):
    """A customer's paid orders at one store in one currency."""

    store: str
    currency: str
    orders: int
    items: int
    gross: int
    refunds: int
    first_paid: int | None
    last_paid: int | None


class Customer(Value, frozen=True):
    """A customer's profile (flows/profiles.py). Key: the customer; day: the local day of registered_at."""

    KIND = RecordKind.CUSTOMER
    customer: str
    store: str  # where first seen
    registered: int | None
    first_seen: int
    registered_at: int  # registered, else first_seen
    last_active: int | None
    email: str | None
    name: str | None
    orders: int
    items: int
    first_paid: int | None
    last_paid: int | None
    money: list[CustomerMoney]  # by (store, currency)


class Quarantined(Value, frozen=True):
    """An event the dataflow could not fold (flows/quarantine.py). Key: the event id."""

    KIND = RecordKind.QUARANTINE
    id: str
    store: str
    kind: str | None  # the event's kind (None: unreadable)
    time: int | None
    event: Raw  # JSON: the event, or a string (its text or repr) when it is not one
    reason: str
    error: str


# The dataflow's books that refuse an event older than their horizon ("too late"), as named in Late.
LATE_BOOKS = ("revenue", "carts", "journey", "attribution")


class LateBook(Struct, frozen=True, gc=False):
    count: int  # events of the store this book refused as too late
    last_event_time: int  # ms, of the last one refused
    last_event_id: str


class Late(Value, frozen=True):
    """A store's events the books refused as too late (flows/organisation.py). Key: the store; day ""."""

    KIND = RecordKind.LATE
    store: str
    books: dict[str, LateBook]  # by the book's name in LATE_BOOKS; only books that refused any


def value_types() -> dict[RecordKind, type[Value]]:
    """The value class of every kind."""
    return {cls.KIND: cls for cls in Value.__subclasses__()}


from core import automation_records, segment_records  # noqa: E402,F401  # their kinds' classes, registered as subclasses of Value

_missing = set(RecordKind) - set(value_types())
assert not _missing, f"record kinds without a value class: {sorted(_missing)}"
