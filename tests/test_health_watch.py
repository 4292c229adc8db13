"""Pipeline-health alerts (notifier/health_watch.py) over real SQLite stores, a clock passed in; and through
`storepulse up`: a burst of wrongly signed Stripe deliveries reaches a webhook receiver as one alert."""

from __future__ import annotations

import time
from pathlib import Path

from core.config import parse_config
from core.health import Check, Problem
from notifier.actions import action_key
from notifier.health_watch import HealthWatch, words
from notifier.sqlite_outbox import SqliteOutbox
from state.connections import StoreActivity
from state.redis_log import RedisLogReader
from state.rejected import RejectedDelivery
from state.sqlite_connections import SqliteConnectionStats
from state.sqlite_rejected import SqliteRejectedStore
from tests.helpers import SECRETS, RedisServer, Storepulse, payment_intent_succeeded, wait_for
from tests.receivers import Receiver

NOW = 1_800_000_000.0
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONFIG = """
[orgs.acme]
timezone = "Europe/Berlin"
currency = "EUR"
token = "acme-token-0123456789"
locale = "de"
[orgs.acme.stores.shop]
provider = "events"
secret = "k"
[orgs.acme.channels.ops]
kind = "webhook"
url = "http://127.0.0.1:9/hook"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
allow_private = true
[orgs.acme.automations.pipeline]
trigger = "health"
send = ["ops"]
"""


def watch(tmp: Path, clock: list[float]) -> HealthWatch:
    config = parse_config(CONFIG, {})
    return HealthWatch(config, SqliteOutbox(tmp / "outbox.sqlite3"), SqliteConnectionStats(tmp / "connections.sqlite3"),
                       SqliteRejectedStore(tmp / "rejected.sqlite3"), clock=lambda: clock[0])


