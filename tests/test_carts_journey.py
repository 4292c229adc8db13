"""Carts, journey and e-mail attribution (flows/carts.py, journey.py, attribution.py, shoppers.py).

Every rule has a unit test; a property test proves that redeliveries and disorder within the allowed
lateness do not move the final figures; the documented SQL (docs/carts_journey.md, run verbatim)
equals the books on generated events; and on the real REES46 file the books equal an independent
DuckDB computation over the CSV itself.
"""

from __future__ import annotations

import itertools
import json
import pickle
import random
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import astuple

from core.changes import Record
from core.events import Event, Item, Kind
from core.records import AbandonedProduct, JourneyDay, OpenCarts, OrderAttribution
from core.records import Attribution as Attributed
from flows import carts
from flows.attribution import Attribution
from flows.book import Version
from flows.carts import CartBook
from flows.journey import Journey
from flows.shoppers import Shoppers
from tests.helpers import REPO, SHARED
from tests.helpers import event as ev
from tests.helpers import latest_values as latest

FILE = SHARED / "data" / "rees46_2019oct_head.csv.gz"
TZ = "Europe/Berlin"
MIN = 60_000
H = 60 * MIN
DAY = 24 * H
T = 60 * MIN  # abandon_after in the unit tests
T0 = int(datetime(2026, 3, 2, 10, 0, tzinfo=ZoneInfo(TZ)).timestamp() * 1000)  # a Monday, 10:00 in Berlin


def add(t: int, cart: str = "k1", product: str = "p1", qty: int = 1, price: int = 1000, **kw: Any) -> Event:
    kw.setdefault("customer", "c1")
    return ev(Kind.CART_ITEM_ADDED, t, cart=cart, items=(Item(product, qty, price),), amount=qty * price, **kw)


def remove(t: int, cart: str = "k1", product: str = "p1", qty: int = 1, price: int = 1000, **kw: Any) -> Event:
    kw.setdefault("customer", "c1")
    return ev(Kind.CART_ITEM_REMOVED, t, cart=cart, items=(Item(product, qty, price),), **kw)


def paid(t: int, order: str = "o1", cart: str | None = "k1", amount: int = 1000, **kw: Any) -> Event:
    kw.setdefault("customer", "c1")
    return ev(Kind.ORDER_PAID, t, order=order, cart=cart, amount=amount, **kw)


COUNTERS = ("cart_day", "open_carts", "abandoned_product", "attribution")


def settled(records: list[Record]) -> dict[tuple[str, str], Any]:
    """`latest`, without counters that ended at zero and order attributions that ended at none: to
    the read side a record never written is 0 or none (whether one was written and then went back
    depends on the order the events came in)."""
    return {k: v for k, v in latest(records).items()
            if (k[0] not in COUNTERS or any(x for x in astuple(v) if isinstance(x, int)))
            and (k[0] != "order_attribution" or v.campaign is not None)}


def one(records: list[Record], kind: str) -> Any:
    [value] = [v for (k, _), v in latest(records).items() if k == kind]
    return value


def day_of(t: int) -> str:
    return datetime.fromtimestamp(t / 1000, ZoneInfo(TZ)).date().isoformat()


# --- carts -------------------------------------------------------------------------------------

def book() -> CartBook:
    return CartBook("o", TZ, abandon_after_ms=T)


def test_a_cart_is_abandoned_only_when_the_watermark_passes_exactly_the_threshold() -> None:
    b = book()
    out = b.apply(add(T0))
    assert one(out, "cart").status == "open" and one(out, "cart").due == T0 + T
    assert one(out, "open_carts") == OpenCarts("s", "EUR", carts=1, value=1000)
    assert b.advance(T0 + T) == []  # W = due: an event at exactly `due` could still arrive
    out = b.advance(T0 + T + 1)
    assert one(out, "cart").status == "abandoned"
    day = one(out, "cart_day")
    assert (day.carts, day.abandoned, day.abandoned_value, day.open) == (1, 1, 1000, 0)
    assert one(out, "open_carts").carts == 0
    assert one(out, "abandoned_product") == AbandonedProduct("s", "p1", carts=1)
    assert [r.version for r in out] == sorted(r.version for r in out)


def test_a_cart_names_its_products_as_its_latest_events_naming_them_do() -> None:
    b = book()
    b.apply(ev(Kind.CART_ITEM_ADDED, T0, cart="k1", customer="c1", items=(Item("p1", 1, 500, "Mug"),), amount=500))
    out = b.apply(ev(Kind.CART_UPDATED, T0 + 2 * MIN, cart="k1", customer="c1", amount=5400,
                     items=(Item("p1", 1, 500), Item("p2", 1, 4900, "Kettle"))))  # a snapshot naming only p2
    assert one(out, "cart").names == {"p1": "Mug", "p2": "Kettle"}
    out = b.apply(ev(Kind.CART_ITEM_ADDED, T0 + MIN, cart="k1", customer="c1", items=(Item("p2", 1, 4900, "Old kettle"),),
                     amount=4900))  # arrives last, happened before the snapshot: p2 keeps the snapshot's name
    assert [r for r in out if r.kind == "cart"] == []
    out = b.apply(remove(T0 + 3 * MIN, product="p2", price=4900))
    assert one(out, "cart").names == {"p1": "Mug"}  # only what is in the cart
    c = b.carts[("s", "k1")]
    c.acts = [(*a[:3], tuple(line[:3] for line in a[3]), *a[4:]) for a in c.acts]  # as kept before names were
    assert carts._contents(c.acts).names == {}


