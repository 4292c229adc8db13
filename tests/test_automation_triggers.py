"""The pure trigger logic (core/automations/trigger.py): what fires now, what waits, what cancel_on drops,
once and cooldown, `if` at the firing and again at due; and that a replay decides identically."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.automations.definition import Automation, DefinitionError, parse_automation
from core.automations.trigger import Firing, Released, Triggers
from core.rules import Context, CustomerFacts, Entry

pytestmark = pytest.mark.unit

MIN, HOUR = 60_000, 3_600_000
T0 = 1_796_000_000_000  # a fixed instant: 2026-11-30
CTX = Context("Europe/Berlin", "EUR")


def auto(id_: str = "a", **table: Any) -> Automation:
    return parse_automation(id_, {"trigger": "order.paid", "send": ["ops"], **table}, f"orgs.o.automations.{id_}",
                            currency="EUR", timezone="Europe/Berlin")


def order(subject: str, at: int, amount: int = 10_000, cause: str | None = None) -> Firing:
    facts = CustomerFacts(first_seen=at, last_active=at, orders=(Entry(at, "EUR", amount, 1, ("p1",)),))
    return Firing("order.paid", subject, cause or f"e-{subject}-{at}", at, {"amount": amount}, facts)


def fired(out: list[Released]) -> list[tuple[str, str, str, int]]:
    return [(r.automation, r.firing.subject, r.firing.cause, r.due) for r in out]


def test_an_automation_without_wait_fires_at_once_when_its_condition_holds() -> None:
    defs = {"big": auto("big", **{"if": {"order_value": {"gte": "100.00"}}})}
    t = Triggers()
    assert fired(t.fire(defs, order("c1", T0, 10_000), CTX)) == [("big", "c1", f"e-c1-{T0}", T0)]
    assert t.fire(defs, order("c2", T0, 9_999), CTX) == []  # 99.99 < 100.00
    assert t.fire(defs, Firing("order.refunded", "c1", "r", T0), CTX) == []  # another trigger
    assert t.next_due() is None and t.pending() == []


def test_a_wait_holds_the_action_until_the_watermark_passes_its_due() -> None:
    defs = {"w": auto("w", wait="4h")}
    t = Triggers()
    assert t.fire(defs, order("c1", T0), CTX) == []
    due = T0 + 4 * HOUR
    assert t.next_due() == due
    assert t.advance(defs, due, CTX) == []  # W == due: not past it
    assert fired(t.advance(defs, due + 1, CTX)) == [("w", "c1", f"e-c1-{T0}", due)]
    assert t.next_due() is None and t.advance(defs, due + HOUR, CTX) == []


def test_the_same_firing_twice_is_pending_once() -> None:
    defs = {"w": auto("w", wait="1h")}
    t = Triggers()
    t.fire(defs, order("c1", T0, cause="e1"), CTX)
    t.fire(defs, order("c1", T0, cause="e1"), CTX)
    assert len(t.pending()) == 1


@pytest.mark.parametrize(("kind", "subject", "at", "cancelled"), [
    ("order.paid", "c1", T0 + HOUR, True),  # during the wait
    ("order.paid", "c1", T0, True),  # at the firing itself
    ("order.paid", "c1", T0 - 1, False),  # before the firing: it did not follow it
    ("order.paid", "c1", T0 + 4 * HOUR, False),  # at due: too late to stop it
    ("order.paid", "c2", T0 + HOUR, False),  # another customer
    ("order.refunded", "c1", T0 + HOUR, False),  # a kind it does not cancel on
])
def test_cancel_on_drops_a_pending_action_only_for_the_subject_during_the_wait(
        kind: str, subject: str, at: int, cancelled: bool) -> None:
    defs = {"r": auto("r", trigger="cart.abandoned", wait="4h", cancel_on=["order.paid"])}
    t = Triggers()
    t.fire(defs, Firing("cart.abandoned", "c1", "s:k1@1", T0), CTX)
    dropped = t.cancel(defs, kind, subject, at)
    assert bool(dropped) is cancelled
    assert bool(t.advance(defs, T0 + 5 * HOUR, CTX)) is not cancelled


def test_a_bought_cart_drops_its_pending_reminder_by_cause() -> None:
    defs = {"r": auto("r", trigger="cart.abandoned", wait="4h")}
    t = Triggers()
    t.fire(defs, Firing("cart.abandoned", "c1", "s:k1@1", T0), CTX)
    t.fire(defs, Firing("cart.abandoned", "c1", "s:k2@1", T0), CTX)
    assert fired(t.drop("cart.abandoned", "s:k1@1")) == [("r", "c1", "s:k1@1", T0 + 4 * HOUR)]
    assert fired(t.advance(defs, T0 + 5 * HOUR, CTX)) == [("r", "c1", "s:k2@1", T0 + 4 * HOUR)]


def test_if_is_checked_again_when_the_wait_is_over() -> None:
    # "active within the last hour": true when the order fires, false two hours later at due.
    defs = {"w": auto("w", wait="2h", **{"if": {"last_active_at": {"after": "1h"}}})}
    t = Triggers()
    t.fire(defs, order("c1", T0), CTX)
    assert t.next_due() == T0 + 2 * HOUR
    assert t.advance(defs, T0 + 3 * HOUR, CTX) == []  # dropped: the condition no longer holds
    assert t.pending() == []
    defs = {"w": auto("w", wait="30m", **{"if": {"last_active_at": {"after": "1h"}}})}
    t.fire(defs, order("c1", T0), CTX)
    assert len(t.advance(defs, T0 + HOUR, CTX)) == 1


def test_once_fires_once_per_subject_for_ever() -> None:
    defs = {"o": auto("o", once=True)}
    t = Triggers()
    assert len(t.fire(defs, order("c1", T0), CTX)) == 1
    assert t.fire(defs, order("c1", T0 + 400 * 24 * HOUR), CTX) == []
    t.advance(defs, T0 + 500 * 24 * HOUR, CTX)  # no forgetting for once
    assert t.fire(defs, order("c1", T0 + 501 * 24 * HOUR), CTX) == []
    assert len(t.fire(defs, order("c2", T0), CTX)) == 1


def test_once_with_a_wait_does_not_queue_a_second_while_one_is_pending() -> None:
    defs = {"o": auto("o", once=True, wait="1h")}
    t = Triggers()
    t.fire(defs, order("c1", T0), CTX)
    t.fire(defs, order("c1", T0 + MIN), CTX)
    assert len(t.pending()) == 1
    assert len(t.advance(defs, T0 + 2 * HOUR, CTX)) == 1
    t.fire(defs, order("c1", T0 + 3 * HOUR), CTX)
    assert t.pending() == []


def test_once_is_free_again_after_a_pending_one_was_cancelled() -> None:
    defs = {"o": auto("o", once=True, wait="1h", cancel_on=["order.paid"])}
    t = Triggers()
    t.fire(defs, order("c1", T0), CTX)
    t.cancel(defs, "order.paid", "c1", T0 + MIN)
    t.fire(defs, order("c1", T0 + 2 * MIN), CTX)
    assert len(t.advance(defs, T0 + 2 * HOUR, CTX)) == 1


def test_cooldown_holds_back_firings_within_it_by_fired_time() -> None:
    defs = {"c": auto("c", cooldown="24h")}
    t = Triggers()
    assert len(t.fire(defs, order("c1", T0), CTX)) == 1
    assert t.fire(defs, order("c1", T0 + 24 * HOUR - 1), CTX) == []
    assert len(t.fire(defs, order("c2", T0 + HOUR), CTX)) == 1
    assert len(t.fire(defs, order("c1", T0 + 24 * HOUR), CTX)) == 1
    t.advance(defs, T0 + 50 * HOUR, CTX)  # both cooldowns over: forgotten
    assert t.held()["last_sent"] == 0


def test_segment_triggers_match_their_segment_only() -> None:
    defs = {"s": parse_automation("s", {"trigger": "segment.entered", "segment": "vip", "send": ["ops"]}, "x",
                                  currency="EUR", timezone="UTC")}
    t = Triggers()
    assert t.fire(defs, Firing("segment.entered", "c1", "x", T0, segment="other"), CTX) == []
    assert len(t.fire(defs, Firing("segment.entered", "c1", "x", T0, segment="vip"), CTX)) == 1
    assert t.fire(defs, Firing("segment.exited", "c1", "x", T0, segment="vip"), CTX) == []


@pytest.mark.parametrize(("table", "path", "words"), [
    ({"send": ["ops"]}, "orgs.o.automations.a.trigger", "missing"),
    ({"trigger": "order.payed", "send": ["ops"]}, "orgs.o.automations.a.trigger", "is not a trigger"),
    ({"trigger": "order.paid"}, "orgs.o.automations.a.send", "channel ids"),
    ({"trigger": "order.paid", "send": ["ops"], "wait": "4 hours"}, "orgs.o.automations.a.wait", "not a duration"),
    ({"trigger": "order.paid", "send": ["ops"], "cancel_on": ["order.paid"]}, "orgs.o.automations.a.cancel_on", "wait"),
    ({"trigger": "order.paid", "send": ["ops"], "wait": "1h", "cancel_on": ["paid"]}, "orgs.o.automations.a.cancel_on",
     "event kinds"),
    ({"trigger": "order.paid", "send": ["ops"], "once": True, "cooldown": "1d"}, "orgs.o.automations.a.once", "not both"),
    ({"trigger": "order.paid", "send": ["ops"], "locale": "pt"}, "orgs.o.automations.a.locale", "not one of"),
    ({"trigger": "segment.entered", "send": ["ops"]}, "orgs.o.automations.a.segment", "segment's id"),
    ({"trigger": "order.paid", "segment": "x", "send": ["ops"]}, "orgs.o.automations.a.segment", "only for"),
    ({"trigger": "schedule", "send": ["ops"], "schedule": {"at": "25:00"}}, "orgs.o.automations.a.schedule.at",
     "HH:MM"),
    ({"trigger": "schedule", "send": ["ops"], "schedule": {"at": "08:00", "days": ["mo"]}},
     "orgs.o.automations.a.schedule.days", "non-empty list"),
    ({"trigger": "order.paid", "send": ["ops"], "if": {"all": [{"order_value": {"gte": "1.001"}}]}},
     "orgs.o.automations.a.if.all[0].order_value.gte", "decimals"),
    ({"trigger": "order.paid", "send": ["ops"], "templates": {"subject": "{{ oops"}},
     "orgs.o.automations.a.templates.subject", "template line 1"),
    ({"trigger": "order.paid", "send": ["ops"], "templates": {"sms": "x"}}, "orgs.o.automations.a.templates.sms",
     "unknown message part"),
    ({"trigger": "order.paid", "send": ["ops"], "iff": {}}, "orgs.o.automations.a.iff", "unknown key"),
])
def test_a_bad_definition_names_the_key_path(table: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(DefinitionError) as err:
        parse_automation("a", table, "orgs.o.automations.a", currency="EUR", timezone="UTC")
    assert err.value.path == path and words in err.value.problem


def test_a_definition_round_trips_through_its_json() -> None:
    table = {"trigger": "cart.abandoned", "send": ["crm", "ops"], "if": {"open_cart_value": {"gte": "50.00"}},
             "wait": "4h", "cancel_on": ["checkout.completed", "order.paid"], "cooldown": "1d", "locale": "de",
             "templates": {"subject": "Hallo {{ customer }}"}}
    a = auto("r", **table)
    assert a.to_json() == table
    assert auto("r", **a.to_json()) == a


# --- properties over random histories ----------------------------------------------------------------

SUBJECTS = ("c1", "c2", "c3")
Op = tuple[str, str, int]  # ("fire" | "cancel", subject, minutes after T0)


@st.composite
def histories(draw: st.DrawFn) -> tuple[dict[str, Any], list[Op]]:
    table: dict[str, Any] = {}
    if draw(st.booleans()):
        table["wait"] = f"{draw(st.integers(1, 120))}m"
        if draw(st.booleans()):
            table["cancel_on"] = ["order.refunded"]
    limit = draw(st.sampled_from(["none", "once", "cooldown"]))
    if limit == "once":
        table["once"] = True
    elif limit == "cooldown":
        table["cooldown"] = f"{draw(st.integers(1, 180))}m"
    ops = draw(st.lists(st.tuples(st.sampled_from(["fire", "cancel"]), st.sampled_from(SUBJECTS),
                                  st.integers(0, 600)), max_size=40))
    return table, sorted(ops, key=lambda o: o[2])


def run(table: dict[str, Any], ops: list[Op]) -> tuple[list[Released], list[tuple[str, int]]]:
    """Feeds the history in time order with the watermark at each op's time; returns what was released
    and the cancel events."""
    defs = {"a": auto("a", **table)}
    t, out, cancels = Triggers(), [], []
    for kind, subject, minute in ops:
        at = T0 + minute * MIN
        out += t.advance(defs, at, CTX)
        if kind == "fire":
            out += t.fire(defs, order(subject, at, cause=f"{subject}@{minute}"), CTX)
        else:
            cancels.append((subject, at))
            t.cancel(defs, "order.refunded", subject, at)
    out += t.advance(defs, T0 + 10_000 * MIN, CTX)
    return out, cancels


@settings(max_examples=300, deadline=None)
@given(histories())
def test_releases_obey_once_cooldown_and_cancel_and_a_replay_decides_alike(history: tuple[dict[str, Any], list[Op]]) -> None:
    table, ops = history
    out, cancels = run(table, ops)
    assert fired(out) == fired(run(table, ops)[0])  # deterministic: a replay releases the same actions
    a = auto("a", **table)
    for subject in SUBJECTS:
        times = sorted(r.firing.at for r in out if r.firing.subject == subject)
        if a.once:
            assert len(times) <= 1
        if a.cooldown_ms:
            assert all(b - x >= a.cooldown_ms for x, b in zip(times, times[1:], strict=False))
        fires = [T0 + m * MIN for k, s, m in ops if k == "fire" and s == subject]
        if not a.once and not a.cooldown_ms:
            released = {r.firing.cause for r in out if r.firing.subject == subject}  # a repeat has the same key
            assert len(released) == len(set(fires)) - sum(  # each firing released unless cancelled during its wait
                1 for f in set(fires) if a.cancel_on and any(s == subject and f <= c < f + a.wait_ms for s, c in cancels))
    for r in out:
        assert r.due == r.firing.at + a.wait_ms
        if a.cancel_on:
            assert not any(s == r.firing.subject and r.firing.at <= c < r.due for s, c in cancels)
