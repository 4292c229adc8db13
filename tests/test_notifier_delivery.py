"""Delivery through the real path: the notifier (in-process) over a real outbox (SQLite file, real
redis-server) to real receivers: an HTTP server verifying signatures with `standardwebhooks`, a
local fake Slack, and an aiosmtpd SMTP server. Actions are put into the outbox directly."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from core.config import Config, parse_config
from notifier.actions import Action, Message, action_key, delivery_id
from notifier.outbox import Attempt, Delivery, Outbox, Status
from notifier.redis_outbox import RedisOutbox
from notifier.sqlite_outbox import SqliteOutbox
from notifier.worker import Notifier, Tuning, wall_ms
from tests.helpers import RedisServer
from tests.receivers import Receiver, SmtpServer

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
HEAD = '[orgs.acme]\ncurrency = "EUR"\ntoken = "acme-token-0123456789"\n'


def channel(name: str, kind: str, url: str = "", extra: str = "", private: bool = True) -> str:
    lines = [f"[orgs.acme.channels.{name}]", f'kind = "{kind}"', f"allow_private = {'true' if private else 'false'}"]
    if url:
        lines.append(f'url = "{url}"')
    if kind == "webhook":
        lines.append(f'secret = "{SECRET}"')
    return "\n".join(lines + ([extra] if extra else [])) + "\n"


def action(n: int, ch: str, automation: str = "big-order", due_in: int = 0, **payload: object) -> Action:
    now = wall_ms()
    return Action(action_key(automation, f"cust-{n}", f"evt-{n}"), "acme", automation, ch, "order.paid", f"cust-{n}",
                  f"evt-{n}", now, now + due_in, payload=dict(payload),
                  message=Message(subject=f"Order {n}", text=f"order {n} paid", slack_text=f"*order {n}* paid"))


@pytest.fixture(params=["sqlite", "redis"])
def outbox_factory(request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer) -> Iterator[Callable[[], Outbox]]:
    """Makes outboxes on one store (a second one: another notifier's connection)."""
    opened: list[Outbox] = []
    if request.param == "redis":
        redis.Redis.from_url(redis_server.url).flushdb()

    def make() -> Outbox:
        box: Outbox = RedisOutbox(redis_server.url) if request.param == "redis" else SqliteOutbox(tmp_path / "outbox.sqlite3")
        opened.append(box)
        return box

    yield make
    for box in opened:
        box.close()


@pytest.fixture
def outbox(outbox_factory: Callable[[], Outbox]) -> Outbox:
    return outbox_factory()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(SECRET)
    yield r
    r.close()


def drive(config: Config, outboxes: list[Outbox], until: Callable[[], bool], timeout: float = 20,
          tuning: Tuning | None = None) -> None:
    """Runs one notifier per outbox, all at once, until `until()` holds."""

    async def go() -> None:
        notifiers = [Notifier(config, box, tuning=tuning or Tuning(poll_s=0.02)) for box in outboxes]
        stop = asyncio.Event()
        runs = [asyncio.create_task(n.run(stop)) for n in notifiers]
        deadline = time.monotonic() + timeout
        try:
            while not until():
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out after {timeout} s")
                if any(r.done() for r in runs):
                    await asyncio.gather(*runs)
                await asyncio.sleep(0.02)
        finally:
            stop.set()
            await asyncio.gather(*runs)

    asyncio.run(go())


def status_of(outbox: Outbox, a: Action) -> Status | None:
    d = outbox.get(delivery_id(a.key, a.channel))
    return None if d is None else d.status


def got(outbox: Outbox, a: Action) -> Delivery:
    d = outbox.get(delivery_id(a.key, a.channel))
    assert d is not None
    return d


def test_signed_webhooks_are_delivered_once_each(outbox: Outbox, receiver: Receiver) -> None:
    config = parse_config(HEAD + channel("crm", "webhook", receiver.url), {})
    actions = [action(n, "crm") for n in range(20)]
    outbox.put(actions, wall_ms())
    outbox.put(actions[:5], wall_ms())  # the dataflow replayed after a crash: the same actions again
    drive(config, [outbox], lambda: all(status_of(outbox, a) == Status.DELIVERED for a in actions))
    ids = receiver.delivered_ids()  # every one verified by standardwebhooks, or it would have been answered 401
    assert sorted(ids) == sorted(delivery_id(a.key, "crm") for a in actions) and len(set(ids)) == 20
    body = next(b for b in receiver.json_bodies() if b["subject"] == "cust-3")
    assert body["type"] == "order.paid" and body["automation"] == "big-order" and body["cause"] == "evt-3"
    d = got(outbox, actions[3])
    assert [(t.status, t.outcome, t.error) for t in d.attempts] == [(200, "delivered", "")]
    assert d.delivered_at is not None and d.attempts[0].latency_ms >= 0


def test_a_receiver_failing_until_fixed_goes_dead_and_a_replay_delivers_the_same_id(outbox: Outbox, receiver: Receiver) -> None:
    config = parse_config(HEAD + channel("crm", "webhook", receiver.url, 'retry = ["100ms", "200ms"]'), {})
    receiver.status = 500
    a = action(1, "crm")
    outbox.put([a], wall_ms())
    drive(config, [outbox], lambda: status_of(outbox, a) == Status.DEAD)
    d = got(outbox, a)
    assert [t.status for t in d.attempts] == [500, 500, 500] and "the last of 3 attempts" in d.attempts[-1].error
    assert d.attempts[1].at - d.attempts[0].at >= 100 and d.attempts[2].at - d.attempts[1].at >= 200
    assert [x.id for x in outbox.list("acme", status=Status.DEAD)] == [d.id]
    receiver.status = 200  # fixed
    replayed = outbox.replay(d.id, wall_ms())
    assert replayed is not None and replayed.status == Status.PENDING
    drive(config, [outbox], lambda: status_of(outbox, a) == Status.DELIVERED)
    assert receiver.ids() == [d.id] * 4 and receiver.delivered_ids() == [d.id]
    assert [t.status for t in got(outbox, a).attempts] == [500, 500, 500, 200]


def test_410_disables_the_channel_until_a_test_succeeds(outbox: Outbox, receiver: Receiver) -> None:
    config = parse_config(HEAD + channel("crm", "webhook", receiver.url), {})
    receiver.status = 410
    first, second = action(1, "crm"), action(2, "crm")
    outbox.put([first], wall_ms())
    drive(config, [outbox], lambda: status_of(outbox, first) == Status.DEAD)
    assert "410" in got(outbox, first).attempts[0].error and "crm" in outbox.disabled_channels("acme")
    outbox.put([second], wall_ms())
    drive(config, [outbox], lambda: status_of(outbox, second) == Status.DEAD)
    assert "disabled" in got(outbox, second).attempts[0].error and len(receiver.requests) == 1  # not even tried
    receiver.status = 200

    async def test() -> Attempt:
        n = Notifier(config, outbox)
        try:
            return await n.test(config.orgs["acme"].channels["crm"])
        finally:
            await n.close()

    result = asyncio.run(test())
    assert (result.status, result.outcome) == (200, "delivered") and outbox.disabled_channels("acme") == {}
    assert receiver.json_bodies()[-1]["automation"] == "test"


def test_other_4xx_is_permanent_and_retry_after_is_honoured(outbox: Outbox, receiver: Receiver) -> None:
    config = parse_config(HEAD + channel("crm", "webhook", receiver.url, 'retry = ["100ms"]'), {})
    receiver.script = [(400, {}), (429, {"Retry-After": "1"})]
    bad, later = action(1, "crm"), action(2, "crm")
    outbox.put([bad], wall_ms())
    drive(config, [outbox], lambda: status_of(outbox, bad) == Status.DEAD)
    assert [t.status for t in got(outbox, bad).attempts] == [400]
    outbox.put([later], wall_ms())
    drive(config, [outbox], lambda: status_of(outbox, later) == Status.DELIVERED)
    attempts = got(outbox, later).attempts
    assert [t.status for t in attempts] == [429, 200]
    assert attempts[1].at - attempts[0].at >= 1000  # Retry-After: 1, not the channel's 100 ms


def test_no_answer_within_the_timeout_is_retried_with_the_same_id(outbox: Outbox, receiver: Receiver) -> None:
    config = parse_config(HEAD + channel("crm", "webhook", receiver.url, 'retry = ["100ms"]'), {})
    receiver.hold = threading.Event()  # the receiver sits on the first request
    a = action(1, "crm")
    outbox.put([a], wall_ms())

    def answered_again() -> bool:
        d = got(outbox, a)
        if d.attempts and receiver.hold is not None:
            receiver.hold.set()  # the timeout was recorded: let the receiver answer from now on
        return d.status == Status.DELIVERED

    drive(config, [outbox], answered_again, tuning=Tuning(timeout_s=0.5, poll_s=0.02))
    attempts = got(outbox, a).attempts
    assert [(t.status, t.outcome) for t in attempts] == [(None, "retry"), (200, "delivered")]
    assert attempts[0].error == "no answer within 0.5 s" and 450 <= attempts[0].latency_ms < 5000
    assert set(receiver.ids()) == {delivery_id(a.key, "crm")}


def test_private_and_loopback_urls_are_refused_unless_allowed(outbox: Outbox, receiver: Receiver) -> None:
    config = parse_config(HEAD + channel("crm", "webhook", receiver.url, private=False), {})
    a = action(1, "crm")
    outbox.put([a], wall_ms())
    drive(config, [outbox], lambda: status_of(outbox, a) == Status.DEAD)
    assert "loopback" in got(outbox, a).attempts[0].error and receiver.requests == []


def test_fake_slack_429_then_the_message_arrives_once_and_a_burst_is_one_message(outbox: Outbox) -> None:
    slack = Receiver()  # Slack does not sign: no secret
    try:
        config = parse_config(HEAD + channel("ops", "slack", slack.url), {})
        slack.script = [(429, {"Retry-After": "1"})]
        first = action(0, "ops")
        outbox.put([first], wall_ms())
        burst = [action(n, "ops") for n in range(1, 13)]

        def then_a_burst() -> bool:
            if status_of(outbox, first) != Status.DELIVERED:
                return False
            if status_of(outbox, burst[0]) is None:  # right after the first message: within its second
                assert [r.status for r in slack.requests] == [429, 200]
                assert slack.json_bodies() == [{"text": "*order 0* paid"}]
                outbox.put(burst, wall_ms())
            return all(status_of(outbox, a) == Status.DELIVERED for a in burst)

        drive(config, [outbox], then_a_burst)
        texts = [b["text"] for b in slack.json_bodies()[1:]]
        assert len(texts) == 1 and texts[0].startswith("*12 × big-order*")  # one message, not twelve
        stamps = [got(outbox, a).attempts[-1].at for a in [first, burst[0]]]
        # at most one message a second per channel (the gate's monotonic clock against these wall-clock ms)
        assert stamps[1] - stamps[0] >= 990
    finally:
        slack.close()


def test_a_slack_retry_after_holds_the_channel_without_holding_the_notifier(outbox: Outbox, receiver: Receiver) -> None:
    slack = Receiver()
    try:
        config = parse_config(HEAD + channel("ops", "slack", slack.url) + channel("crm", "webhook", receiver.url), {})
        slack.script = [(429, {"Retry-After": "4"})]
        first, second, hook = action(1, "ops"), action(2, "ops"), action(3, "crm")
        outbox.put([first], wall_ms())

        def then_more() -> bool:
            if got(outbox, first).attempts and status_of(outbox, second) is None:
                outbox.put([second, hook], wall_ms())  # during Slack's 4 s
            return status_of(outbox, second) == Status.DELIVERED and status_of(outbox, first) == Status.DELIVERED

        drive(config, [outbox], then_more)
        assert [r.status for r in slack.requests][0] == 429 and len(slack.requests) <= 3
        held = got(outbox, second).attempts[0]
        assert held.status is None and "Retry-After" in held.error  # not sent during the hold
        # the webhook went out at once, not after Slack's hold
        assert got(outbox, hook).attempts[0].at - got(outbox, first).attempts[0].at < 3500
    finally:
        slack.close()


def test_email_to_customers_suppression_and_smtp_errors(outbox: Outbox) -> None:
    smtp = SmtpServer()
    try:
        config = parse_config(HEAD + channel("customer", "email", extra='to = "customer"\nretry = ["100ms"]') +
                              channel("owner", "email", extra='to = ["owner@acme.example", "ops@acme.example"]') +
                              f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nfrom = "Acme <alerts@acme.example>"\n'
                              'starttls = false\npublic_url = "http://sp.example"\n', {})
        box = smtp.mailbox
        box.refuse["gone@example.com"] = "550 5.1.1 no such user"
        box.refuse_once["later@example.com"] = "451 4.3.0 try again later"
        ok, gone, later = (action(1, "customer", email="ann@example.com"), action(2, "customer", email="gone@example.com"),
                           action(3, "customer", email="later@example.com"))
        staff = action(5, "owner")
        outbox.put([ok, gone, later, staff], wall_ms())
        drive(config, [outbox], lambda: [status_of(outbox, a) for a in (ok, gone, later, staff)]
              == [Status.DELIVERED, Status.DEAD, Status.DELIVERED, Status.DELIVERED])
        (to_staff,) = [m for m in box.mails if m["Message-ID"] == f"<{delivery_id(staff.key, 'owner')}@acme.example>"]
        assert to_staff["To"] == "owner@acme.example, ops@acme.example" and to_staff["List-Unsubscribe"] is None
        (mail,) = [m for m in box.mails if m["To"] == "ann@example.com"]
        assert mail["Message-ID"] == f"<{delivery_id(ok.key, 'customer')}@acme.example>"
        assert mail["Subject"] == "Order 1" and mail["From"] == "Acme <alerts@acme.example>"
        assert mail["List-Unsubscribe"].startswith("<http://sp.example/unsubscribe/acme?a=ann%40example.com&t=")
        assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
        assert "550" in got(outbox, gone).attempts[0].error and outbox.suppressed("acme", "gone@example.com")
        assert [t.status for t in got(outbox, later).attempts] == [451, 250]
        outbox.suppress("acme", "ann@example.com", "unsubscribed", wall_ms())
        again = action(4, "customer", email="ann@example.com")
        outbox.put([again], wall_ms())
        drive(config, [outbox], lambda: status_of(outbox, again) == Status.CANCELLED)
        assert len(box.mails) == 3 and "suppression" in got(outbox, again).attempts[0].error

        async def test(to: str | None) -> Attempt:
            n = Notifier(config, outbox)
            try:
                return await n.test(config.orgs["acme"].channels["customer"], to)
            finally:
                await n.close()

        assert "no payload" in asyncio.run(test(None)).error
        assert asyncio.run(test("tester@example.com")).outcome == "delivered" and box.mails[-1]["To"] == "tester@example.com"
    finally:
        smtp.close()


def test_two_notifiers_at_once_deliver_each_action_once(outbox_factory: Callable[[], Outbox], receiver: Receiver) -> None:
    config = parse_config(HEAD + channel("crm", "webhook", receiver.url), {})
    first, second = outbox_factory(), outbox_factory()
    actions = [action(n, "crm") for n in range(300)]
    first.put(actions, wall_ms())
    drive(config, [first, second], lambda: first.stats().pending == 0, tuning=Tuning(batch=20, poll_s=0.01))
    ids = receiver.delivered_ids()
    assert len(ids) == 300 and len(set(ids)) == 300
    assert all(len(got(first, a).attempts) == 1 for a in actions)


def test_nothing_is_sent_before_due_and_a_cancelled_action_never(outbox: Outbox, receiver: Receiver) -> None:
    config = parse_config(HEAD + channel("crm", "webhook", receiver.url), {})
    waiting, cancelled, now = action(1, "crm", due_in=3_600_000), action(2, "crm", due_in=500), action(3, "crm")
    outbox.put([waiting, cancelled, now], wall_ms())
    assert outbox.cancel(cancelled.key, wall_ms()) == 1
    drive(config, [outbox], lambda: status_of(outbox, now) == Status.DELIVERED)
    time.sleep(0.6)  # past the cancelled action's due time
    drive(config, [outbox], lambda: True)
    assert receiver.delivered_ids() == [delivery_id(now.key, "crm")]
    assert status_of(outbox, waiting) == Status.PENDING and status_of(outbox, cancelled) == Status.CANCELLED


def test_a_held_request_is_not_sent_twice_while_leased(outbox_factory: Callable[[], Outbox], receiver: Receiver) -> None:
    """A slow receiver: the lease (longer than the timeout) keeps a second notifier off it."""
    config = parse_config(HEAD + channel("crm", "webhook", receiver.url), {})
    receiver.hold = threading.Event()
    a = action(1, "crm")
    first = outbox_factory()
    first.put([a], wall_ms())
    threading.Timer(1.0, receiver.hold.set).start()
    drive(config, [first, outbox_factory()], lambda: status_of(first, a) == Status.DELIVERED)
    assert receiver.ids() == [delivery_id(a.key, "crm")]


def test_redis_down_for_a_while_loses_nothing(tmp_path: Path, receiver: Receiver) -> None:
    """The outbox unavailable mid-run: the notifier logs, waits and goes on; every action arrives once."""
    server = RedisServer(tmp_path / "redis")  # its own: this test stops it (AOF on: what was put survives)
    box = RedisOutbox(server.url)
    try:
        config = parse_config(HEAD + channel("crm", "webhook", receiver.url), {})
        actions = [action(n, "crm") for n in range(50)]
        box.put(actions, wall_ms())
        server.stop()
        restarted = threading.Timer(2.0, server.start)
        restarted.start()
        drive(config, [box], lambda: box.stats().pending == 0 if restarted.finished.is_set() and _up(box) else False, timeout=30)
        assert sorted(receiver.delivered_ids()) == sorted(delivery_id(a.key, "crm") for a in actions)
    finally:
        box.close()
        server.stop()


def _up(box: RedisOutbox) -> bool:
    try:
        box.stats()
        return True
    except redis.ConnectionError:
        return False