def test_a_cart_shows_its_buyer_as_its_latest_activity_naming_one_typed_it() -> None:
    b = book()
    out = b.apply(ev(Kind.CHECKOUT_STARTED, T0, cart="k1", customer="g@x.io", attrs={"email": "g@x.io"}))
    assert one(out, "cart").buyer == "g@x.io"
    out = b.apply(ev(Kind.CART_UPDATED, T0 + 2 * MIN, cart="k1", customer="g@x.io", amount=500,
                     items=(Item("p1", 1, 500),), attrs={"email": "g@x.io", "customer_name": "Gil Guest"}))
    assert one(out, "cart").buyer == "Gil Guest"  # a name before an e-mail
    out = b.apply(add(T0 + MIN, customer="g@x.io"))  # an earlier add naming no one: the latest naming one stays
    assert [r for r in out if r.kind == "cart" and r.value.buyer != "Gil Guest"] == []
    c = b.carts[("s", "k1")]
    c.acts = [a[:7] for a in c.acts]  # as kept before buyers were
    assert carts._contents(c.acts).buyer == ""


def test_a_purchase_at_exactly_the_threshold_is_in_time() -> None:
    b = book()
    b.apply(add(T0))
    out = b.apply(paid(T0 + T))
    assert one(out, "cart").status == "purchased"
    b.advance(T0 + 10 * H)
    assert b.status(b.carts[("s", "k1")]) == "purchased"
    assert b.day_counts[("s", day_of(T0), "EUR")][:2] == [1, 1000]


def test_the_abandonment_clock_restarts_at_every_activity_even_a_late_one() -> None:
    b = book()
    b.apply(add(T0))
    b.advance(T0 + T + 1)
    assert b.status(b.carts[("s", "k1")]) == "abandoned"
    out = b.apply(add(T0 + 30 * MIN, product="p2", price=500))  # late: its time is before the watermark
    cart = one(out, "cart")
    assert (cart.status, cart.due, cart.value) == ("open", T0 + 30 * MIN + T, 1500)
    assert one(out, "cart_day").abandoned == 0 and one(out, "open_carts").carts == 1
    assert {v.product: v.carts for (k, _), v in latest(out).items() if k == "abandoned_product"} == {"p1": 0}
    out = b.advance(T0 + 30 * MIN + T + 1)
    assert one(out, "cart").status == "abandoned"
    assert sorted(v.product for (k, _), v in latest(out).items() if k == "abandoned_product" and v.carts) == ["p1", "p2"]


def test_a_cart_bought_after_it_was_counted_abandoned_is_recovered() -> None:
    b = book()
    b.apply(add(T0))
    b.advance(T0 + 2 * H)
    out = b.apply(paid(T0 + 3 * H))
    assert one(out, "cart").status == "recovered"
    day = one(out, "cart_day")
    assert (day.carts, day.abandoned, day.recovered, day.recovered_value, day.purchased) == (1, 1, 1, 1000, 0)
    assert latest(out).get(("abandoned_product", f"s|{day_of(T0)}|p1")) is None  # still counted abandoned: unchanged


def test_a_late_purchase_from_before_the_decision_undoes_the_abandonment() -> None:
    b = book()
    b.apply(add(T0))
    b.advance(T0 + 2 * H)
    out = b.apply(paid(T0 + 50 * MIN))  # arrives after the decision, but happened before `due`
    assert one(out, "cart").status == "purchased"
    day = one(out, "cart_day")
    assert (day.abandoned, day.recovered, day.purchased) == (0, 0, 1)
    assert one(out, "abandoned_product").carts == 0


def test_a_purchase_known_before_the_decision_shows_as_purchased_then_recovered() -> None:
    b = book()
    b.apply(add(T0))
    assert one(b.apply(paid(T0 + 2 * H)), "cart").status == "purchased"  # the watermark has not passed due
    assert one(b.advance(T0 + T + 1), "cart").status == "recovered"


def test_a_purchase_more_than_keep_after_the_decision_is_not_a_recovery() -> None:
    b = CartBook("o", TZ, T, keep_ms=DAY)
    b.apply(add(T0))
    b.advance(T0 + T + 1)
    b.apply(paid(T0 + T + DAY + 1))
    assert b.status(b.carts[("s", "k1")]) == "abandoned"


def test_the_vendors_checkout_expired_decides_sooner_unless_activity_came_after_it() -> None:
    b = book()
    b.apply(add(T0))
    b.apply(ev(Kind.CHECKOUT_EXPIRED, T0 + 10 * MIN, cart="k1"))
    assert b.carts[("s", "k1")].due(T) == T0 + 10 * MIN
    assert one(b.advance(T0 + 10 * MIN + 1), "cart").status == "abandoned"
    b2 = book()
    b2.apply(add(T0 + 20 * MIN))
    b2.apply(ev(Kind.CHECKOUT_EXPIRED, T0 + 10 * MIN, cart="k1"))  # before the last activity: stale
    assert b2.carts[("s", "k1")].due(T) == T0 + 20 * MIN + T


