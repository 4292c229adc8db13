"""The outbox contract, the same tests on both backends: SQLite in a temp dir, a real redis-server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from notifier.actions import Action, Message, action_key, delivery_id
from notifier.outbox import Attempt, Claimed, Outbox, Result, Status
from notifier.redis_outbox import RedisOutbox
from notifier.sqlite_outbox import SqliteOutbox
from tests.helpers import RedisServer

T0 = 1_700_000_000_000  # a fixed instant: nothing here reads the clock


def action(n: int, channel: str = "crm", org: str = "acme", due: int = T0, automation: str = "big-order") -> Action:
    return Action(key=action_key(automation, f"cust-{n}", f"evt-{n}"), org=org, automation=automation, channel=channel,
                  trigger="order.paid", subject=f"cust-{n}", cause=f"evt-{n}", fired_at=T0 + n, due_at=due,
                  payload={"n": n}, message=Message(text=f"order {n}"))


@pytest.fixture(params=["sqlite", "redis"])
def outbox(request: pytest.FixtureRequest, tmp_path: Path, redis_server: RedisServer) -> Iterator[Outbox]:
    if request.param == "redis":
        redis.Redis.from_url(redis_server.url).flushdb()
        box: Outbox = RedisOutbox(redis_server.url)
    else:
        box = SqliteOutbox(tmp_path / "outbox.sqlite3")
    yield box
    box.close()


def ok(c: Claimed, at: int) -> Result:
    return Result(c, Attempt(at, 200, 1.5, "", "delivered"), Status.DELIVERED)


def test_put_is_idempotent_by_key_and_channel(outbox: Outbox) -> None:
    assert outbox.put([action(1), action(2), action(1, channel="ops")], T0) == 3
    assert outbox.put([action(1), action(2)], T0 + 5) == 0  # a replayed dataflow puts them again
    assert len(outbox.list("acme")) == 3
    d = outbox.get(delivery_id(action(1).key, "crm"))
    assert d is not None and d.status == Status.PENDING and d.action == action(1) and d.created_at == T0
    assert outbox.stats().pending == 3 and outbox.stats().oldest_pending_fired_at == T0 + 1


def test_claim_only_what_is_due_and_each_once(outbox: Outbox) -> None:
    outbox.put([action(1), action(2, due=T0 + 10_000)], T0)
    first = outbox.claim(T0, 10, "a")
    assert [c.delivery.action.subject for c in first] == ["cust-1"]
    assert outbox.claim(T0 + 1, 10, "b") == []  # leased to a
    assert [c.delivery.action.subject for c in outbox.claim(T0 + 10_000, 10, "b")] == ["cust-2"]


def test_record_delivered_retry_and_dead(outbox: Outbox) -> None:
    outbox.put([action(1), action(2), action(3)], T0)
    c1, c2, c3 = outbox.claim(T0, 10, "a")
    outbox.record([ok(c1, T0 + 1),
                   Result(c2, Attempt(T0 + 1, 503, 3.0, "HTTP 503", "retry"), Status.PENDING, T0 + 5_000),
                   Result(c3, Attempt(T0 + 1, 400, 2.0, "HTTP 400", "dead"), Status.DEAD)], T0 + 2)
    d1, d2, d3 = (outbox.get(c.delivery.id) for c in (c1, c2, c3))
    assert d1 is not None and d1.status == Status.DELIVERED and d1.delivered_at == T0 + 1 and d1.attempts[0].status == 200
    assert d2 is not None and d2.status == Status.PENDING and d2.tries == 1 and d2.next_at == T0 + 5_000
    assert d3 is not None and d3.status == Status.DEAD and d3.attempts[0].error == "HTTP 400"
    assert outbox.claim(T0 + 4_999, 10, "a") == []
    again = outbox.claim(T0 + 5_000, 10, "b")
    assert [c.delivery.id for c in again] == [c2.delivery.id]
    assert outbox.stats().pending == 1
    assert [d.id for d in outbox.list("acme", status=Status.DEAD)] == [c3.delivery.id]
    assert outbox.dead_counts("acme") == {"crm": 1} and outbox.dead_counts("tokyo") == {}
    assert outbox.list("tokyo") == []


def test_expired_lease_is_claimed_by_another(outbox: Outbox) -> None:
    outbox.put([action(1)], T0)
    (c,) = outbox.claim(T0, 10, "crashed", lease_ms=1_000)
    assert outbox.claim(T0 + 500, 10, "b", lease_ms=1_000) == []
    if isinstance(outbox, RedisOutbox):
        import time

        time.sleep(1.1)  # Redis measures a pending entry's idle time with its own clock
    (taken,) = outbox.claim(T0 + 1_001, 10, "b", lease_ms=1_000)
    assert taken.delivery.id == c.delivery.id
    outbox.record([ok(taken, T0 + 1_002)], T0 + 1_003)
    # the crashed claimer's late record does not undo the delivery
    outbox.record([Result(c, Attempt(T0 + 1, None, 0.0, "timeout", "retry"), Status.PENDING, T0 + 9_000)], T0 + 1_004)
    d = outbox.get(c.delivery.id)
    assert d is not None and d.status == Status.DELIVERED and len(d.attempts) == 2
    assert outbox.claim(T0 + 10_000, 10, "b") == []


def test_cancel_a_pending_action_on_every_channel(outbox: Outbox) -> None:
    outbox.put([action(1), action(1, channel="ops"), action(2)], T0)
    assert outbox.cancel(action(1).key, T0 + 1) == 2
    assert outbox.cancel(action(1).key, T0 + 2) == 0
    assert [c.delivery.action.subject for c in outbox.claim(T0 + 3, 10, "a")] == ["cust-2"]
    cancelled = outbox.list("acme", status=Status.CANCELLED)
    assert {d.action.channel for d in cancelled} == {"crm", "ops"} and cancelled[0].attempts[0].outcome == "cancelled"
    assert outbox.stats().pending == 1


def test_cancel_during_an_attempt_keeps_it_cancelled_unless_delivered(outbox: Outbox) -> None:
    outbox.put([action(1), action(2)], T0)
    c1, c2 = outbox.claim(T0, 10, "a")
    outbox.cancel(action(1).key, T0 + 1)
    outbox.cancel(action(2).key, T0 + 1)
    outbox.record([Result(c1, Attempt(T0, 503, 1.0, "HTTP 503", "retry"), Status.PENDING, T0 + 5), ok(c2, T0 + 2)], T0 + 3)
    d1, d2 = outbox.get(c1.delivery.id), outbox.get(c2.delivery.id)
    assert d1 is not None and d1.status == Status.CANCELLED
    assert d2 is not None and d2.status == Status.DELIVERED
    assert outbox.claim(T0 + 10, 10, "a") == []


def test_replay_keeps_the_id_and_the_attempts(outbox: Outbox) -> None:
    outbox.put([action(1)], T0)
    (c,) = outbox.claim(T0, 1, "a")
    outbox.record([Result(c, Attempt(T0, 500, 1.0, "HTTP 500", "dead"), Status.DEAD)], T0 + 1)
    assert outbox.dead_counts("acme") == {"crm": 1}
    assert outbox.replay("msg_nope", T0 + 2) is None
    d = outbox.replay(c.delivery.id, T0 + 100)
    assert d is not None and d.status == Status.PENDING and d.tries == 0 and d.next_at == T0 + 100 and len(d.attempts) == 1
    (again,) = outbox.claim(T0 + 100, 1, "b")
    assert again.delivery.id == c.delivery.id
    outbox.record([ok(again, T0 + 101)], T0 + 102)
    d = outbox.get(c.delivery.id)
    assert d is not None and d.status == Status.DELIVERED and [a.status for a in d.attempts] == [500, 200]
    assert outbox.dead_counts("acme") == {}


def test_list_filters_and_order(outbox: Outbox) -> None:
    outbox.put([action(1), action(2, channel="ops"), action(3, automation="welcome"), action(4, org="tokyo")], T0)
    assert [d.action.subject for d in outbox.list("acme")] == ["cust-3", "cust-2", "cust-1"]
    assert [d.action.subject for d in outbox.list("acme", limit=2)] == ["cust-3", "cust-2"]
    assert [d.action.subject for d in outbox.list("acme", channel="ops")] == ["cust-2"]
    assert [d.action.subject for d in outbox.list("acme", automation="welcome")] == ["cust-3"]
    assert [d.action.subject for d in outbox.list("tokyo", status=Status.PENDING)] == ["cust-4"]


def test_suppression_and_disabled_channels(outbox: Outbox) -> None:
    assert not outbox.suppressed("acme", "a@example.com")
    outbox.suppress("acme", " A@Example.com", "unsubscribed", T0)
    assert outbox.suppressed("acme", "a@example.com") and not outbox.suppressed("tokyo", "a@example.com")
    outbox.disable_channel("acme", "crm", "410 Gone", T0)
    assert outbox.disabled_channels("acme") == {"crm": "410 Gone"} and outbox.disabled_channels("tokyo") == {}
    outbox.enable_channel("acme", "crm")
    assert outbox.disabled_channels("acme") == {}


def test_prune_forgets_what_ended_and_keeps_dead_and_pending(outbox: Outbox) -> None:
    outbox.put([action(1), action(2), action(3), action(4)], T0)
    outbox.cancel(action(4).key, T0 + 1)
    c1, c2, c3 = outbox.claim(T0, 10, "a")
    outbox.record([ok(c1, T0 + 1), Result(c2, Attempt(T0 + 1, 400, 1.0, "HTTP 400", "dead"), Status.DEAD)], T0 + 2)
    assert outbox.prune(T0 + 1) == 0  # nothing ended before T0 + 1
    assert outbox.prune(T0 + 10_000) == 2  # the delivered and the cancelled one
    assert outbox.get(c1.delivery.id) is None and outbox.get(delivery_id(action(4).key, "crm")) is None
    assert {d.action.subject for d in outbox.list("acme")} == {"cust-2", "cust-3"}  # dead and pending stay
    assert outbox.cancel(action(4).key, T0 + 3) == 0
    assert outbox.prune(T0 + 10_000) == 0
