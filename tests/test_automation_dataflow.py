"""The automations through the real Bytewax dataflow (flows/dataflow.py build_flow, a SQLite event log,
Bytewax recovery): the actions reach the outbox output; a payment reported twice and a whole replay
of the log after the recovery state is lost put the same keys again, so an idempotent outbox holds each
action once; an abandoned cart's reminder is released by the wall clock and a purchase cancels it.

The outbox here is a small in-memory one with the notifier's contract (put is idempotent by (key,
channel)): the notifier's SQLite and Redis outboxes are tested on their own (notifier branch)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Sequence
from pathlib import Path

from bytewax.recovery import RecoveryConfig
from bytewax.testing import run_main
from prometheus_client import REGISTRY

from core.changes import Change
from core.config import parse_config
from core.events import Event, Item, Kind
from flows.dataflow import build_flow
from flows.recovery import ensure_recovery_dir
from notifier.actions import Action, action_key
from state.sqlite_log import SqliteEventLog, SqliteLogReader

PARTITIONS = 2
MIN, HOUR = 60_000, 3_600_000
NOW = 1_795_338_000_000  # the wall clock these runs are given: 2026-11-22 10:00 Berlin
CONFIG = parse_config("""
[orgs.o]
timezone = "Europe/Berlin"
currency = "EUR"
token = "token-0123456789abcdef"
abandon_after = 30
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
send = ["mail"]
[orgs.o.channels.ops]
kind = "slack"
url = "https://hooks.slack.example/ops"

[orgs.o.channels.crm]
kind = "slack"
url = "https://hooks.slack.example/crm"

[orgs.o.channels.mail]
kind = "slack"
url = "https://hooks.slack.example/mail"
""", {})


class MemoryOutbox:
    """The notifier's Outbox.put contract in memory: one delivery per (key, channel)."""

    deliveries: dict[tuple[str, str], Action] = {}
    puts = 0

    def put(self, actions: Sequence[Action], now: int) -> int:
        new = 0
        for a in actions:
            MemoryOutbox.puts += 1
            if (a.key, a.channel) not in MemoryOutbox.deliveries:
                MemoryOutbox.deliveries[(a.key, a.channel)] = a
                new += 1
        return new

    def close(self) -> None:
        pass


class NoModel:
    def write(self, changes: Sequence[Change]) -> None:
        pass

    def caught_up(self, at: dict[str, int]) -> None:
        pass

    def close(self) -> None:
        pass


def paid(id_: str, t: int, amount: int, order: str, customer: str) -> Event:
    return Event(id=id_, kind=Kind.ORDER_PAID, org="o", store="s", time=t, amount=amount, currency="EUR",
                 order=order, customer=customer, items=(Item("p1", 1, amount),))


def cart(cart_id: str, t: int, customer: str) -> Event:
    return Event(id=f"a-{cart_id}", kind=Kind.CART_ITEM_ADDED, org="o", store="s", time=t, cart=cart_id,
                 customer=customer, currency="EUR", amount=2500, items=(Item("p1", 1, 2500),))


EVENTS = [
    cart("k1", NOW - 3 * HOUR, "c1"),  # abandoned at NOW - 2h30, reminded at NOW - 1h30
    cart("k2", NOW - 3 * HOUR, "c2"),  # abandoned too, but c2 buys during the wait: no reminder
    paid("pay-1", NOW - 2 * HOUR, 25_000, "o1", "c4"),  # a big order...
    paid("pay-1-charge", NOW - 2 * HOUR + 1, 25_000, "o1", "c4"),  # ...reported twice (another event id)
    paid("pay-2", NOW - 2 * HOUR, 9_000, "o2", "c2"),  # under the threshold; cancels c2's reminder
    cart("k3", NOW - 20 * MIN, "c3"),  # still open at NOW: nothing yet
]


def run(tmp_path: Path) -> None:
    ensure_recovery_dir(tmp_path / "recovery", 1)
    flow = build_flow(CONFIG, lambda: SqliteLogReader(tmp_path / "log.sqlite3", PARTITIONS), NoModel, PARTITIONS,
                      until_caught_up=True, files_dir=tmp_path / "recovery" / "segments", clock=lambda: NOW,
                      open_outbox=MemoryOutbox)
    run_main(flow, recovery_config=RecoveryConfig(str(tmp_path / "recovery")))


def test_actions_reach_the_outbox_once_even_when_the_log_is_replayed(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite3", PARTITIONS)
    log.append_sync(EVENTS + EVENTS[2:3])  # a webhook redelivered: the log drops the copy
    asyncio.run(log.close())
    MemoryOutbox.deliveries, MemoryOutbox.puts = {}, 0
    before = REGISTRY.get_sample_value("storepulse_flow_actions_total", {"trigger": "cart.abandoned"}) or 0
    run(tmp_path)
    assert REGISTRY.get_sample_value("storepulse_flow_actions_total", {"trigger": "cart.abandoned"}) == before + 1
    big = action_key("big-order", "c4", "order.paid:s:o1")
    reminder = action_key("reminder", "c1", f"s:k1@{NOW - 3 * HOUR + 30 * MIN}")
    assert sorted(MemoryOutbox.deliveries) == sorted([(big, "ops"), (big, "crm"), (reminder, "mail")])
    sent = MemoryOutbox.deliveries[(reminder, "mail")]
    assert (sent.fired_at, sent.due_at, sent.subject) == (NOW - 3 * HOUR + 30 * MIN, NOW - 3 * HOUR + 90 * MIN, "c1")
    assert sent.message.subject == "Abandoned cart: €25.00"
    first = dict(MemoryOutbox.deliveries)
    # The recovery state lost (as after a crash before the first snapshot): the whole log is folded
    # again, the same actions are put again with the same keys, and the outbox still holds each once.
    shutil.rmtree(tmp_path / "recovery")
    puts = MemoryOutbox.puts
    run(tmp_path)
    assert MemoryOutbox.puts > puts, "the replay put the actions again"
    assert MemoryOutbox.deliveries == first


def test_a_restart_from_the_snapshot_releases_a_pending_reminder_once(tmp_path: Path) -> None:
    log = SqliteEventLog(tmp_path / "log.sqlite3", PARTITIONS)
    log.append_sync([cart("k9", NOW - 70 * MIN, "c9")])  # abandoned at NOW - 40m; reminder due NOW + 20m
    asyncio.run(log.close())
    MemoryOutbox.deliveries, MemoryOutbox.puts = {}, 0
    run(tmp_path)
    assert MemoryOutbox.deliveries == {}  # pending, in the snapshot
    log = SqliteEventLog(tmp_path / "log.sqlite3", PARTITIONS)
    log.append_sync([cart("k10", NOW + 30 * MIN, "c10")])  # an event later than the due moves the watermark past it
    asyncio.run(log.close())
    run(tmp_path)  # resumes from the snapshot: the pending reminder came back with it
    assert [(a.automation, a.subject) for a in MemoryOutbox.deliveries.values()] == [("reminder", "c9")]