def test_a_cart_emptied_by_removals_is_counted_nowhere() -> None:
    b = book()
    b.apply(add(T0, qty=2))
    out = b.apply(remove(T0 + MIN, qty=2))
    assert one(out, "cart").status == "empty" and one(out, "cart").value == 0
    assert one(out, "cart_day").carts == 0 and one(out, "open_carts").carts == 0
    b.advance(T0 + 3 * H)
    assert b.status(b.carts[("s", "k1")]) == "empty"
    assert b.day_counts[("s", day_of(T0), "EUR")][0] == 0


def test_contents_are_the_latest_snapshot_plus_changes_after_it_in_any_arrival_order() -> None:
    snapshot = ev(Kind.CART_UPDATED, T0 + MIN, cart="k1", customer="c1", amount=2700,  # the vendor's total, discounted
                  items=(Item("p1", 2, 1000), Item("p2", 1, 1000)))
    events = [add(T0, product="p9"),  # before the snapshot: replaced by it
              snapshot,
              remove(T0 + 2 * MIN, product="p1", qty=1),
              add(T0 + 3 * MIN, product="p3", qty=2, price=250)]
    values = set()
    for order in itertools.permutations(events):
        b = book()
        for e in order:
            b.apply(e)
        view = b.carts[("s", "k1")].view
        assert view is not None
        values.add((tuple(view.lines.items()), view.value))
    assert values == {((("p1", (1, 1000)), ("p2", (1, 1000)), ("p3", (2, 250))), 2500)}
    b = book()
    b.apply(snapshot)
    assert b.carts[("s", "k1")].view.value == 2700  # type: ignore[union-attr]


def test_only_an_order_naming_the_cart_closes_it_and_redeliveries_emit_nothing() -> None:
    b = book()
    b.apply(add(T0))
    assert b.apply(paid(T0 + MIN, cart=None)) == []
    e = paid(T0 + 2 * MIN, cart="k1")
    assert b.apply(e) != []
    assert b.apply(e) == []
    assert b.status(b.carts[("s", "k1")]) == "purchased"


def test_carts_of_two_stores_never_share_state_and_a_cart_belongs_to_its_first_day() -> None:
    b = book()
    b.apply(add(T0, store="a"))
    b.apply(add(T0 - DAY, store="b"))
    b.apply(add(T0 + DAY, store="b"))  # same cart id, later activity: still the day of its first activity
    assert set(b.carts) == {("a", "k1"), ("b", "k1")}
    assert b.carts[("b", "k1")].contrib[0] == ("b", day_of(T0 - DAY), "EUR")  # type: ignore[index]


def test_state_is_dropped_behind_the_watermark_and_older_events_are_too_late() -> None:
    b = CartBook("o", TZ, T, keep_ms=DAY)
    for i in range(50):
        b.apply(add(T0 + i * MIN, cart=f"k{i}"))
    b.apply(paid(T0, cart="stub"))  # a purchase with no cart activity: not a cart
    assert b.held()["carts"] == 51
    b.advance(T0 + 50 * MIN + T + DAY + 2 * H)
    assert b.held()["carts"] == 0 and b.held()["day_counters"] == 1  # the day ends later than W - keep
    b.advance(T0 + 3 * DAY)
    assert b.held() == {"carts": 0, "day_counters": 0, "product_counters": 0, "wakeups": 0}
    assert b.apply(add(T0 + 10 * MIN, cart="k3")) == [] and b.too_late == 1
    assert b.apply(add(T0 + 4 * DAY, cart="k3")) != []


def test_abandon_after_must_be_between_30_and_180_minutes() -> None:
    with pytest.raises(ValueError, match="30 to 180 minutes"):
        CartBook("o", TZ, 20 * MIN)
    CartBook("o", TZ, 180 * MIN)


# --- journey -----------------------------------------------------------------------------------

def view(t: int, **kw: Any) -> Event:
    return ev(Kind.PRODUCT_VIEWED, t, items=(Item("p1", 1, 100),), **kw)


def test_journey_counts_distinct_persons_per_day() -> None:
    j = Journey("o", TZ)
    for e in [view(T0, visitor="v1"), view(T0 + 1, visitor="v1"), view(T0, customer="c1"), add(T0, customer="c1"),
              paid(T0, order="a", customer="c1"), paid(T0 + 5, order="a", customer="c1", id="again"),
              view(T0, customer="c2"), paid(T0, order="b", customer="c2"), paid(T0 + 1, order="c", customer="c2"),
              ev(Kind.CART_UPDATED, T0, cart="k", visitor="v3", items=()),  # an empty cart is a visit, not an add
              ev(Kind.CART_UPDATED, T0, cart="k", visitor="v4", items=(Item("p", 1, 1),)),
              ev(Kind.EMAIL_ENGAGED, T0, customer="c9", campaign="x", name="open"),  # not a visit
              view(T0, visitor="v1", store="other"),
              view(T0 + DAY, visitor="v1")]:
        j.apply(e)
    counts = {k: tuple(d.counts) for k, d in j.open.items()}
    assert counts == {("s", day_of(T0)): (5, 2, 2, 1), ("other", day_of(T0)): (1, 0, 0, 0),
                      ("s", day_of(T0 + DAY)): (1, 0, 0, 0)}


