"""The automations book inside an organisation (flows/automations.py, flows/organisation.py): events,
abandoned carts, quota alerts and schedules fire; waits are timers woken by next_wake/tick; a purchase
cancels; a replay or a snapshot round trip gives the identical actions; history does not fire."""

from __future__ import annotations

import pickle

import pytest

from core.config import parse_config
from core.events import Event, Item, Kind
from core.rates import parse_ecb_csv
from flows.automations import MAX_AGE_MS, next_occurrence
from flows.organisation import ALLOWED_LATENESS_MS, Organisation
from notifier.actions import Action, action_key

pytestmark = pytest.mark.unit

MIN, HOUR = 60_000, 3_600_000
NOW = 1_795_338_000_000  # the wall clock of these tests: 2026-11-22 10:00 Berlin (a Sunday)
CONFIG_TEXT = """
[orgs.o]
timezone = "Europe/Berlin"
currency = "EUR"
token = "token-0123456789abcdef"
abandon_after = 30
plan_limit = 5
locale = "de"

[orgs.o.stores.s]
provider = "events"
secret = "k"

[orgs.o.automations.big-order]
trigger = "order.paid"
if = { order_value = { gte = "100.00" } }
send = ["ops", "crm"]

[orgs.o.automations.reminder]
trigger = "cart.abandoned"
wait = "1h"
cancel_on = ["order.paid"]
send = ["customer-mail"]
locale = "en"

[orgs.o.automations.quota]
trigger = "quota.crossed"
send = ["ops"]

[orgs.o.automations.morning]
trigger = "schedule"
schedule = { at = "08:00", days = ["mon", "wed"] }
send = ["ops"]
[orgs.o.channels.ops]
kind = "slack"
url = "https://hooks.slack.example/ops"

[orgs.o.channels.crm]
kind = "slack"
url = "https://hooks.slack.example/crm"

[orgs.o.channels.customer-mail]
kind = "slack"
url = "https://hooks.slack.example/customer-mail"
"""
CONFIG = parse_config(CONFIG_TEXT, {})
ORG = CONFIG.orgs["o"]


def paid(t: int, amount: int, customer: str = "c1", order: str = "o1", id_: str | None = None,
         cart: str | None = None) -> Event:
    return Event(id=id_ or f"p-{order}", kind=Kind.ORDER_PAID, org="o", store="s", time=t, amount=amount,
                 currency="EUR", customer=customer, order=order, cart=cart, items=(Item("p1", 1, amount, "Mug"),))


def add(t: int, cart: str = "k1", customer: str = "c1") -> Event:
    return Event(id=f"a-{cart}-{t}", kind=Kind.CART_ITEM_ADDED, org="o", store="s", time=t, cart=cart,
                 customer=customer, currency="EUR", amount=2500, items=(Item("p1", 1, 2500),))


def live() -> Organisation:
    org = Organisation.new(ORG)
    org.arm(NOW)
    return org


def by(actions: list[Action], automation: str) -> list[Action]:
    return [a for a in actions if a.automation == automation]


def test_a_big_order_fires_one_action_per_channel_with_the_key_of_its_order() -> None:
    org = live()
    org.apply_all([paid(NOW, 15_000), paid(NOW, 9_999, customer="c2", order="o2")], NOW)
    actions = by(org.take_actions(), "big-order")
    key = action_key("big-order", "c1", "order.paid:s:o1")
    assert [(a.channel, a.key, a.subject, a.fired_at, a.due_at, a.locale) for a in actions] == [
        ("ops", key, "c1", NOW, NOW, "de"), ("crm", key, "c1", NOW, NOW, "de")]
    assert actions[0].message.subject == "Neue Bestellung o1: 150,00\xa0€"
    assert actions[0].payload["amount"] == 15_000 and actions[0].payload["items"] == [["p1", 1, 15_000, "Mug"]]
    assert org.take_actions() == []  # taken
    # A second report of the same payment (another event id) fires the same key: the outbox keeps one.
    org.apply_all([paid(NOW + MIN, 15_000, id_="p-o1-again")], NOW)
    assert {a.key for a in by(org.take_actions(), "big-order")} == {key}


def test_history_fires_nothing() -> None:
    org = live()
    org.apply_all([paid(NOW - MAX_AGE_MS - 1, 50_000)], NOW)
    assert org.take_actions() == []
    org.apply_all([paid(NOW - MAX_AGE_MS, 50_000, order="o2")], NOW)
    assert len(org.take_actions()) == 2


