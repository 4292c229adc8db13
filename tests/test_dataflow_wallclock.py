"""The wall-clock watermark (flows/organisation.py): while an organisation is live and no events
arrive, the wall clock moves its watermark and decides abandoned carts; a replay of older history
and a freshly restored dataflow (not yet caught up with the log) keep to event time.

One test goes through the real path: `storepulse up`, a cart event in through the events API, no
further event, and the cart turns abandoned on the read API once abandon_after plus the allowed
lateness have passed on the wall clock, not before."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from zoneinfo import ZoneInfo

from core.changes import Record
from core.config import parse_config
from core.events import Event, Item, Kind
from core.records import Cart
from flows.organisation import ALLOWED_LATENESS_MS, LIVE_MS, TICKS, Organisation
from tests.helpers import Storepulse

MIN = 60_000
CONFIG = parse_config('[orgs.o]\ntimezone = "Europe/Berlin"\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\n'
                      'abandon_after = 30\n[orgs.o.stores.s]\nprovider = "events"\nsecret = "k"\n', {})
NOW = 1_795_338_000_000  # the wall clock of these tests: 2026-11-22 10:00 Berlin
ABANDON = 30 * MIN


def add(t: int, cart: str = "k1", i: int = 0) -> Event:
    return Event(id=f"a{cart}{i}", kind=Kind.CART_ITEM_ADDED, org="o", store="s", time=t, cart=cart, customer="c1",
                 currency="EUR", amount=500, items=(Item("p1", 1, 500),))


def status(out: list, cart: str = "k1") -> str | None:
    found = [r.value.status for r in out if isinstance(r, Record) and isinstance(r.value, Cart) and r.key == f"s:{cart}"]
    return found[-1] if found else None


def live_org(t: int) -> Organisation:
    org = Organisation.new(CONFIG.orgs["o"])
    org.arm(NOW)
    assert status(org.apply_all([add(t)], NOW)) == "open"
    return org


def test_a_quiet_shops_cart_is_abandoned_when_the_wall_clock_passes_its_due_plus_the_lateness() -> None:
    t = NOW
    org = live_org(t)
    due = t + ABANDON
    wake = org.next_wake(NOW)
    assert wake == due + ALLOWED_LATENESS_MS + 1000  # the first whole second after it: W must pass due
    assert org.tick(wake - 1000) == []  # W would be exactly due: not past it
    out = org.tick(wake)
    assert status(out) == "abandoned"
    assert org.watermark == due + 1000 and all(r.version == org.version for r in out)
    assert org.version == 1 * TICKS + 2 * ((due + 1000 - (t - ALLOWED_LATENESS_MS)) // 1000)  # two a grid point
    # no cart left to decide: the next wake is a segment's timer (the customer stops being "active in
    # 30 days", a new registration after 7 days), which decides no cart
    assert org.tick(wake) == []
    later = org.next_wake(wake)
    assert later is not None and later >= org.segments.next_due() + ALLOWED_LATENESS_MS  # type: ignore[operator]
    assert status(org.tick(later)) is None
    # A purchase from before `due` that arrives late corrects the decision, as with event time.
    paid = Event(id="p", kind=Kind.ORDER_PAID, org="o", store="s", time=due - MIN, cart="k1", order="o1",
                 customer="c1", currency="EUR", amount=500)
    after = org.apply_all([paid], wake + MIN)
    assert status(after) == "purchased" and min(r.version for r in after) > max(r.version for r in out)


def test_the_wall_clock_waits_until_armed_and_leaves_history_to_event_time() -> None:
    org = Organisation.new(CONFIG.orgs["o"])
    org.apply_all([add(NOW)], NOW)
    assert org.tick(NOW + 2 * ABANDON) == [] and org.next_wake(NOW) is None  # restored or starting: not armed
    assert status(org.arm(NOW + 2 * ABANDON)) == "abandoned"  # armed: the log is read to its end
    old = Organisation.new(CONFIG.orgs["o"])
    old.arm(NOW)
    old.apply_all([add(NOW - LIVE_MS - MIN)], NOW)  # a replay of history older than a week
    assert old.tick(NOW) == [] and old.next_wake(NOW) is None
    assert old.watermark == NOW - LIVE_MS - MIN - ALLOWED_LATENESS_MS


def test_an_event_stamped_far_ahead_of_the_wall_clock_does_not_push_the_watermark() -> None:
    org = live_org(NOW)
    org.apply_all([add(NOW + 400 * 24 * 60 * MIN, cart="k2")], NOW)  # a sender's clock a year off
    assert org.watermark == NOW + 24 * 60 * MIN - ALLOWED_LATENESS_MS
    # Later events are still folded in (a year-ahead watermark would have made them too late).
    assert status(org.apply_all([add(NOW + MIN, cart="k3")], NOW), "k3") == "abandoned"
    assert org.shoppers.too_late == 0 and org.ledger.too_late == 0


# --- through storepulse up -----------------------------------------------------------------------


def cart_status(sp: Storepulse, day: str, cart: str) -> dict | None:
    r = sp.get("/api/v1/orgs/acme/carts", **{"from": day, "to": day, "store": "acme-site", "limit": 500})
    assert r.status_code == 200, r.text
    found = [c for c in r.json()["latest_carts"] if c["cart"] == cart]
    return found[0] if found else None


def test_through_storepulse_up_a_cart_with_no_further_events_turns_abandoned_on_time(tmp_path: Path) -> None:
    sp = Storepulse(tmp_path).start()
    try:
        margin = 8_000
        posted = time.time_ns() // 1_000_000
        # Its last activity so long ago that due + lateness is `margin` from now: abandon_after is 60 min.
        t = posted - 60 * MIN - ALLOWED_LATENESS_MS + margin
        day = dt.datetime.fromtimestamp(t / 1000, ZoneInfo("Europe/Berlin")).date().isoformat()
        r = sp.post_events([{"type": "add_to_cart", "id": "quiet-1", "time": t, "visitor": "v-quiet", "cart": "quiet",
                             "currency": "EUR", "items": [{"product": "p1", "qty": 1, "price": "12.00"}]}])
        assert r.status_code == 200, r.text
        seen: list[tuple[float, str]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            c = cart_status(sp, day, "quiet")
            if c is not None:
                seen.append((time.time() * 1000, c["status"]))
                if c["status"] == "abandoned":
                    break
            time.sleep(0.1)
        statuses = [s for _, s in seen]
        assert statuses and statuses[-1] == "abandoned", f"the cart never turned abandoned: {statuses[-5:]}"
        assert "open" in statuses, "the cart should show as open until due + lateness"
        first_abandoned = next(at for at, s in seen if s == "abandoned")
        assert first_abandoned >= posted + margin - 1500  # decided by the wall clock, not before its time
        assert c is not None and c["due"] == t + 60 * MIN
    finally:
        sp.ensure_stopped()


def test_the_wall_clock_never_moves_a_watermark_back() -> None:
    org = live_org(NOW)
    org.tick(NOW + 2 * ABANDON)
    w = org.watermark
    org.apply_all([add(NOW + MIN, cart="k2")], NOW + 2 * ABANDON)  # later events, still behind the wall clock
    assert org.watermark == w
    assert org.tick(NOW) == [] and org.watermark == w
