"""What an automation came to over a period (ws_gateway/automation_results.py, pure): deliveries by the
local day their action fired, and the carts bought after a delivered reminder was due (event time)."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from core.changes import Record
from core.rates import RecordingRates, parse_ecb_csv
from core.records import Cart
from notifier.actions import Action, action_key
from notifier.outbox import Delivery, Status
from ws_gateway.automation_results import cart_keys, results, tally

BERLIN = ZoneInfo("Europe/Berlin")
T0 = 1_795_338_000_000  # 2026-11-22T09:00:00Z, 10:00 in Berlin
MIN, HOUR = 60_000, 3_600_000


def delivery(automation: str, subject: str, channel: str, status: Status, fired: int, delivered: int | None = None,
             trigger: str = "cart.abandoned", cart: str | None = None) -> Delivery:
    key = action_key(automation, subject, f"cause-{subject}")
    payload = {"store": "shop", "cart": cart} if cart else {}
    a = Action(key, "acme", automation, channel, trigger, subject, f"cause-{subject}", fired, fired + HOUR, payload=payload)
    return Delivery(f"{key}-{channel}", a, status, fired, fired + HOUR, delivered_at=delivered)


def cart(name: str, paid: int | None, value: int, currency: str = "EUR") -> Record[Cart]:
    status = "open" if paid is None else "recovered"
    return Record("acme", 1, Cart.KIND, f"shop:{name}", "2026-11-22",
                  Cart("shop", name, "c", status, currency, value, [], T0 - HOUR, T0 - HOUR, T0, paid))


def test_recovered_carts_are_those_paid_after_a_delivered_reminder_was_due() -> None:
    sent = T0 + HOUR  # each reminder is due an hour after it fired
    deliveries = [
        # a, reminded on two channels: one cart, recovered after the reminder
        delivery("reminder", "a", "mail", Status.DELIVERED, T0, sent, cart="k-a"),
        delivery("reminder", "a", "crm", Status.DELIVERED, T0, sent + 5 * MIN, cart="k-a"),
        # b paid before its reminder was due: reminded, not recovered by it
        delivery("reminder", "b", "mail", Status.DELIVERED, T0, sent, cart="k-b"),
        # c's reminder died: never reached, not reminded
        delivery("reminder", "c", "mail", Status.DEAD, T0, cart="k-c"),
        # d reminded, never bought; e reminded, bought in dollars, its reminder delivered a day late (a replay,
        # a channel that was down): the purchase still came after the reminder in event time
        delivery("reminder", "d", "mail", Status.DELIVERED, T0, sent, cart="k-d"),
        delivery("reminder", "e", "mail", Status.DELIVERED, T0, sent + 24 * HOUR, cart="k-e"),
        # fired the day before (Berlin): not in the period
        delivery("reminder", "f", "mail", Status.DELIVERED, T0 - 10 * HOUR - MIN, T0 - 7 * HOUR, cart="k-f"),
        # another trigger: counted, no carts
        delivery("big-order", "o1", "slack", Status.DELIVERED, T0, sent, trigger="order.paid"),
        delivery("big-order", "o2", "slack", Status.PENDING, T0, trigger="order.paid"),
        delivery("big-order", "o3", "slack", Status.CANCELLED, T0, trigger="order.paid"),
    ]
    tallies = tally(deliveries, first="2026-11-22", last="2026-11-22", tz=BERLIN)
    assert cart_keys(tallies) == ["shop:k-a", "shop:k-b", "shop:k-d", "shop:k-e"]
    carts = {r.key: r for r in (cart("k-a", sent + 10 * MIN, 2500), cart("k-b", sent - MIN, 900), cart("k-d", None, 4000),
                                 cart("k-e", sent + HOUR, 1050, "USD"), cart("k-f", sent, 7000))}
    rates = RecordingRates(parse_ecb_csv("Date,USD,\n2026-11-22,1.0500,\n"))
    got = results(tallies, carts, tz=BERLIN, currency="EUR", rates=rates)
    assert got == {
        "big-order": {"fired": 3, "deliveries": {"pending": 1, "delivered": 1, "dead": 0, "cancelled": 1},
                      "reminded_carts": 0, "recovered_carts": 0,
                      "recovered_value": {"amount": 0, "currency": "EUR", "exponent": 2}},
        "reminder": {"fired": 5, "deliveries": {"pending": 0, "delivered": 5, "dead": 1, "cancelled": 0},
                     "reminded_carts": 4, "recovered_carts": 2,
                     "recovered_value": {"amount": 2500 + 1000, "currency": "EUR", "exponent": 2}},  # $10.50 = €10.00
    }
    assert not rates.gaps
    # an automation with nothing fired in the period answers zeros
    quiet = results(tallies, carts, tz=BERLIN, currency="EUR", rates=rates, automations=["welcome", "reminder"])
    assert quiet["reminder"] == got["reminder"] and quiet["welcome"] == {
        "fired": 0, "deliveries": {"pending": 0, "delivered": 0, "dead": 0, "cancelled": 0}, "reminded_carts": 0,
        "recovered_carts": 0, "recovered_value": {"amount": 0, "currency": "EUR", "exponent": 2}}
    # without the dollar's rate, that cart's value is left out and said so
    blind = RecordingRates(None)
    assert results(tallies, carts, tz=BERLIN, currency="EUR", rates=blind)["reminder"]["recovered_value"] == {
        "amount": 2500, "currency": "EUR", "exponent": 2}
    assert blind.gaps == {("USD", "2026-11-22")}