def remind_flow(events_during_wait: list[Event]) -> tuple[Organisation, list[Action]]:
    """A cart at NOW - 2h (abandoned at NOW - 90m, reminder due at NOW - 30m), folded live at NOW."""
    org = live()
    t = NOW - 2 * HOUR
    org.apply_all([add(t)], NOW)
    out: list[Action] = []
    org.apply_all(events_during_wait, NOW)
    while (wake := org.next_wake(NOW)) is not None and wake <= NOW + 2 * HOUR:
        org.tick(wake)
        out += org.take_actions()
    return org, out


def test_an_abandoned_cart_reminder_waits_then_fires_once() -> None:
    org, out = remind_flow([])
    due = NOW - 2 * HOUR + 30 * MIN
    assert [(a.automation, a.subject, a.cause, a.fired_at, a.due_at) for a in out] == [
        ("reminder", "c1", f"s:k1@{due}", due, due + HOUR)]
    assert out[0].message.subject == "Abandoned cart: €25.00" and out[0].locale == "en"
    assert org.automations.triggers.pending() == []


def test_a_purchase_during_the_wait_cancels_the_reminder() -> None:
    _, out = remind_flow([paid(NOW - 2 * HOUR + 45 * MIN, 2500, order="o9")])  # after the abandonment, before due
    assert by(out, "reminder") == []


def test_a_customer_who_bought_in_time_gets_no_reminder() -> None:
    _, out = remind_flow([paid(NOW - 2 * HOUR + 10 * MIN, 2500, order="o9", cart="k1")])  # the cart is bought
    assert by(out, "reminder") == []


def test_a_cart_bought_late_by_a_guest_drops_its_pending_reminder() -> None:
    org = live()
    t = NOW - 70 * MIN  # abandoned at NOW - 40m, reminders due at NOW + 20m
    org.apply_all([add(t), add(t + 1, cart="k2", customer="c2")], NOW)
    org.tick(org.next_wake(NOW) or NOW)  # the carts are abandoned, the reminders pending
    assert len(org.automations.triggers.pending()) == 2
    guest = Event(id="g", kind=Kind.CHECKOUT_COMPLETED, org="o", store="s", time=t + 40 * MIN, cart="k1")
    org.apply_all([guest], NOW)  # recovered: its reminder goes
    assert [p.firing.subject for p in org.automations.triggers.pending()] == ["c2"]


def test_a_carts_activity_arriving_late_all_at_once_reminds_once() -> None:
    """Each late event decides the cart abandoned at once (its due passed long ago): three events, three
    abandonments a minute apart. The later activity replaces the earlier abandonment: one reminder, at the
    last (seen in the demo, whose shoppers coming back hours later made the next day's events arrive late)."""
    t = NOW - 3 * HOUR
    due = t + 2 * MIN + 30 * MIN
    late = [add(t), add(t + MIN), add(t + 2 * MIN)]
    for batches in ([late], [[e] for e in late]):  # in one batch, or one at a time
        org = live()
        org.apply_all([add(NOW, cart="k0", customer="c0")], NOW)  # the watermark is at NOW - 5 min
        out: list[Action] = []
        for batch in batches:
            org.apply_all(batch, NOW)
            out += org.take_actions()
        while (wake := org.next_wake(NOW)) is not None and wake <= NOW + 2 * HOUR:
            org.tick(wake)
            out += org.take_actions()
        assert [(a.cause, a.fired_at, a.due_at) for a in by(out, "reminder") if a.subject == "c1"] == [
            (f"s:k1@{due}", due, due + HOUR)], batches