def test_purchased_again_is_exact_when_a_person_has_many_keys_and_orders() -> None:
    """Each raw key keeps at most two orders: the person's "one" and "two or more" stay exact, and a
    customer with a thousand orders in a day costs what one with three does."""
    j = Journey("o", TZ, identify_for_ms=2 * DAY)
    j.apply(ev(Kind.IDENTIFIED, T0, visitor="v1", customer="c1"))
    j.apply(paid(T0 + 1, order="a", visitor="v1", customer=None))  # the visitor key, counted as c1
    j.apply(paid(T0 + 2, order="a", customer="c1"))  # the same order under the customer key
    assert tuple(j.open[("s", day_of(T0))].counts) == (1, 0, 1, 0)
    j.apply(paid(T0 + 3, order="b", visitor="v1", customer=None))
    assert tuple(j.open[("s", day_of(T0))].counts) == (1, 0, 1, 1)
    for n in range(1000):
        out = j.apply(paid(T0 + 10 + n, order=f"many{n}", customer="c2"))
        assert (out == []) == (n >= 2)  # the first and second order change the counters, no later one
    d = j.open[("s", day_of(T0))]
    assert tuple(d.counts) == (2, 0, 2, 2)
    assert len(d.raws["c:c2"].orders) == 2


@pytest.mark.parametrize("identified_first", [True, False])
def test_an_identified_visitor_counts_as_the_customer_from_the_day_of_identification(identified_first: bool) -> None:
    j = Journey("o", TZ, identify_for_ms=2 * DAY)
    events = [view(T0 - DAY, visitor="v1"),  # the day before: stays the anonymous visitor
              view(T0, visitor="v1"), add(T0 + MIN, visitor="v1", customer=None),
              paid(T0 + 2 * MIN, customer="c1"),
              view(T0 + 3 * DAY, visitor="v1")]  # after the identification's 2 days: anonymous again
    ident = ev(Kind.IDENTIFIED, T0 + 2 * MIN, visitor="v1", customer="c1")
    for e in ([ident] + events if identified_first else events + [ident]):
        j.apply(e)
    counts = {k[1]: tuple(d.counts) for k, d in j.open.items()}
    assert counts == {day_of(T0 - DAY): (1, 0, 0, 0), day_of(T0): (1, 1, 1, 0), day_of(T0 + 3 * DAY): (1, 0, 0, 0)}
    assert j.open[("s", day_of(T0))].raws["v:v1"].person == "c:c1"


def test_a_later_identification_of_the_same_visitor_wins_on_the_days_it_covers() -> None:
    j = Journey("o", TZ)
    j.apply(view(T0, visitor="v1"))
    j.apply(view(T0, customer="c1"))
    j.apply(view(T0, customer="c2"))
    j.apply(ev(Kind.IDENTIFIED, T0 + 2 * MIN, visitor="v1", customer="c2", id="b"))
    j.apply(ev(Kind.IDENTIFIED, T0 + MIN, visitor="v1", customer="c1", id="a"))
    d = j.open[("s", day_of(T0))]
    assert d.raws["v:v1"].person == "c:c2" and d.counts == [2, 0, 0, 0]


def test_a_day_is_emitted_final_when_the_watermark_reaches_its_end_and_later_events_are_too_late() -> None:
    j = Journey("o", TZ)
    j.apply(view(T0, visitor="v1"))
    end = int(datetime(2026, 3, 3, tzinfo=ZoneInfo(TZ)).timestamp() * 1000)
    assert j.advance(end - 1) == []
    out = j.advance(end)
    assert one(out, "journey_day") == JourneyDay("s", visitors=1, added_to_cart=0, purchased=0, purchased_again=0,
                                                 final=True)
    assert j.held() == {"days": 0, "people": 0, "identities": 0}
    assert j.apply(view(T0, visitor="v2")) == [] and j.too_late == 1
    assert j.apply(view(end, visitor="v2")) != []


# --- attribution -------------------------------------------------------------------------------

def touch(t: int, campaign: str, customer: str = "c1", **kw: Any) -> Event:
    kw.setdefault("name", "click")
    return ev(Kind.EMAIL_ENGAGED, t, campaign=campaign, customer=customer, store="mail", **kw)


def test_an_order_goes_to_the_last_touch_within_seven_days_inclusive() -> None:
    a = Attribution("o", TZ)
    a.apply(touch(T0 - 7 * DAY - 1, "too-old"))
    a.apply(touch(T0 - 7 * DAY, "edge"))
    out = a.apply(paid(T0, cart=None, amount=5000))
    assert one(out, "attribution") == Attributed("s", "edge", "EUR", orders=1, revenue=5000)
    assert one(out, "order_attribution") == OrderAttribution("s", "o1", campaign="edge", touch_time=T0 - 7 * DAY,
                                                             touch="click")
    out = a.apply(touch(T0 - DAY, "later", name="open"))  # arrives late: the order moves to it
    assert latest(out) == {
        ("attribution", f"s|{day_of(T0)}|edge|EUR"): Attributed("s", "edge", "EUR", orders=0, revenue=0),
        ("attribution", f"s|{day_of(T0)}|later|EUR"): Attributed("s", "later", "EUR", orders=1, revenue=5000),
        ("order_attribution", "s:o1"): OrderAttribution("s", "o1", campaign="later", touch_time=T0 - DAY, touch="open"),
    }
    assert a.apply(touch(T0 + 1, "after")) == []  # after the purchase: not its touch


