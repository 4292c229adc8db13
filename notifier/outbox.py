"""The durable outbox: what the automations put in, what notifiers claim, attempt and record.

One delivery per (action key, channel), whatever how often it is put: a replay of the dataflow after
kill -9 puts the same actions again and nothing is duplicated. Several notifiers may claim at once:
a claimed delivery is leased to its claimer until it records the attempt; a lease that runs out (a
crashed notifier) makes it claimable again. Two implementations behind `Outbox`: SQLite
(notifier/sqlite_outbox.py, embedded) and Redis (notifier/redis_outbox.py, distributed).

Times are ms since the epoch, passed in: the outbox never reads a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

import msgspec
from msgspec import Struct

from notifier.actions import Action

LEASE_MS = 60_000  # a claim's lease: longer than an attempt can take (the 15 s timeout, a slow SMTP dialogue)


class Status(StrEnum):
    PENDING = "pending"  # waiting for due_at or the next retry, or being attempted
    DELIVERED = "delivered"
    DEAD = "dead"  # the last attempt failed, or a permanent refusal: replay after a fix
    CANCELLED = "cancelled"  # cancelled before it was delivered (cancel_on), or to a suppressed address


class Attempt(Struct, frozen=True):
    at: int  # ms: when the attempt started
    status: int | None  # the HTTP status or SMTP reply code; None when there was no answer
    latency_ms: float
    error: str = ""  # "" when delivered
    outcome: str = ""  # delivered | retry | dead | cancelled | disabled


class Delivery(Struct, frozen=True):
    id: str  # delivery_id(action.key, action.channel)
    action: Action
    status: Status
    created_at: int  # ms: when it was first put
    next_at: int  # ms: not attempted before (due_at, then the retry schedule)
    tries: int = 0  # attempts since it was put or last replayed (the retry schedule's position)
    delivered_at: int | None = None
    attempts: list[Attempt] = []  # every attempt, oldest first, across replays

    def to_json(self) -> dict[str, object]:
        a = self.action
        return {"id": self.id, "key": a.key, "org": a.org, "automation": a.automation, "channel": a.channel,
                "trigger": a.trigger, "subject": a.subject, "cause": a.cause, "status": str(self.status),
                "fired_at": a.fired_at, "due_at": a.due_at, "created_at": self.created_at, "next_at": self.next_at,
                "delivered_at": self.delivered_at, "tries": self.tries, "locale": a.locale, "payload": a.payload,
                "message": msgspec.to_builtins(a.message), "attempts": [msgspec.structs.asdict(t) for t in self.attempts]}


class Claimed(Struct, frozen=True):
    delivery: Delivery
    token: str  # the backend's handle of this claim (Redis: the stream entry id), given back to `record`


class Result(Struct, frozen=True):
    """What one attempt came to: the delivery's new status (PENDING: retry at `next_at`)."""

    claim: Claimed
    attempt: Attempt
    status: Status
    next_at: int = 0


class Stats(Struct, frozen=True):
    pending: int
    oldest_pending_fired_at: int | None  # ms; None when nothing is pending


class Outbox(Protocol):
    def put(self, actions: Sequence[Action], now: int) -> int:
        """Adds each action's delivery unless its (key, channel) is already there; returns how many were new."""
        ...

    def cancel(self, key: str, now: int) -> int:
        """Cancels the pending deliveries of an action key (every channel); returns how many."""
        ...

    def claim(self, now: int, limit: int, owner: str, lease_ms: int = LEASE_MS) -> list[Claimed]:
        """Up to `limit` pending deliveries due by `now`, leased to `owner` until now + lease_ms."""
        ...

    def record(self, results: Sequence[Result], now: int) -> None:
        """Records attempts (and the new statuses) of claimed deliveries, ending their leases."""
        ...

    def get(self, delivery: str) -> Delivery | None: ...

    def list(self, org: str, *, status: Status | None = None, automation: str | None = None,
             channel: str | None = None, limit: int = 100) -> list[Delivery]:
        """The organisation's deliveries, newest first."""
        ...

    def replay(self, delivery: str, now: int) -> Delivery | None:
        """Makes a dead, cancelled or delivered delivery pending again, due now, with the same id."""
        ...

    def stats(self) -> Stats: ...

    def prune(self, before: int, limit: int = 10_000) -> int:
        """Forgets up to `limit` delivered and cancelled deliveries that ended before `before` (ms);
        dead and pending ones are kept. Returns how many were forgotten. The same action put again
        after that would be delivered again: keep them longer than the dataflow can replay."""
        ...

    def dead_counts(self, org: str) -> dict[str, int]:
        """Dead deliveries per channel (not replayed since): what the health check for dead letters reads."""
        ...

    def suppress(self, org: str, address: str, reason: str, now: int) -> None:
        """Adds an e-mail address to the organisation's suppression list (unsubscribed, or refused for good)."""
        ...

    def suppressed(self, org: str, address: str) -> bool: ...

    def disable_channel(self, org: str, channel: str, reason: str, now: int) -> None: ...

    def enable_channel(self, org: str, channel: str) -> None: ...

    def disabled_channels(self, org: str) -> dict[str, str]:
        """The organisation's disabled channels and why (e.g. the receiver answered 410 Gone)."""
        ...

    def close(self) -> None: ...


def normal_address(address: str) -> str:
    """An e-mail address as the suppression list keys it."""
    return address.strip().lower()