def test_a_late_cart_whose_visitor_signs_in_midway_is_reminded_once() -> None:
    """The cart's person is its visitor, then the customer who signed in: the earlier abandonment's
    reminder is found by the cart, not by the person, and replaced; and so after a snapshot."""
    t = NOW - 3 * HOUR
    anonymous = Event(id="a-v", kind=Kind.CART_ITEM_ADDED, org="o", store="s", time=t, cart="k1", visitor="v1",
                      currency="EUR", amount=2500, items=(Item("p1", 1, 2500),))
    for restored in (False, True):
        org = live()
        org.apply_all([add(NOW, cart="k0", customer="c0")], NOW)  # the watermark is at NOW - 5 min
        org.apply_all([anonymous], NOW)
        assert [p.firing.subject for p in org.automations.triggers.pending() if p.firing.subject != "c0"] == ["v1"]
        if restored:
            org = pickle.loads(pickle.dumps(org))
        org.apply_all([add(t + MIN, customer="c1")], NOW)
        out: list[Action] = []
        while (wake := org.next_wake(NOW)) is not None and wake <= NOW + 2 * HOUR:
            org.tick(wake)
            out += org.take_actions()
        assert [(a.subject, a.cause) for a in by(out, "reminder") if a.subject != "c0"] == [
            ("c1", f"s:k1@{t + MIN + 30 * MIN}")], restored


def test_the_pending_wait_survives_a_snapshot_and_fires_identically() -> None:
    org = live()
    org.apply_all([add(NOW - 70 * MIN)], NOW)
    org.tick(org.next_wake(NOW) or NOW)
    assert org.take_actions() == [] and len(org.automations.triggers.pending()) == 1
    copy = pickle.loads(pickle.dumps(org))
    copy.automations.define(ORG)
    wake = org.next_wake(NOW)
    assert wake is not None and copy.next_wake(NOW) == wake
    org.tick(wake)
    copy.tick(wake)
    first, second = org.take_actions(), copy.take_actions()
    assert len(first) == 1 and first == second


def test_next_wake_wakes_for_a_pending_action_alone() -> None:
    org = live()
    org.apply_all([add(NOW - 70 * MIN)], NOW)
    org.tick(org.next_wake(NOW) or NOW)
    due = NOW - 70 * MIN + 30 * MIN + HOUR
    cart_due = org.shoppers.carts.next_due()
    assert cart_due is not None and cart_due > due + HOUR  # the cart is decided (its next time is to forget it)
    wake = org.next_wake(NOW)
    assert wake == due + ALLOWED_LATENESS_MS + 1000  # the first whole second the watermark is past the reminder's due
    org.tick(wake - 1000)
    assert org.take_actions() == []
    org.tick(wake)
    assert len(org.take_actions()) == 1


def test_a_quota_crossed_fires_at_80_and_100_percent() -> None:
    org = live()
    org.apply_all([paid(NOW + i, 100, customer=f"c{i}", order=f"o{i}") for i in range(5)], NOW)
    quota = by(org.take_actions(), "quota")
    assert [(a.cause, a.payload["percent"]) for a in quota] == [(f"quota:80@{NOW + 3}", 80), (f"quota:100@{NOW + 4}", 100)]
    assert quota[0].message.subject == "Kontingent zu 80 % genutzt"


def test_a_schedule_fires_at_its_local_times_as_the_watermark_passes_them() -> None:
    org = live()
    org.apply_all([add(NOW, cart="kx")], NOW)  # W = NOW - lateness, Sunday 09:55 Berlin
    monday_8 = NOW + 22 * HOUR  # Monday 08:00 Berlin
    assert org.automations.next_schedule["morning"] == monday_8
    org.apply_all([add(monday_8 + ALLOWED_LATENESS_MS, cart="ky")], NOW + 23 * HOUR)  # W = 08:00: not past it
    assert by(org.take_actions(), "morning") == []
    org.apply_all([add(monday_8 + ALLOWED_LATENESS_MS + 1, cart="kz")], NOW + 23 * HOUR)
    fired = by(org.take_actions(), "morning")
    assert [(a.cause, a.subject, a.fired_at) for a in fired] == [(f"schedule@{monday_8}", "", monday_8)]
    assert org.automations.next_schedule["morning"] == monday_8 + 48 * HOUR  # Wednesday


def test_next_occurrence_keeps_local_time_across_a_dst_change() -> None:
    from core.automations.definition import Schedule

    every_day_at_8 = Schedule(8 * 60, tuple(range(7)))
    before = 1_792_857_600_000  # 2026-10-24 18:00 Berlin (summer time ends on the 25th at 03:00)
    first = next_occurrence(every_day_at_8, before, "Europe/Berlin")
    assert first == 1_792_911_600_000  # 2026-10-25 08:00 CET = 07:00 UTC
    assert next_occurrence(every_day_at_8, first, "Europe/Berlin") - first == 24 * HOUR
    assert first - next_occurrence(every_day_at_8, before - 12 * HOUR, "Europe/Berlin") == 25 * HOUR  # the long day