def test_an_order_reported_twice_counts_once_on_its_earliest_report() -> None:
    a = Attribution("o", TZ)
    a.apply(touch(T0 - DAY, "x"))
    a.apply(paid(T0 + DAY, amount=100))
    assert a.apply(paid(T0 + DAY, amount=100)) == []
    out = a.apply(paid(T0, amount=100))  # an earlier report of the same order: it moves to that day
    assert latest(out)[("attribution", f"s|{day_of(T0 + DAY)}|x|EUR")].orders == 0
    assert latest(out)[("attribution", f"s|{day_of(T0)}|x|EUR")].orders == 1
    assert a.apply(paid(T0, amount=1, customer=None, visitor=None, order="guest")) == []


def test_attribution_state_is_dropped_behind_the_watermark() -> None:
    a = Attribution("o", TZ, keep_ms=DAY)
    a.apply(touch(T0, "x"))
    a.apply(paid(T0 + H))
    a.advance(T0 + 10 * DAY)
    assert a.held() == {"orders": 0, "touches": 0, "sums": 0}
    assert a.apply(paid(T0 + 2 * H, order="late")) == [] and a.too_late == 1


def test_the_shoppers_books_share_one_increasing_version() -> None:
    """Carts, journey, attribution, e-mail engagement and customer profiles: one version sequence for all their records."""
    version = Version(41)
    s = Shoppers("o", TZ, 60, version=version)
    out = s.apply(touch(T0 - H, "x")) + s.apply(add(T0)) + s.apply(paid(T0 + MIN)) + s.advance(T0 + DAY * 3)
    versions = [r.version for r in out]
    assert versions == list(range(42, 42 + len(versions))) and version.value == versions[-1]
    assert {r.kind for r in out} == {"cart", "cart_day", "open_carts", "journey_day", "attribution", "order_attribution",
                                     "customer", "email_day"}


# --- generated shops: disorder, redelivery, and the documented SQL ----------------------------

GEN_T0 = int(datetime(2026, 3, 28, 18, 0, tzinfo=ZoneInfo(TZ)).timestamp() * 1000)  # over a 23-hour DST day
PRODUCTS = ("p1", "p2", "p3")


@st.composite
def shop(draw: st.DrawFn) -> list[Event]:
    """Sessions of a few people over three days: views, carts, checkouts, orders, touches, logins."""
    events: list[Event] = []
    for s in range(draw(st.integers(1, 10))):
        store = draw(st.sampled_from(["s1", "s2"]))
        who = draw(st.sampled_from(["c1", "c2", "c3", "v1", "v2", "v3"]))
        person = {"customer": who} if who[0] == "c" else {"visitor": who}
        start = GEN_T0 + draw(st.integers(0, 3 * 24 * 60)) * MIN
        currency = draw(st.sampled_from(["EUR", "EUR", "USD"]))
        cart = f"k{s}"
        for a in range(draw(st.integers(1, 8))):
            t = start + draw(st.integers(0, 240)) * MIN + draw(st.sampled_from([0, 0, 1500]))
            kind = draw(st.sampled_from([Kind.PRODUCT_VIEWED, Kind.PAGE_VIEWED, Kind.CART_ITEM_ADDED, Kind.CART_ITEM_ADDED,
                                         Kind.CART_ITEM_REMOVED, Kind.CART_UPDATED, Kind.CHECKOUT_STARTED,
                                         Kind.CHECKOUT_COMPLETED, Kind.CHECKOUT_EXPIRED, Kind.ORDER_PAID,
                                         Kind.ORDER_PAID, Kind.IDENTIFIED]))
            lines = tuple(Item(draw(st.sampled_from(PRODUCTS)), draw(st.integers(1, 3)), draw(st.sampled_from([100, 250])))
                          for _ in range(draw(st.integers(0 if kind in (Kind.CART_UPDATED, Kind.CHECKOUT_STARTED) else 1, 2))))
            kw: dict[str, Any] = {"id": f"{s}-{a}", "store": store, "currency": currency, **person}
            if kind in (Kind.CART_ITEM_ADDED, Kind.CART_ITEM_REMOVED, Kind.CART_UPDATED, Kind.CHECKOUT_STARTED):
                kw |= {"cart": cart, "items": lines[:1] if kind in (Kind.CART_ITEM_ADDED, Kind.CART_ITEM_REMOVED) else lines,
                       "amount": draw(st.integers(0, 3000))}
            elif kind in (Kind.CHECKOUT_COMPLETED, Kind.CHECKOUT_EXPIRED):
                kw |= {"cart": cart}
            elif kind is Kind.ORDER_PAID:
                kw |= {"cart": draw(st.sampled_from([cart, None])), "order": f"o{s}-{draw(st.integers(0, 1))}",
                       "amount": draw(st.integers(1, 5000)), "items": lines}
            elif kind is Kind.IDENTIFIED:
                kw = {"id": f"{s}-{a}", "store": store, "visitor": draw(st.sampled_from(["v1", "v2", "v3"])),
                      "customer": draw(st.sampled_from(["c1", "c2", "c3"]))}
            else:
                kw |= {"items": lines[:1]}
            events.append(ev(kind, t, **kw))
    for n in range(draw(st.integers(0, 4))):
        who = draw(st.sampled_from(["c1", "c2", "c3", "v1"]))
        person = {"customer": who} if who[0] == "c" else {"visitor": who}
        t = GEN_T0 + draw(st.integers(-8 * 24 * 60, 3 * 24 * 60)) * MIN
        events.append(ev(Kind.EMAIL_ENGAGED, t, id=f"m{n}", store="mail", campaign=draw(st.sampled_from(["x", "y"])),
                         name=draw(st.sampled_from(["open", "click"])), **person))
    return events