def test_a_silent_store_alerts_once_when_it_falls_silent_and_once_when_it_sends_again(tmp_path: Path) -> None:
    clock = [NOW]
    w = watch(tmp_path, clock)
    minute = int(NOW // 60)
    w.stats.record([StoreActivity("shop", {minute - 40 - 5 * i: 2 for i in range(100)}, 1, (minute - 40) * 60)])
    assert w.check_once() == 1  # usual gap 5 minutes: silent after 30 (the floor); it has been 40
    [alert] = w.outbox.list("acme")
    a = alert.action
    assert (a.automation, a.channel, a.trigger, a.payload["check"], a.payload["state"]) == (
        "pipeline", "ops", "health", "store_silent", "opened")
    assert a.message.subject == "Shop shop hat seit 40 Minuten nichts gesendet (sonst etwa alle 5 Minuten)"
    clock[0] += 60
    assert w.check_once() == 0  # still silent: said once
    # another watcher (a second notifier, or this one restarted) puts the same alert: the outbox keeps one
    other = watch(tmp_path, clock)
    assert other.check_once() == 1 and len(w.outbox.list("acme")) == 1
    w.stats.record([StoreActivity("shop", {int(clock[0] // 60): 1}, 1, clock[0])])
    clock[0] += 60
    assert w.check_once() == 1
    resolved = [d.action for d in w.outbox.list("acme") if d.action.payload["state"] == "resolved"]
    assert [r.message.subject for r in resolved] == ["Shop shop sendet wieder"]
    assert resolved[0].key == action_key("pipeline", "", f"store_silent:shop:since {int((minute - 40) * 60)}:resolved")


def test_a_burst_of_rejected_deliveries_and_dead_letters_are_alerts(tmp_path: Path) -> None:
    clock = [NOW]
    w = watch(tmp_path, clock)
    for i in range(10):
        w.rejected.add(RejectedDelivery(f"r{i}", NOW - 60 + i, "events", "shop", "acme", 401, "signature mismatch", {}, b""))
    assert w.check_once() == 1
    [alert] = w.outbox.list("acme")
    assert alert.action.payload == {"check": "deliveries_rejected", "subject": "shop", "state": "opened", "count": 10,
                                    "reason": "signature mismatch", "first": int((NOW - 60) // 60)}
    w.outbox.disable_channel("acme", "crm", "410 Gone from the receiver", int(NOW * 1000))
    assert w.check_once() == 1
    disabled = [d.action for d in w.outbox.list("acme") if d.action.payload["check"] == "channel_disabled"]
    assert [a.message.subject for a in disabled] == ["Kanal crm ist deaktiviert: 410 Gone from the receiver"]
    assert words(Problem(Check.DEAD_LETTERS, "ops", (("dead", 10),)), True, "en") == (
        "10 deliveries to channel ops are dead: replay them from the delivery log")
    assert words(Problem(Check.STORE_SILENT, "s", (("silent_s", 7200), ("usual_gap_s", 90))), True, "fr").replace(
        "\u00a0", " ") == (
        "La boutique s n’a rien envoyé depuis 2 heures (d’habitude, quelque chose toutes les 2 minutes)")


def test_the_event_log_going_down_is_one_alert_and_coming_back_another(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")  # the distributed log: a real redis-server, stopped and started
    reader = RedisLogReader(server.url)
    clock = [NOW]
    w = watch(tmp_path, clock)
    w.log_probe = lambda: reader.read(0, None, 1)
    try:
        assert w.check_once() == 0
        server.stop()
        assert w.check_once() == 1
        clock[0] += 120
        assert w.check_once() == 0  # still down: said once
        [alert] = w.outbox.list("acme")
        assert (alert.action.payload["check"], alert.action.payload["state"], alert.action.payload["for_s"]) == (
            "log_unavailable", "opened", 0)
        assert alert.action.message.subject == ("Das Ereignisprotokoll ist seit 0 Sekunden nicht erreichbar: "
                                                "Zustellungen der Shops werden abgelehnt (503) und erneut versucht")
        server.start()
        clock[0] += 60
        assert w.check_once() == 1
        resolved = [d.action for d in w.outbox.list("acme") if d.action.payload["state"] == "resolved"]
        assert [r.message.subject for r in resolved] == ["Das Ereignisprotokoll ist wieder erreichbar"]
        assert resolved[0].payload["for_s"] == 120
        assert resolved[0].key == action_key("pipeline", "", f"log_unavailable::since {int(NOW // 60)}:resolved")
    finally:
        reader.close()
        server.stop()


def test_wrongly_signed_stripe_deliveries_reach_a_receiver_as_one_health_alert(tmp_path: Path) -> None:
    receiver = Receiver(secret=WHSEC)
    config = f"""
[orgs.acme]
timezone = "Europe/Berlin"
currency = "EUR"
token = "acme-token-0123456789"
[orgs.acme.stores.acme-stripe]
provider = "stripe"
secret = "{SECRETS['acme-stripe']}"
[orgs.acme.channels.ops]
kind = "webhook"
url = "{receiver.url}"
secret = "{WHSEC}"
allow_private = true
[orgs.acme.automations.pipeline]
trigger = "health"
send = ["ops"]
"""
    sp = Storepulse(tmp_path, config=config)
    sp.extra_args = ["--health-interval", "1"]
    try:
        sp.start()
        for i in range(10):  # a rotated secret: every delivery signed with the old one
            body = payment_intent_succeeded(f"evt_old_{i}", f"pi_old_{i}", 1000)
            assert sp.post_stripe("acme-stripe", body, secret="whsec_the_old_one").status_code == 400
        wait_for(lambda: receiver.delivered_ids(), 30, "the health alert")
        time.sleep(2)  # two more looks: still one alert
        [body] = receiver.json_bodies()
        assert (body["data"]["check"], body["data"]["subject"], body["data"]["state"], body["data"]["count"]) == (
            "deliveries_rejected", "acme-stripe", "opened", 10)
        assert body["data"]["title"].startswith("10 deliveries from store acme-stripe rejected in 10 minutes (")
        assert len(receiver.delivered_ids()) == 1
    finally:
        sp.ensure_stopped()
        receiver.close()