@pytest.mark.parametrize(("extra", "error"), [
    ('[orgs.o.automations.x]\ntrigger = "order.paid"\nsend = ["nowhere"]\n',
     "orgs.o.automations.x.send: no channel 'nowhere': define [orgs.o.channels.nowhere]"),
    ('[orgs.o.automations.x]\ntrigger = "order.paid"\nsend = ["ops"]\nwait = "2 days"\n',
     "orgs.o.automations.x.wait: '2 days' is not a duration"),
    ('[orgs.o.automations.x]\ntrigger = "order.paid"\nsend = ["ops"]\nif = { spent = { gte = "ten" } }\n',
     "orgs.o.automations.x.if.spent.gte: \"ten\" is not an amount"),
])
def test_a_bad_automation_stops_the_config_with_the_key_named(extra: str, error: str) -> None:
    from core.config import ConfigError

    text = ('[orgs.o]\ncurrency = "EUR"\ntoken = "token-0123456789abcdef"\n'
            '[orgs.o.channels.ops]\nkind = "slack"\nurl = "https://hooks.slack.example/ops"\n' + extra)
    with pytest.raises(ConfigError) as err:
        parse_config(text, {})
    assert str(err.value).startswith(error)


def test_definitions_from_control_events_stay_over_the_config_across_a_restart() -> None:
    org = live()
    book = org.automations
    book.put("tiny-order", {"trigger": "order.paid", "if": {"order_value": {"lt": "10.00"}}, "send": ["ops"]})
    book.delete("big-order")
    book.put("broken", {"trigger": "order.payed", "send": ["ops"]})  # refused by the API before the log: ignored
    assert "broken" not in book.automations
    copy = pickle.loads(pickle.dumps(org))
    copy.automations.define(ORG)  # a restart with the same config
    for o in (org, copy):
        o.apply_all([paid(NOW, 500, order="small"), paid(NOW, 50_000, customer="c2", order="large")], NOW)
        assert sorted({(a.automation, a.subject) for a in o.take_actions()}) == [("tiny-order", "c1")]
    copy.automations.put("big-order", {"trigger": "order.paid", "send": ["crm"]})  # defined again
    copy.apply_all([paid(NOW, 50_000, customer="c3", order="again")], NOW)
    assert [(a.automation, a.channel) for a in copy.take_actions()] == [("big-order", "crm")]


def test_segment_entries_fire_from_the_segments_books_change_records() -> None:
    from core.changes import Record
    from core.segment_records import SegmentChange
    from flows.automations import AutomationBook

    org = parse_config(CONFIG_TEXT + """
[orgs.o.automations.vip]
trigger = "segment.entered"
segment = "vip"
send = ["crm"]
""", {}).orgs["o"]
    book = AutomationBook.new(org)

    def change(customer: str, segment: str, what: str, cause: str) -> Record:
        return Record("o", 1, "segment_change", f"{segment}|{customer}", segment,
                      SegmentChange(segment, customer, what, NOW, cause))

    withdrawn = Record("o", 1, "segment_change", "vip|c5", "vip", SegmentChange("vip", "c5", "entered", NOW, "e5", True))
    book.records([change("c1", "vip", "entered", "e1"), change("c2", "vip", "exited", "e2"),
                  change("c3", "other", "entered", "e3"), change("c4", "vip", "entered", "defined"), withdrawn], NOW)
    actions = book.take()
    assert [(a.subject, a.cause, a.message.subject) for a in actions] == [
        ("c1", f"vip:e1@{NOW}", "c1 ist jetzt in vip")]


def test_an_order_in_another_currency_without_a_rate_fires_no_conditional_automation_and_folds() -> None:
    org = live()
    usd = Event(id="usd", kind=Kind.ORDER_PAID, org="o", store="s", time=NOW, amount=50_000, currency="USD",
                customer="c1", order="o-usd", items=(Item("p1", 1, 50_000),))
    out = org.apply_all([usd], NOW)
    assert out, "the order is folded into the figures"
    assert by(org.take_actions(), "big-order") == []  # no USD->EUR rate in the dataflow: the condition does not hold


