"""The ranges every canonical event is within, whatever path it came by (webhooks of each vendor,
the events API, sync, replay). One rule, checked in two places:

- at ingest, where a payload outside it gets a 400 naming the field (the adapters say it in the
  vendor's terms; `problem` says it in the canonical event's terms for every path alike);
- in the dataflow, before an event is folded: one that reached the log anyway (appended before this
  rule existed, or by a path that forgot it) is quarantined instead of folded (flows/quarantine.py).

Why these bounds: every sum the figures keep (a store-day's revenue, a customer's spend, a product's
revenue) must fit the 64-bit integers that SQLite, Redis and orjson store. With each amount at most
MAX_AMOUNT, a sum reaches 2**63 only after 9.2 million maximal amounts in one figure. Amounts are never
negative: a refund is an `order.refunded` event whose amount is what was refunded, never a negative order.
docs/operations.md ("Limits") lists them.
"""

from __future__ import annotations

from core.events import Event
from core.money import EXPONENTS

MAX_AMOUNT = 10**12  # minor units: 10,000,000,000.00 EUR, 1,000,000,000,000 JPY, 1,000,000,000.000 KWD
MAX_QTY = 1_000_000  # units of one line item
MAX_ITEMS = 10_000  # line items of one event: real orders have over 1,000 (UCI Online Retail 573585: 1,114)
MAX_TIME_MS = 95_617_584_000_000  # 5000-01-01T00:00:00Z: a later time is a unit mistake, not a date


def amount_problem(minor: int, what: str = "amount") -> str | None:
    """Why a minor-unit amount is out of range, or None when it is within [0, MAX_AMOUNT]."""
    if minor < 0:
        return f"{what} must not be negative (a refund is a refund event), got {minor}"
    if minor > MAX_AMOUNT:
        return f"{what} is over the largest amount storepulse takes ({MAX_AMOUNT} minor units), got {minor}"
    return None


def problem(e: Event) -> str | None:
    """Why an event is outside the ranges above, or None. Cheap: a few comparisons per field."""
    if type(e.time) is not int or not 0 <= e.time < MAX_TIME_MS:
        return f"time must be Unix milliseconds from 1970 to before the year 5000, got {e.time!r}"
    if type(e.amount) is not int:
        return f"amount must be an integer of minor units, got {e.amount!r}"
    if not 0 <= e.amount <= MAX_AMOUNT:
        return amount_problem(e.amount)
    if e.currency and e.currency not in EXPONENTS:
        return f"currency {e.currency!r} is not an ISO 4217 code storepulse knows"
    if e.presentment_amount is not None:
        if type(e.presentment_amount) is not int:
            return f"presentment_amount must be an integer of minor units, got {e.presentment_amount!r}"
        if not 0 <= e.presentment_amount <= MAX_AMOUNT:
            return amount_problem(e.presentment_amount, "presentment_amount")
    if len(e.items) > MAX_ITEMS:
        return f"at most {MAX_ITEMS} line items, got {len(e.items)}"
    for i, item in enumerate(e.items):
        qty, price = item.qty, item.unit_price
        if type(qty) is not int or not 0 <= qty <= MAX_QTY:
            return f"items[{i}].qty must be an integer from 0 to {MAX_QTY}, got {qty!r}"
        if type(price) is not int or not 0 <= price <= MAX_AMOUNT:
            return f"items[{i}].unit_price must be an integer from 0 to {MAX_AMOUNT} minor units, got {price!r}"
        if qty * price > MAX_AMOUNT:
            return f"items[{i}]: qty x unit_price is over the largest amount ({MAX_AMOUNT} minor units)"
    return None


# --- nesting of attrs (an events API event's properties, the vendor fields an adapter keeps) ---------
# Not part of `problem`: an event in the log has been serialised already, so only ingest needs it.

MAX_DEPTH = 32  # levels of objects and lists; orjson writes at most 254 (a deeper event fails to serialise)


def depth_problem(value: object, what: str = "attrs") -> str | None:
    """Why `value` nests objects and lists more than MAX_DEPTH levels deep (the value itself is level 1),
    or None. One pass over its containers, level by level, stopping at the first level too deep."""
    level: list[object] = [value]
    depth = 0
    while True:
        children: list[object] = []
        for v in level:
            if isinstance(v, dict):
                children += v.values()
            elif isinstance(v, list):
                children += v
            else:
                continue
            if depth == MAX_DEPTH:  # a container at level MAX_DEPTH + 1
                return f"{what} nests objects and lists more than {MAX_DEPTH} levels deep"
        if not children:
            return None
        level = children
        depth += 1
