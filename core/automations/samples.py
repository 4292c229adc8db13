"""A sample firing of a trigger, for a message's preview (`POST .../automations/preview`, the dashboard's
automation form): the payload the dataflow's book would give the templates (flows/automations.py
`_payload`, `_cart_payload`, the segment and quota payloads), with made-up but well-formed values in the
organisation's currency. Pure: the instant is an argument.
"""

from __future__ import annotations

from typing import Any

from core.automations.definition import CART_ABANDONED, QUOTA_CROSSED, SCHEDULE, SEGMENT_ENTERED, SEGMENT_EXITED
from core.money import exponent

# (product, quantity, unit price in whole units of any currency, name): 2 x 12 + 1 x 6 = 30
ITEMS = (("mug", 2, 12, "Stoneware mug"), ("filters", 1, 6, "Filter papers x100"))
PERSON = {"customer": "sample-customer", "email": "ann@example.com", "name": "Ann Example"}
MINUTE = 60_000


def sample(trigger: str, *, store: str, currency: str, at: int, segment: str | None = None,
           digest: dict[str, str] | None = None) -> tuple[str, str, dict[str, Any]]:
    """(subject, cause, payload) of a firing of `trigger` at `at` (ms); `digest`: a digest schedule's payload."""
    unit = 10 ** exponent(currency)
    items = [[p, q, price * unit, name] for p, q, price, name in ITEMS]
    amount = sum(q * price * unit for _, q, price, _ in ITEMS)
    if trigger == CART_ABANDONED:
        cart = {"store": store, "cart": "sample-cart", "amount": amount, "currency": currency, "items": items,
                "last_activity": at - 30 * MINUTE}
        return PERSON["customer"], f"{store}:sample-cart@{at}", {**cart, **PERSON}
    if trigger in (SEGMENT_ENTERED, SEGMENT_EXITED):
        change = "entered" if trigger == SEGMENT_ENTERED else "exited"
        payload = {**PERSON, "segment": segment or "", "change": change}
        return PERSON["customer"], f"{segment}:sample-event@{at}", payload
    if trigger == QUOTA_CROSSED:
        return "", f"quota:80@{at}", {"percent": 80, "count": 400, "limit": 500}
    if trigger == SCHEDULE:
        return "", f"schedule@{at}", dict(digest or {})
    event: dict[str, Any] = {"event": "sample-event", "store": store, **PERSON}
    if trigger.startswith(("order.", "checkout.")):
        event |= {"order": "sample-order", "amount": amount, "currency": currency, "items": items}
    return PERSON["customer"], "sample-event", event
