"""The facts the segment rules read, folded from events and cart records (docs/segments.md, "Facts"):
the definitions of flows/profiles.py for a customer's person, and each cart's latest record. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from core.events import Event, Kind
from core.rules import CustomerFacts, Entry, attributes_of
from flows.profiles import CONTACT, NOT_ACTIVITY

OPEN = "open"
ABANDONED = ("abandoned", "recovered")


@dataclass(frozen=True, slots=True)
class CartState:
    """What the latest record of a cart says (core/records.py Cart)."""

    status: str
    first: int
    last: int
    due: int | None
    value: int
    currency: str


def cart_facts(facts: CustomerFacts, carts: Mapping[str, CartState], created_floor: int | None,
               abandoned_floor: int | None) -> CustomerFacts:
    """The facts with the cart fields these carts give: `open_carts` (status open), `last_cart_created`
    (latest first activity), `last_cart_abandoned` (latest due of a cart counted abandoned); the floors
    are those maxima over the carts no longer kept."""
    opened = tuple(sorted((Entry(x.last, x.currency, x.value) for x in carts.values() if x.status == OPEN),
                          key=lambda e: (e.time, e.amount)))
    created = max([x.first for x in carts.values()] + ([created_floor] if created_floor is not None else []),
                  default=None)
    abandoned = max([x.due for x in carts.values() if x.status in ABANDONED and x.due is not None]
                    + ([abandoned_floor] if abandoned_floor is not None else []), default=None)
    if (opened, created, abandoned) == (facts.open_carts, facts.last_cart_created, facts.last_cart_abandoned):
        return facts
    return replace(facts, open_carts=opened if opened != facts.open_carts else facts.open_carts,
                   last_cart_created=created, last_cart_abandoned=abandoned)


def person_facts(old: CustomerFacts | None, e: Event) -> CustomerFacts:
    """First seen, registration, activity, stores and custom fields: every event naming the customer
    (the definitions of flows/profiles.py)."""
    if old is None:
        old = CustomerFacts(first_seen=e.time)
    first_seen = min(old.first_seen, e.time)
    last_active = old.last_active
    if e.kind not in NOT_ACTIVITY:
        last_active = e.time if last_active is None else max(last_active, e.time)
    stores = old.stores if not e.store or e.store in old.stores else tuple(sorted((*old.stores, e.store)))
    registered, attributes = old.registered, old.attributes
    if e.kind in CONTACT:
        at = registered_at(e)
        if at is not None and (registered is None or at < registered):
            registered = at
        if e.attrs:
            attributes = attributes_of({**dict(old.attributes), **e.attrs})
    if (first_seen, last_active, stores, registered, attributes) == (
            old.first_seen, old.last_active, old.stores, old.registered, old.attributes):
        return old
    return replace(old, first_seen=first_seen, last_active=last_active, stores=stores, registered=registered,
                   attributes=attributes)


def registered_at(e: Event) -> int | None:
    """As flows/profiles.py: the event's time for customer.created and identified, else the vendor's
    creation time (attrs created_at in ms, Stripe's created in s)."""
    found = [e.time] if e.kind in (Kind.CUSTOMER_CREATED, Kind.IDENTIFIED) else []
    if e.kind is not Kind.IDENTIFIED:
        for name, scale in (("created_at", 1), ("created", 1000)):
            v = e.attrs.get(name)
            if isinstance(v, int) and not isinstance(v, bool) and 0 < v * scale < 10**14:
                found.append(v * scale)
    return min(found, default=None)


def insert(entries: tuple[Entry, ...], entry: Entry) -> tuple[Entry, ...]:
    """The entries with one more, kept in time order."""
    if not entries or entries[-1].time <= entry.time:
        return (*entries, entry)
    return tuple(sorted((*entries, entry), key=lambda x: x.time))


def distinct(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({n for n in names if n}))
