"""What each automation came to over a period: its deliveries by status and, for cart reminders, the
carts bought after a delivered reminder was due, and their value ("results" of GET
/api/v1/orgs/{org}/automations; definitions in docs/notifier.md, "Results"). Pure: deliveries and cart
records in, figures out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from core.changes import Record
from core.clock import local_day
from core.money import Money
from core.rates import RecordingRates, convert
from core.records import Cart
from notifier.outbox import Delivery, Status

CART_TRIGGER = "cart.abandoned"


@dataclass(slots=True)
class Tally:
    """One automation's deliveries fired in the period."""

    statuses: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in Status})
    actions: set[str] = field(default_factory=set)
    reminded: dict[str, int] = field(default_factory=dict)  # cart key -> when its first delivered reminder was due


def tally(deliveries: Iterable[Delivery], *, first: str, last: str, tz: ZoneInfo) -> dict[str, Tally]:
    """Per automation, its deliveries whose action fired on a local day in [first, last]: by status, its
    actions, and the carts ("<store>:<cart>") its delivered cart reminders were about, each with the
    earliest instant one of them was due (event time: the cart's purchase is compared in event time too,
    so a replay or a late delivery counts what live delivery would)."""
    out: dict[str, Tally] = {}
    for d in deliveries:
        a = d.action
        if not first <= local_day(a.fired_at, tz).isoformat() <= last:
            continue
        t = out.setdefault(a.automation, Tally())
        t.statuses[d.status.value] += 1
        t.actions.add(a.key)
        store, cart = a.payload.get("store"), a.payload.get("cart")
        if a.trigger == CART_TRIGGER and d.status is Status.DELIVERED and store and cart:
            key = f"{store}:{cart}"
            t.reminded[key] = min(t.reminded.get(key, a.due_at), a.due_at)
    return out


def cart_keys(tallies: Mapping[str, Tally]) -> list[str]:
    """The carts the reminders were about: what `results` needs of the read model."""
    return sorted({key for t in tallies.values() for key in t.reminded})


def results(tallies: Mapping[str, Tally], carts: Mapping[str, Record[Cart]], *, tz: ZoneInfo, currency: str,
            rates: RecordingRates, automations: Iterable[str] = ()) -> dict[str, dict[str, object]]:
    """Per automation: `fired` (its firings: one action, one delivery per channel), `deliveries` by
    status; and `reminded_carts` (carts a delivered reminder was about), `recovered_carts` (of those, the
    ones paid at or after their first delivered reminder was due) and `recovered_value` (their value, each converted at the rate of the local
    day it was paid; a missing rate leaves it out, in `rates.gaps`). `carts`: the records `cart_keys` names.
    `automations`: those to answer for even without a delivery in the period (zeros)."""
    out: dict[str, dict[str, object]] = {}
    for automation, t in sorted({**{a: Tally() for a in automations}, **tallies}.items()):
        recovered, value = 0, 0
        for key, due in t.reminded.items():
            r = carts.get(key)
            paid = None if r is None else r.value.paid
            if r is None or paid is None or paid < due:
                continue
            recovered += 1
            value += convert(rates, r.value.value, r.value.currency, currency, local_day(paid, tz).isoformat())
        out[automation] = {"fired": len(t.actions), "deliveries": t.statuses, "reminded_carts": len(t.reminded),
                           "recovered_carts": recovered, "recovered_value": Money(value, currency).to_json()}
    return out