def run(events: list[Event], lateness: int, step: bool = True) -> tuple[dict[tuple[str, str], dict[str, Any]], Shoppers]:
    """Feeds events in the given order, moving the watermark (max time seen - lateness) after each."""
    s = Shoppers("o", TZ, 60)
    out: list[Record] = []
    seen = None
    for e in events:
        out += s.apply(e)
        seen = e.time if seen is None else max(seen, e.time)
        if step:
            out += s.advance(seen - lateness)
    out += s.advance(max(e.time for e in events) + 2 * DAY)
    return settled(out), s


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shop(), st.integers(0, 3 * H), st.randoms(use_true_random=False))
def test_redelivery_and_disorder_within_the_lateness_leave_the_same_final_records(
        events: list[Event], lateness: int, rnd: random.Random) -> None:
    ordered = sorted(events, key=lambda e: (e.time, e.id))
    expected, ref = run(ordered, lateness)
    # every event three times, each copy delayed by less than the lateness: none arrives behind the watermark
    copies = [(e.time + rnd.randrange(lateness + 1) if lateness else e.time, rnd.random(), e) for e in events * 3]
    shuffled = [e for _, _, e in sorted(copies, key=lambda c: (c[0], c[1]))]
    got, s = run(shuffled, lateness)
    assert got == expected
    assert s.too_late == ref.too_late == 0
    assert run(list(reversed(ordered)), lateness, step=False)[0] == expected  # all at once, backwards


@settings(max_examples=30, deadline=None)
@given(shop(), st.integers(0, 100))
def test_a_snapshot_taken_anywhere_resumes_to_the_same_final_records(events: list[Event], cut_percent: int) -> None:
    """Bytewax pickles the books as their state: a run resumed from a snapshot ends the same."""
    ordered = sorted(events, key=lambda e: (e.time, e.id))
    expected, _ = run(ordered, 10 * MIN)
    cut = len(ordered) * cut_percent // 100
    s = Shoppers("o", TZ, 60)
    out: list[Record] = []
    for e in ordered[:cut]:
        out += s.apply(e) + s.advance(e.time - 10 * MIN)
    s = pickle.loads(pickle.dumps(s))
    for e in ordered[cut:]:
        out += s.apply(e) + s.advance(e.time - 10 * MIN)
    out += s.advance(max(e.time for e in events) + 2 * DAY)
    assert settled(out) == expected
    assert [r.version for r in out] == list(range(1, len(out) + 1))


# --- SQL: the documented queries, and the REES46 truth ----------------------------------------

DOCS = (REPO / "docs" / "carts_journey.md", REPO / "docs" / "metrics.md")


def doc_sql(marker: str) -> str:
    """The ```sql block of the docs whose first line starts with `marker`: the tests run the docs."""
    for path in DOCS:
        if path.exists():
            for block in re.findall(r"```sql\n(.*?)```", path.read_text(), re.S):
                if block.startswith(marker):
                    return block
    raise AssertionError(f"no SQL block starting with {marker!r} in {', '.join(str(p) for p in DOCS)}")


def run_sql(con: duckdb.DuckDBPyConnection, text: str) -> list[list[dict[str, Any]]]:
    """Runs each statement; the rows of each SELECT, as dicts with dates as ISO strings."""
    body = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    results = []
    for stmt in (s.strip() for s in body.split(";")):
        if not stmt:
            continue
        cur = con.execute(stmt)
        if stmt.upper().startswith(("SELECT", "WITH")):
            cols = [d[0] for d in cur.description]
            results.append([{c: (v.isoformat() if hasattr(v, "isoformat") else v) for c, v in zip(cols, row)}
                            for row in cur.fetchall()])
    return results


def events_table(con: duckdb.DuckDBPyConnection, events: list[Event], tmp: Path) -> None:
    path = tmp / "events.ndjson"
    unique = {e.id: e for e in reversed(events)}  # like the log, which keeps one event per id: the first
    with path.open("w") as f:
        for e in unique.values():
            f.write(json.dumps({
                "id": e.id, "kind": e.kind.value, "store": e.store, "time": e.time, "amount": e.amount,
                "currency": e.currency, "customer": e.customer or None, "visitor": e.visitor or None,
                "order": e.order or None, "cart": e.cart or None, "campaign": e.campaign or None, "name": e.name,
                "items": [{"product": i.product, "qty": i.qty, "unit_price": i.unit_price} for i in e.items],
            }) + "\n")
    con.execute(f"""CREATE OR REPLACE TABLE events AS SELECT * FROM read_json('{path}', format = 'newline_delimited',
        columns = {{id: 'VARCHAR', kind: 'VARCHAR', store: 'VARCHAR', time: 'BIGINT', amount: 'BIGINT',
                   currency: 'VARCHAR', customer: 'VARCHAR', visitor: 'VARCHAR', "order": 'VARCHAR', cart: 'VARCHAR',
                   campaign: 'VARCHAR', name: 'VARCHAR',
                   items: 'STRUCT(product VARCHAR, qty BIGINT, unit_price BIGINT)[]'}})""")