def test_an_order_in_another_currency_is_converted_at_its_days_rate_with_the_dataflows_rates() -> None:
    rates = parse_ecb_csv("Date,USD,\n2026-11-20,1.2500,\n")  # the latest rate before the order's day
    usd = [Event(id=f"usd{n}", kind=Kind.ORDER_PAID, org="o", store="s", time=NOW + n, amount=amount, currency="USD",
                 customer=f"c{n}", order=f"o-usd{n}", items=(Item("p1", 1, amount),)) for n, amount in ((1, 50_000), (2, 12_400))]
    org = live().use_rates(rates)
    org.apply_all(usd, NOW + 10)
    # 500.00 USD is 400.00 EUR (over the 100.00 of `if`); 124.00 USD is 99.20 EUR (under)
    assert sorted((a.subject, a.channel) for a in by(org.take_actions(), "big-order")) == [("c1", "crm"), ("c1", "ops")]


def test_if_on_a_segment_entry_reads_the_customers_facts_as_the_segment_decided_on_them() -> None:
    org_config = parse_config(CONFIG_TEXT + """
[orgs.o.segments.vip]
name = "VIP"
rule = { spent = { gte = "200.00" } }
[orgs.o.automations.vip-repeat]
trigger = "segment.entered"
segment = "vip"
if = { orders = { gte = 2 } }
send = ["crm"]
""", {}).orgs["o"]
    org = Organisation.new(org_config)
    org.arm(NOW)
    # c1 enters with one big order (the condition does not hold); c2 with its second order (it does),
    # in one batch, with c1's second order after it: each entry is judged on the facts it was decided on
    org.apply_all([paid(NOW, 25_000, customer="c1", order="o1"), paid(NOW + MIN, 15_000, customer="c2", order="o2"),
                   paid(NOW + 2 * MIN, 6_000, customer="c2", order="o3"), paid(NOW + 3 * MIN, 1_000, customer="c1", order="o4")],
                  NOW + 4 * MIN)
    assert [a.subject for a in by(org.take_actions(), "vip-repeat")] == ["c2"]
    assert org.segments.change_facts == {}  # kept for one batch only


def vip_welcome(templates: str = "") -> Organisation:
    """The organisation with a VIP segment (200.00 spent) and an automation on entering it, armed at NOW."""
    org = Organisation.new(parse_config(CONFIG_TEXT + """
[orgs.o.segments.vip]
name = "VIP"
rule = { spent = { gte = "200.00" } }
[orgs.o.automations.vip-welcome]
trigger = "segment.entered"
segment = "vip"
send = ["crm"]
""" + templates, {}).orgs["o"])
    org.arm(NOW)
    return org


def test_a_customer_entering_a_live_segment_fires_its_automation() -> None:
    org = vip_welcome()
    org.apply_all([paid(NOW, 15_000, customer="c1", order="o1")], NOW)
    assert by(org.take_actions(), "vip-welcome") == []  # 150.00 spent: not yet
    org.apply_all([paid(NOW + MIN, 6_000, customer="c1", order="o2")], NOW)  # 210.00: enters
    [action] = by(org.take_actions(), "vip-welcome")
    assert (action.subject, action.trigger, action.payload["segment"], action.fired_at) == ("c1", "segment.entered", "vip",
                                                                                          NOW + MIN)
    assert action.message.subject == "c1 ist jetzt in vip"


def test_a_segment_entry_carries_the_customers_address_and_name_for_a_mail_to_them() -> None:
    """A "welcome to VIP" e-mail goes to the customer: the action's payload has the profile's e-mail address
    (where an e-mail channel to "customer" sends it: notifier/mail.py recipients) and their name."""
    org = vip_welcome('templates = { subject = "Willkommen, {{ name }}" }\n')
    created = Event(id="reg-c1", kind=Kind.CUSTOMER_CREATED, org="o", store="s", time=NOW - MIN, customer="c1",
                    attrs={"email": "ann@example.com", "name": "Ann Example"})
    org.apply_all([created, paid(NOW, 25_000, customer="c1", order="o1"), paid(NOW, 25_000, customer="c2", order="o2")], NOW)
    actions = sorted(by(org.take_actions(), "vip-welcome"), key=lambda a: a.subject)
    assert [(a.subject, a.payload.get("email"), a.payload.get("name"), a.message.subject) for a in actions] == [
        ("c1", "ann@example.com", "Ann Example", "Willkommen, Ann Example"), ("c2", None, None, "Willkommen,")]
