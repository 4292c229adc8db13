"""One meaning for "seen": the log drops a duplicate (same org, id) only within DEDUPE_WINDOW_S of the
first append (state/log.py); after it, on Redis, the same event is appended again. Every book of the
dataflow (revenue ledger and quota, carts, journey, attribution, profiles: flows/organisation.py)
must fold that second copy without changing any figure or record.

The books are pure, so time is an argument: one shop's history (every kind each book counts, an
order paid 40 days after it was placed and refunded 20 days after that, a credit note, a cancel,
a guest order), then the shop goes on (busy, quiet, or replayed by event time alone), and at some
point every event appended more than the window earlier arrives again. Two runs, one with the
copies and one without, must hold the same read model (every record and bucket, by value) at every
step, and the step that folds the copies must write nothing new. All times are fixed: no test here
depends on the wall-clock date.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from core.changes import Bucket, Record
from core.config import Org
from core.events import Event, Item, Kind
from core.records import RecordKind
from flows.organisation import Organisation
from state.log import DEDUPE_WINDOW_S

pytestmark = pytest.mark.unit  # pure domain tests, in-process: `pytest -m unit` runs them alone

DAY = 86_400_000
HOUR = 3_600_000
MIN = 60_000
WINDOW = DEDUPE_WINDOW_S * 1000
T0 = 1_700_000_000_000  # 2023-11-14 22:13 UTC: the first event of the shop
ORG = Org(id="o", timezone="Europe/Berlin", currency="EUR", token_sha256=hashlib.sha256(b"t" * 20).digest(), stores={}, plan_limit=3)


def ev(id_: str, kind: Kind, t: int, store: str = "s", currency: str = "EUR", **kw: Any) -> Event:
    return Event(id=id_, kind=kind, org="o", store=store, time=t, currency=currency, **kw)


MUG, TEA = Item("mug", 1, 1_500, "Mug", "kitchen", "acme"), Item("tea", 2, 400, "Tea", "food", "leaf")


def history(t: int) -> list[tuple[int, list[Event]]]:
    """(offset from the first event, events appended then): a day of a shop's life, an invoice paid
    40 days after its order and refunded 20 days after that."""
    day0 = [
        ev("cc1", Kind.CUSTOMER_CREATED, t, customer="c1", attrs={"email": "a@x.eu", "name": "Ann", "created_at": t - DAY}),
        ev("pv1", Kind.PAGE_VIEWED, t + MIN, visitor="v1", name="/"),
        ev("pv2", Kind.PRODUCT_VIEWED, t + 2 * MIN, visitor="v2", name="/mug"),
        ev("id1", Kind.IDENTIFIED, t + 3 * MIN, visitor="v1", customer="c1"),
        ev("em1", Kind.EMAIL_ENGAGED, t + 4 * MIN, customer="c1", campaign="spring", name="click"),
        ev("em2", Kind.EMAIL_ENGAGED, t + 5 * MIN, visitor="v2", campaign="spring", name="open"),
        ev("cu1", Kind.CART_UPDATED, t + 6 * MIN, cart="k1", customer="c1", amount=1_500, items=(MUG,)),
        ev("ca1", Kind.CART_ITEM_ADDED, t + 7 * MIN, cart="k1", customer="c1", items=(TEA,)),
        ev("cr1", Kind.CART_ITEM_REMOVED, t + 8 * MIN, cart="k1", customer="c1", items=(Item("tea", 1, 400),)),
        ev("cs1", Kind.CHECKOUT_STARTED, t + 9 * MIN, cart="k1", customer="c1"),
        ev("cu2", Kind.CART_UPDATED, t + 10 * MIN, cart="k2", visitor="v2", amount=800, items=(TEA,)),
        ev("cx2", Kind.CHECKOUT_EXPIRED, t + 11 * MIN, cart="k2", visitor="v2"),
        ev("op1", Kind.ORDER_PLACED, t + 12 * MIN, order="o1", customer="c1", amount=1_900, cart="k1"),
        ev("cc1k", Kind.CHECKOUT_COMPLETED, t + 12 * MIN, cart="k1", customer="c1"),
        ev("pd1", Kind.ORDER_PAID, t + 13 * MIN, order="o1", customer="c1", amount=1_900, cart="k1", items=(MUG, TEA)),
        # a second report of the same payment under another id (Stripe's charge after its intent)
        ev("pd1b", Kind.ORDER_PAID, t + 14 * MIN, order="o1", customer="c1", amount=1_900, items=(MUG, TEA)),
        ev("pd2", Kind.ORDER_PAID, t + 20 * MIN, order="o2", visitor="v2", amount=800, items=(TEA,)),  # a guest
        ev("pd4", Kind.ORDER_PAID, t + 21 * MIN, order="o4", customer="c2", amount=3_000, items=(MUG, MUG),
           store="s2", currency="JPY"),
        ev("ca4", Kind.ORDER_CANCELLED, t + 22 * MIN, order="o2"),
        ev("rf1", Kind.ORDER_REFUNDED, t + 30 * MIN, order="o1", refund="r1", amount=500, customer="c1"),
        ev("rf1b", Kind.ORDER_REFUNDED, t + 31 * MIN, order="o1", refund="r1", amount=700, customer="c1"),
        ev("cn1", Kind.ORDER_REFUNDED, t + 32 * MIN, refund="cn1", amount=250, customer="c1"),  # a credit note
        ev("cup", Kind.CUSTOMER_UPDATED, t + 33 * MIN, customer="c1", attrs={"email": "ann@x.eu"}),
        ev("pu1", Kind.PRODUCT_UPDATED, t + 34 * MIN, attrs={"title": "Mug"}),
        ev("cst", Kind.CUSTOM, t + 35 * MIN, customer="c1", name="wishlist"),
        ev("op3", Kind.ORDER_PLACED, t + HOUR, order="o3", customer="c3", amount=90_000),  # an invoice, net 40
    ]
    return [
        (0, day0),
        (40 * DAY, [ev("pd3", Kind.ORDER_PAID, t + 40 * DAY, order="o3", customer="c3", amount=90_000, items=(MUG,))]),
        (60 * DAY, [ev("rf3", Kind.ORDER_REFUNDED, t + 60 * DAY, order="o3", refund="r3", amount=30_000, customer="c3")]),
    ]


@dataclass
class Run:
    """One organisation and the read model its outputs build (values only: versions differ between
    a run with copies and one without, by the copies' count)."""

    org: Organisation = field(default_factory=lambda: Organisation.new(ORG))
    model: dict[tuple[str, ...], object] = field(default_factory=dict)

    def write(self, out: list[Bucket | Record]) -> dict[tuple[str, ...], object]:
        changed: dict[tuple[str, ...], object] = {}
        for c in out:
            key: tuple[str, ...]
            value: object
            if isinstance(c, Bucket):
                key, value = ("bucket", c.grain, c.start, c.store, c.currency), (c.gross, c.refunds, c.orders,
                                                                                 c.paid_orders, c.items)
            elif c.kind == RecordKind.LATE:
                continue  # monitoring, not a figure: a copy too late for a book is counted as refused (docs/metrics.md)
            else:
                key, value = (c.kind, c.key, c.day), orjson.loads(c.value_json())
            if self.model.get(key) != value:
                changed[key] = value
            self.model[key] = value
        return changed


def steps(kind: str, t: int) -> Iterator[tuple[int | None, list[Event]]]:
    """(wall clock or None for a replay by event time, events appended then), over 430 days of
    appends: the history, then the shop's other traffic, which keeps W moving (busy), stops (quiet),
    or is a replay's (no wall clock)."""
    hist = dict(history(t))
    for d in range(0, 431):
        now = t + d * DAY + 2 * HOUR
        events = list(hist.get(d * DAY, []))
        if kind != "quiet" or d < 2:
            events.append(ev(f"beat{d}", Kind.PAGE_VIEWED, now - HOUR, visitor=f"w{d}", name="/"))
        yield (None if kind == "replay" else now), events


SCENARIOS = ["busy", "quiet", "replay"]


@pytest.mark.parametrize("kind", SCENARIOS)
@pytest.mark.parametrize("again_day", [31, 45, 75, 100, 367, 395, 430])
def test_every_event_appended_again_after_the_window_changes_no_figure(kind: str, again_day: int) -> None:
    """At `again_day` days of appends, every event appended more than the window earlier arrives
    again (as on Redis once its mark expired): nothing the books emit may change."""
    plain, doubled = Run(), Run()
    for r in (plain, doubled):
        r.org.arm(T0)
    appended: list[tuple[int, Event]] = []  # (append day, event)
    for d, (now, events) in enumerate(steps(kind, T0)):
        if d == again_day:
            copies = [e for at, e in appended if (d - at) * DAY > WINDOW]
            assert copies
            changed = doubled.write(doubled.org.apply_all(copies, now))
            assert changed == {}, f"{len(changed)} records/buckets changed by copies, e.g. {next(iter(changed.items()))}"
        for r in (plain, doubled):
            r.write(r.org.apply_all(events, now))
            if now is not None:
                r.write(r.org.tick(now))
        appended += [(d, e) for e in events]
        assert doubled.model == plain.model, f"day {d}"
    # the history was really folded: the figures the copies could have moved are there to move
    assert plain.model[("customer", "c1", "2023-11-13")]["orders"] == 1  # type: ignore[index]
    assert any(k[0] == "quota_alert" for k in plain.model)


@pytest.mark.parametrize("again_day", [31, 45, 75, 367, 430])
def test_a_backfill_of_old_history_appended_again_after_the_window_changes_no_figure(again_day: int) -> None:
    """The history is two years old when it is first appended (a backfill into a live shop), and
    backfilled again later: the copies are too old for most books, and the rest know them."""
    old = T0 - 2 * 365 * DAY
    plain, doubled = Run(), Run()
    for r in (plain, doubled):
        r.org.arm(T0)
    backfill = [e for _, events in history(old) for e in events]
    for d in range(0, 431):
        now = T0 + d * DAY
        events = [ev(f"live{d}", Kind.PAGE_VIEWED, now - HOUR, visitor=f"w{d}", name="/")]
        if d == 0:
            events += backfill
        if d == again_day:
            assert doubled.write(doubled.org.apply_all(backfill, now)) == {}
        for r in (plain, doubled):
            r.write(r.org.apply_all(events, now))
            r.write(r.org.tick(now))
        assert doubled.model == plain.model, f"day {d}"


def quiet_tail(t: int) -> dict[str, tuple[list[Event], list[Event]]]:
    """(the last events of a shop that then goes quiet, what comes after they are appended again)."""
    k = [ev("qk1", Kind.CART_UPDATED, t, cart="qk", customer="c1", amount=1_500, items=(MUG,)),
         # bought 2 hours after its due: recovered; the purchase is the shop's latest event
         ev("qk2", Kind.ORDER_PAID, t + 3 * HOUR, cart="qk", order="q1", customer="c1", amount=1_500, items=(MUG,))]
    paid = [ev("qa1", Kind.EMAIL_ENGAGED, t, customer="c1", campaign="autumn", name="click"),
            ev("qa2", Kind.ORDER_PAID, t + HOUR, order="q2", customer="c1", amount=700, items=(TEA,)),
            # the same payment reported again under another id, ten minutes later (Stripe's charge)
            ev("qa3", Kind.ORDER_PAID, t + HOUR + 10 * MIN, order="q2", customer="c1", amount=700, items=(TEA,))]
    return {
        "recovered cart": (k, [ev("qk3", Kind.CART_UPDATED, t + 31 * DAY, cart="qk", customer="c1", amount=800,
                                  items=(TEA,))]),
        "second report": (paid, [ev("qa4", Kind.ORDER_PAID, t + 31 * DAY, order="q3", customer="c1", amount=900)]),
    }


@pytest.mark.parametrize("tail", ["recovered cart", "second report"])
def test_a_quiet_shops_last_events_appended_again_change_no_figure(tail: str) -> None:
    """A quiet shop's watermark stops 7 days after its latest event (the wall clock moves it no
    further), so a copy of that event arriving after the window is not too late: the book that held
    it must still know it, and a cart or order it forgot must not come back from the copy."""
    last, after = quiet_tail(T0)[tail]
    plain, doubled = Run(), Run()
    for r in (plain, doubled):
        r.org.arm(T0)
        for e in last:
            r.write(r.org.apply_all([e], e.time))
        for d in range(1, 32):
            r.write(r.org.tick(last[-1].time + d * DAY))
    assert plain.org.watermark is not None and plain.org.watermark < last[-1].time + 7 * DAY
    now = last[-1].time + 31 * DAY
    assert doubled.write(doubled.org.apply_all(last, now)) == {}
    for r in (plain, doubled):
        r.write(r.org.apply_all(after, now))
        r.write(r.org.tick(now + HOUR))
    assert doubled.model == plain.model