def sql_figures(events: list[Event], tz: str, watermark: int, tmp: Path, abandon_after: int = H) -> dict[str, Any]:
    """The documented SQL over the canonical events, shaped like the books' records."""
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    for name, value in (("tz", tz), ("T", abandon_after), ("K", 7 * DAY), ("W", watermark), ("I", 30 * DAY)):
        con.execute(f"SET VARIABLE {name} = {value!r}" if isinstance(value, str) else f"SET VARIABLE {name} = {value}::BIGINT")
    events_table(con, events, tmp)
    cart_days, products = run_sql(con, doc_sql("-- carts:"))
    [journey] = run_sql(con, doc_sql("-- journey"))
    [attribution] = run_sql(con, doc_sql("-- revenue attributed"))
    carts = {(r["store"], r["cart"]): (r["status"], r["value"], r["due"], r["day"])
             for r in con.execute("SELECT * FROM cart_status").fetchall()
             for r in [dict(zip([d[0] for d in con.description], r))]}
    return {
        "carts": {k: (s, v, d, day.isoformat()) for k, (s, v, d, day) in carts.items() if s != "empty"},
        "cart_day": {f"{r.pop('store')}|{r.pop('day')}|{r.pop('currency')}": r for r in cart_days if r["carts"]},
        "abandoned_product": {f"{r['store']}|{r['day']}|{r['product']}": r["carts"] for r in products},
        "journey_day": {f"{r.pop('store')}|{r.pop('day')}": r for r in journey},
        "attribution": {f"{r['store']}|{r['day']}|{r['campaign']}|{r['currency']}": {"orders": r["orders"], "revenue": r["revenue"]}
                        for r in attribution},
    }


def book_figures(final: dict[tuple[str, str], dict[str, Any]], tz: str) -> dict[str, Any]:
    """The books' final records, shaped like sql_figures."""
    out: dict[str, Any] = {k: {} for k in ("carts", "cart_day", "abandoned_product", "journey_day", "attribution")}
    for (kind, key), v in final.items():
        if kind == "cart" and v.status != "empty":
            out["carts"][(v.store, v.cart)] = (v.status, v.value, v.due, datetime.fromtimestamp(v.first / 1000, ZoneInfo(tz)).date().isoformat())
        elif kind == "cart_day" and v.carts:
            out["cart_day"][key] = {"carts": v.carts, "abandoned": v.abandoned, "recovered": v.recovered,
                                    "purchased": v.purchased, "open": v.open, "value": v.value,
                                    "abandoned_value": v.abandoned_value, "recovered_value": v.recovered_value,
                                    "purchased_value": v.purchased_value, "open_value": v.open_value}
        elif kind == "abandoned_product" and v.carts:
            out["abandoned_product"][key] = v.carts
        elif kind == "journey_day":
            out["journey_day"][key] = {"visitors": v.visitors, "added_to_cart": v.added_to_cart,
                                       "purchased": v.purchased, "purchased_again": v.purchased_again}
        elif kind == "attribution" and v.orders:
            out["attribution"][key] = {"orders": v.orders, "revenue": v.revenue}
    return out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(events=shop())
def test_the_documented_sql_equals_the_books_on_generated_shops(events: list[Event], tmp_path: Path) -> None:
    final, _ = run(sorted(events, key=lambda e: (e.time, e.id)), 10 * MIN)
    watermark = max(e.time for e in events) + 2 * DAY
    assert book_figures(final, TZ) == sql_figures(events, TZ, watermark, tmp_path)


# The REES46 truth: the books fed with the file's events equal SQL over the CSV itself.

REES_TZ = "Atlantic/Cape_Verde"  # UTC-1: the file's three hours straddle a local midnight


