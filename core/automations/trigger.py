"""The trigger logic: given what happened (a `Firing`) and each automation's state, what fires now,
what waits, what a `cancel_on` event drops, and what once / cooldown hold back. Pure: time comes in
as an argument (event time, or the organisation's watermark), nothing reads a clock.

For one automation A and a firing F (trigger, subject, cause, time `at`, the facts its `if` reads):

- F matches A when A's trigger is F's (and, for segment triggers, the same segment);
- `if` is evaluated with now = `at`; false: nothing happens;
- `once`: nothing happens if A was ever released for F's subject, or one is pending for it;
  `cooldown`: nothing happens if A was released for the subject at a fired time within the cooldown
  before `at` (compared on fired times, so a replay decides alike), or one is pending for it;
- without `wait` the action is released at once; with it, it is pending until `due = at + wait`
  and released when the watermark W passes `due` (W > due, as carts are decided): `if` is checked
  again with now = due, once / cooldown against what was released meanwhile;
- a pending action is dropped by an event of a kind in A's `cancel_on`, naming the same subject,
  whose time t has at <= t < due (an event after `due` came too late to stop the send), whichever
  of the two arrived first (the cancelling events' times are kept for the longest wait).

The idempotency key is sha256(automation|subject|cause) (notifier/actions.py action_key): a replay
of the log builds the same firings, so the same keys, and the outbox keeps one of each.

State: the pending actions (a heap by due time), the times of cancelling events (for the longest
wait, plus an hour), and per (automation, subject) the fired time of the
last release, only for automations with `once` (kept for ever: that is what once means) or a
`cooldown` (dropped once W is past it by the cooldown).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from core.automations.definition import SEGMENT_ENTERED, SEGMENT_EXITED, Automation
from core.rates import MissingRate
from core.rules import Context, CustomerFacts, holds


@dataclass(frozen=True, slots=True)
class Firing:
    """One occurrence of a trigger: an event, a cart abandoned, a segment entry or exit, a quota
    crossed, a scheduled time. `at` is its time (event time or the watermark that decided it)."""

    trigger: str
    subject: str  # the customer it is about; "" for the organisation itself (quota, schedule)
    cause: str  # what made it fire: an event id, "<store>:<cart>@<due>", "quota:80@<at>", ...
    at: int  # ms
    payload: Mapping[str, Any] = field(default_factory=dict)  # JSON-able: what a message shows
    facts: CustomerFacts | None = None  # what `if` reads (None: a rule sees a customer with no history)
    segment: str | None = None  # for segment.entered / segment.exited


@dataclass(frozen=True, slots=True)
class Released:
    """An action to hand to the outbox: automation A fired for F, to be sent at `due`."""

    automation: str
    firing: Firing
    due: int


@dataclass(order=True, slots=True)
class _Pending:
    due: int
    automation: str
    cause: str
    firing: Firing = field(compare=False)
    dead: bool = field(default=False, compare=False)  # cancelled: skipped when it reaches the heap's top


def _matches(a: Automation, f: Firing) -> bool:
    if a.trigger != f.trigger:
        return False
    return f.trigger not in (SEGMENT_ENTERED, SEGMENT_EXITED) or a.segment == f.segment


def _condition_holds(a: Automation, f: Firing, now: int, ctx: Context) -> bool:
    """Whether `if` holds; one that cannot be evaluated (money in another currency with no rate for
    its day) does not: an automation must never stop the event that fired it from being folded."""
    if a.condition is None:
        return True
    try:
        return holds(a.condition, f.facts or CustomerFacts(first_seen=f.at), now, ctx)
    except MissingRate:
        return False


K = TypeVar("K")


def _unindex(index: dict[K, list[_Pending]], key: K, p: _Pending) -> None:
    entries = index[key]
    entries.remove(p)
    if not entries:
        del index[key]


def _group(cause: str) -> str:
    """A cause up to its last "@" ("<store>:<cart>" of "<store>:<cart>@<due>"); a cause without one, itself."""
    return cause.rpartition("@")[0] or cause


SWEEP_MS = 3_600_000  # passed cooldowns are forgotten at most once an hour of watermark (one pass over them)


class Triggers:
    """The trigger state of one organisation's automations."""

    def __init__(self) -> None:
        self._pending: list[_Pending] = []  # a heap by (due, automation, cause); cancelled ones marked dead
        self._live = 0  # pending and not dead
        self._by_subject: dict[str, list[_Pending]] = {}  # what a cancel_on event looks at
        self._by_cause: dict[tuple[str, str], list[_Pending]] = {}  # (trigger, cause): what `drop` looks at
        self._by_group: dict[tuple[str, str], list[_Pending]] = {}  # (trigger, cause to its "@"): `supersede`'s; not kept
        self._keys: set[tuple[str, str, str]] = set()  # (automation, subject, cause) pending: one of each
        self._waiting: dict[tuple[str, str], int] = {}  # (automation, subject) -> pending count
        self._last: dict[tuple[str, str], int] = {}  # (automation, subject) -> fired time of the last release
        self._sweep_at = -(2**62)  # the watermark at which passed cooldowns are next forgotten
        # (subject, kind) -> times of the events that cancel: a firing that arrives after the event that
        # cancels it (same instant, or out of order within the lateness) is cancelled all the same
        self._seen: dict[tuple[str, str], list[int]] = {}

    def fire(self, automations: Mapping[str, Automation], firing: Firing, ctx: Context) -> list[Released]:
        """The actions `firing` releases now (the automations without `wait`); those with a wait become pending."""
        out = []
        for a in sorted(automations.values(), key=lambda a: a.id):
            if not _matches(a, firing) or not _condition_holds(a, firing, firing.at, ctx):
                continue
            if self._held_back(a, firing) or (a.once or a.cooldown_ms) and self._waiting.get((a.id, firing.subject)):
                continue
            if a.wait_ms:
                pending_key = (a.id, firing.subject, firing.cause)
                if self._cancelled_already(a, firing):
                    continue
                if pending_key not in self._keys:
                    self._pend(_Pending(firing.at + a.wait_ms, a.id, firing.cause, firing))
                continue
            out.append(self._release(a, firing, firing.at))
        return out

    def cancel(self, automations: Mapping[str, Automation], kind: str, subject: str, time_ms: int) -> list[Released]:
        """Drops the pending actions that an event of `kind` by `subject` at `time_ms` cancels; returns them."""
        if not subject:
            return []
        insort(self._seen.setdefault((subject, kind), []), time_ms)
        return self._remove(self._by_subject.get(subject, ()), lambda p: p.firing.at <= time_ms < p.due
                            and (a := automations.get(p.automation)) is not None and kind in a.cancel_on)

    def drop(self, trigger: str, cause: str) -> list[Released]:
        """Drops the pending actions of one firing (a cart bought after all: its reminder must not go)."""
        return self._remove(self._by_cause.get((trigger, cause), ()), lambda p: True)

    def supersede(self, trigger: str, cause: str) -> list[Released]:
        """Drops the pending actions of `trigger` whose cause is `cause` up to its "@" with another instant
        after it: a cart's earlier abandonment ("<store>:<cart>@<due>"), which activity since replaced,
        whoever the cart's person was then (a visitor who has signed in since)."""
        return self._remove(self._by_group.get((trigger, _group(cause)), ()), lambda p: p.cause != cause)

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "_by_group"}

    def __setstate__(self, state: dict[str, Any]) -> None:
        vars(self).update(state)  # a snapshot from before `_by_group` reads the same: it is derived
        self._by_group = {}
        for p in self._pending:
            if not p.dead:
                self._by_group.setdefault((p.firing.trigger, _group(p.cause)), []).append(p)

    def advance(self, automations: Mapping[str, Automation], watermark: int, ctx: Context) -> list[Released]:
        """Moves the watermark: the pending actions it passes are released (or dropped: `if` no longer
        holds at due, once / cooldown, the automation deleted). Forgets cooldowns that have passed."""
        out = []
        while self._pending and self._pending[0].due < watermark:
            p = heapq.heappop(self._pending)
            if p.dead:
                continue
            self._unpend(p)
            a = automations.get(p.automation)
            if a is None or not _condition_holds(a, p.firing, p.due, ctx) or self._held_back(a, p.firing):
                continue
            out.append(self._release(a, p.firing, p.due))
        if (self._last or self._seen) and watermark >= self._sweep_at:
            self._forget(automations, watermark)
            self._sweep_at = watermark + SWEEP_MS
        return out

    def next_due(self) -> int | None:
        """The due time of the next pending action: it is released once the watermark passes it."""
        while self._pending and self._pending[0].dead:
            heapq.heappop(self._pending)
        return self._pending[0].due if self._pending else None

    def pending(self) -> list[Released]:
        return [Released(p.automation, p.firing, p.due) for p in sorted(self._pending) if not p.dead]

    def held(self) -> dict[str, int]:
        return {"pending": self._live, "last_sent": len(self._last), "cancel_events": len(self._seen)}

    # --- internals -------------------------------------------------------------------------------

    def _pend(self, p: _Pending) -> None:
        self._keys.add((p.automation, p.firing.subject, p.cause))
        key = (p.automation, p.firing.subject)
        self._waiting[key] = self._waiting.get(key, 0) + 1
        self._by_subject.setdefault(p.firing.subject, []).append(p)
        self._by_cause.setdefault((p.firing.trigger, p.cause), []).append(p)
        self._by_group.setdefault((p.firing.trigger, _group(p.cause)), []).append(p)
        self._live += 1
        heapq.heappush(self._pending, p)

    def _remove(self, candidates: Iterable[_Pending], which: Callable[[_Pending], bool]) -> list[Released]:
        dropped = [p for p in candidates if which(p)]
        for p in dropped:
            p.dead = True  # left in the heap until it reaches the top
            self._unpend(p)
        return [Released(p.automation, p.firing, p.due) for p in dropped]

    def _held_back(self, a: Automation, f: Firing) -> bool:
        last = self._last.get((a.id, f.subject))
        if last is None:
            return False
        return a.once or (a.cooldown_ms > 0 and f.at < last + a.cooldown_ms)

    def _release(self, a: Automation, f: Firing, due: int) -> Released:
        if a.once or a.cooldown_ms:
            previous = self._last.get((a.id, f.subject))
            self._last[(a.id, f.subject)] = f.at if previous is None else max(previous, f.at)
        return Released(a.id, f, due)

    def _unpend(self, p: _Pending) -> None:
        self._live -= 1
        _unindex(self._by_subject, p.firing.subject, p)
        _unindex(self._by_cause, (p.firing.trigger, p.cause), p)
        _unindex(self._by_group, (p.firing.trigger, _group(p.cause)), p)
        self._keys.discard((p.automation, p.firing.subject, p.cause))
        key = (p.automation, p.firing.subject)
        left = self._waiting.get(key, 0) - 1
        if left > 0:
            self._waiting[key] = left
        else:
            self._waiting.pop(key, None)

    def _cancelled_already(self, a: Automation, f: Firing) -> bool:
        for kind in a.cancel_on:
            times = self._seen.get((f.subject, kind))
            if times and (i := bisect_left(times, f.at)) < len(times) and times[i] < f.at + a.wait_ms:
                return True
        return False

    def _forget(self, automations: Mapping[str, Automation], watermark: int) -> None:
        # Cancelling events are kept while a firing they could cancel may still come: the longest wait.
        longest = max((a.wait_ms for a in automations.values() if a.cancel_on), default=0)
        for seen_key, times in list(self._seen.items()):
            del times[:bisect_left(times, watermark - longest - SWEEP_MS)]
            if not times:
                del self._seen[seen_key]
        for key, at in list(self._last.items()):
            a = automations.get(key[0])
            if a is None or (not a.once and at + a.cooldown_ms < watermark):
                del self._last[key]