def rees_truth(con: duckdb.DuckDBPyConnection, watermark: int) -> dict[str, Any]:
    """Journey, carts and most abandoned products computed from the CSV alone."""
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"SET VARIABLE tz = '{REES_TZ}'")
    con.execute("CREATE MACRO local_day(t) AS CAST(timezone(getvariable('tz'), timezone('UTC', epoch_ms(t))) AS DATE)")
    # the mapping rules (ingest/replay.py): exact duplicate lines are one event; user_id is the person;
    # user_session is the cart and the order; a session's purchase rows are one order at its first row
    con.execute(f"""CREATE TABLE rows AS SELECT DISTINCT
            epoch_ms(strptime(event_time, '%Y-%m-%d %H:%M:%S UTC')) AS t, event_type,
            product_id AS product, CAST(CAST(price AS DECIMAL(18, 2)) * 100 AS BIGINT) AS cents,
            user_id AS person, user_session AS session
        FROM read_csv('{FILE}', all_varchar = true)""")
    con.execute("""CREATE TABLE orders AS SELECT session, min(t) AS t, arg_min(person, t) AS person
                   FROM rows WHERE event_type = 'purchase' GROUP BY session""")
    journey = con.execute("""
        WITH visits AS (SELECT person, t FROM rows WHERE event_type IN ('view', 'cart')
                        UNION ALL SELECT person, t FROM orders),
        v AS (SELECT local_day(t) AS day, count(DISTINCT person) AS n FROM visits GROUP BY 1),
        a AS (SELECT local_day(t) AS day, count(DISTINCT person) AS n FROM rows WHERE event_type = 'cart' GROUP BY 1),
        p AS (SELECT local_day(t) AS day, person, count(*) AS orders FROM orders GROUP BY 1, 2)
        SELECT v.day, v.n, coalesce(a.n, 0),
               (SELECT count(*) FROM p WHERE p.day = v.day), (SELECT count(*) FROM p WHERE p.day = v.day AND orders >= 2)
        FROM v LEFT JOIN a USING (day) ORDER BY 1""").fetchall()
    con.execute(f"""CREATE TABLE carts AS
        WITH c AS (SELECT session, min(t) AS first, max(t) AS last FROM rows WHERE event_type = 'cart' GROUP BY session),
        s AS (SELECT c.*, c.last + {H} AS due, o.t AS paid FROM c LEFT JOIN orders o USING (session))
        SELECT session, local_day(first) AS day,
               CASE WHEN paid <= due THEN 'purchased'
                    WHEN {watermark} > due THEN (CASE WHEN paid <= due + {7 * DAY} THEN 'recovered' ELSE 'abandoned' END)
                    WHEN paid IS NOT NULL THEN 'purchased' ELSE 'open' END AS status,
               (SELECT sum(q * u) FROM (SELECT count(*) AS q, arg_max(r.cents, r.t) AS u FROM rows r
                                        WHERE r.session = s.session AND r.event_type = 'cart' GROUP BY r.product)) AS value
        FROM s""")
    carts = con.execute("""SELECT day, count(*), count(*) FILTER (WHERE status IN ('abandoned', 'recovered')),
            count(*) FILTER (WHERE status = 'recovered'), count(*) FILTER (WHERE status = 'purchased'),
            count(*) FILTER (WHERE status = 'open'),
            coalesce(sum(value) FILTER (WHERE status IN ('abandoned', 'recovered')), 0)
        FROM carts GROUP BY day ORDER BY day""").fetchall()
    products = con.execute("""SELECT c.day, r.product, count(DISTINCT c.session) FROM carts c
        JOIN rows r ON r.session = c.session AND r.event_type = 'cart'
        WHERE c.status IN ('abandoned', 'recovered') GROUP BY 1, 2""").fetchall()
    return {
        "journey_day": {f"rees46|{d}": {"visitors": v, "added_to_cart": a, "purchased": p, "purchased_again": g}
                        for d, v, a, p, g in journey},
        "cart_day": {f"rees46|{d}|USD": {"carts": n, "abandoned": ab, "recovered": rc, "purchased": pu, "open": op,
                                         "abandoned_value": av} for d, n, ab, rc, pu, op, av in carts},
        "abandoned_product": {f"rees46|{d}|{p}": n for d, p, n in products},
    }


@pytest.mark.skipif(not FILE.exists(), reason="../shared is absent: the REES46 truth test needs ../shared/data")
def test_rees46_journey_and_carts_equal_sql_over_the_csv(tmp_path: Path) -> None:
    from ingest.replay import map_file

    mapped = map_file(FILE, "rees46", "o", "rees46")
    assert not mapped.skipped
    events = mapped.events  # in the file's (time) order
    s = Shoppers("o", REES_TZ, abandon_after_minutes=60)
    out: list[Record] = []
    for e in events:
        out += s.apply(e)
        out += s.advance(e.time - 10 * MIN)  # the file is in time order: the watermark trails it by the lateness
    end = max(e.time for e in events)
    watermark = end + H
    out += s.advance(watermark)
    assert s.too_late == 0
    books = book_figures(latest(out), REES_TZ)

    truth = rees_truth(duckdb.connect(), watermark)
    assert books["journey_day"] == truth["journey_day"]
    assert {k: {f: v[f] for f in truth["cart_day"][k]} for k, v in books["cart_day"].items()} == truth["cart_day"]
    assert books["abandoned_product"] == truth["abandoned_product"]
    # the headline figures over the whole file (sums over its two local days)
    j, c = books["journey_day"].values(), books["cart_day"].values()
    visitors, purchased = sum(d["visitors"] for d in j), sum(d["purchased"] for d in j)
    carts, abandoned = sum(d["carts"] for d in c), sum(d["abandoned"] for d in c)
    tj, tc = truth["journey_day"].values(), truth["cart_day"].values()
    assert purchased / visitors == sum(d["purchased"] for d in tj) / sum(d["visitors"] for d in tj)
    assert abandoned / carts == sum(d["abandoned"] for d in tc) / sum(d["carts"] for d in tc)
    assert len(books["journey_day"]) == 2 and carts > 100 and abandoned > 20 and visitors > 4000
    # and the documented SQL over the mapped events says the same
    assert books == sql_figures(events, REES_TZ, watermark, tmp_path)
